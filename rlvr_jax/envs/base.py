"""The environment protocol of multi-turn rollouts, and parallel stepping over many episodes.

An *environment* turns one task example into an *episode* (initial chat messages and the tool
schemas the chat template advertises), then, each time the model ends an assistant turn, reads the
turn's text and answers with a `StepResult`: chat messages to show the model next (tool results),
the turn's reward part and whether the episode is over. The rollout
(`rlvr_jax.rollout.multiturn`) owns everything about tokens, KV caches and budgets; an environment
sees and returns only text, so it never depends on the model or the tokenizer.

Contract (what `rlvr_jax.rollout.multiturn.rollout` relies on):

* ``reset(example)`` is cheap and pure host work; it returns a fresh `Episode`.
* ``step(episode, text)`` may block (tools run here) and must not raise for anything the model
  wrote: a malformed or hostile tool call is an error observation and a 0 reward part, never an
  exception. It may mutate ``episode.state`` (tool state across turns) and is called for
  different episodes from several threads at once, never twice at once for the same episode.
* ``stop_strings``: strings besides the tokenizer's end-of-turn token that end an assistant turn
  (e.g. ``"</tool_call>"``), so that the tool runs as soon as its call is complete.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

Message = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ToolCall:
  """One tool call parsed from an assistant turn.

  Attributes:
    name: the tool's name (``""`` when the call could not be parsed).
    arguments: keyword arguments of the call (a JSON object).
    error: why the call is malformed (bad JSON, no name), or ``None``. A malformed call is still
      reported, so that it counts as a tool error and the model sees why.
  """

  name: str
  arguments: Dict[str, Any]
  error: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ToolResult:
  """What a tool returned for one call: the text shown to the model and whether it failed."""

  name: str
  content: str
  error: bool = False


@dataclasses.dataclass
class Episode:
  """One episode's host state.

  Attributes:
    example: the task example it was built from (any object the environment understands).
    messages: the conversation so far: the initial messages, then each assistant turn and the
      observation messages that followed it (appended by `rlvr_jax.rollout.multiturn`).
    tools: JSON-schema descriptions of the tools, passed to the chat template as ``tools``.
    state: the environment's per-episode scratch space (e.g. the Python tool's cell history).
    steps: the `StepResult` of each assistant turn, in order (appended by the rollout): the
      environment's feedback per turn, for reward methods and guided re-attempts.
  """

  example: Any
  messages: List[Message]
  tools: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  state: Dict[str, Any] = dataclasses.field(default_factory=dict)
  steps: List["StepResult"] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class StepResult:
  """An environment's answer to one assistant turn.

  Attributes:
    observations: chat messages to append after the turn (role ``"tool"`` for tool results);
      empty when the episode ends.
    reward: this turn's reward part (the outcome reward on the final turn).
    done: the episode is over (final answer given, or the environment gives up).
    tool_calls: number of tool calls parsed from the turn.
    tool_errors: how many of them failed (malformed, unknown tool, error or timeout).
    info: free-form diagnostics (not used by the rollout).
  """

  observations: Tuple[Message, ...] = ()
  reward: float = 0.0
  done: bool = False
  tool_calls: int = 0
  tool_errors: int = 0
  info: Dict[str, Any] = dataclasses.field(default_factory=dict)


class Environment(abc.ABC):
  """Base class of multi-turn environments (see the module docstring for the contract)."""

  #: Strings that end an assistant turn besides the tokenizer's end-of-turn token.
  stop_strings: Tuple[str, ...] = ()

  @abc.abstractmethod
  def reset(self, example: Any) -> Episode:
    """A fresh episode for ``example``: its initial chat messages and tool schemas."""

  @abc.abstractmethod
  def step(self, episode: Episode, text: str) -> StepResult:
    """Reads the assistant turn ``text`` (decoded, stop string included) and answers it."""


def _safe_step(env: Environment, episode: Episode, text: str) -> StepResult:
  """``env.step``, with any exception turned into a failed final turn (reward 0)."""
  try:
    return env.step(episode, text)
  except Exception as e:  # pylint: disable=broad-except
    # An environment bug must not kill the trainer; the episode ends and the error is visible.
    return StepResult(reward=0.0, done=True, tool_errors=1,
                      info={"error": f"{type(e).__name__}: {e}"})


def step_episodes(env: Environment, episodes: Sequence[Episode], texts: Sequence[str],
                  max_workers: int = 8) -> List[StepResult]:
  """Runs ``env.step`` for many episodes in parallel threads; results in input order.

  Tools block on subprocesses (the sandbox) or worker processes, which release the GIL, so
  threads give real parallelism for them. An exception inside ``step`` ends that episode with a
  0 reward and ``info["error"]`` instead of propagating.

  Args:
    env: the environment.
    episodes: the episodes to step (distinct objects).
    texts: each episode's assistant turn.
    max_workers: threads; 1 steps sequentially in this thread.
  """
  if len(episodes) != len(texts):
    raise ValueError(f"{len(episodes)} episodes but {len(texts)} texts")
  if max_workers <= 1 or len(episodes) <= 1:
    return [_safe_step(env, e, t) for e, t in zip(episodes, texts)]
  with concurrent.futures.ThreadPoolExecutor(min(max_workers, len(episodes))) as pool:
    return list(pool.map(lambda et: _safe_step(env, *et), zip(episodes, texts)))
