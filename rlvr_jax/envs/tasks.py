"""Ready-made tool-use environments for task sources whose examples carry a verifier.

* `verifier_reward`: the reward function these environments use by default: the example's own
  verifier (``rlvr_jax.rewards.registry``) applied to the final assistant turn.
* `CalculatorTask`: a calculator in a call format that a character-level tokenizer can write
  (``calc(37*48)``, no braces or quotes), its results shown as ``=1776`` on a line of their own.
  The CPU demo (``experiments/configs/tool_demo.py``) trains the tiny char model on it: the model
  cannot multiply two-digit numbers in its head, but it can copy the operands into a call and
  the result into its answer.
* `with_demonstrations`: a task source whose examples carry, with probability ``fraction``, a
  whole tool-using trajectory as ``metadata['sft_target']`` (what the trainer's supervised
  warm-up teaches), so a warm-up can start RL from a policy that *rarely* calls the tool.

A trajectory of `CalculatorTask` with the char tokenizer (``<eos>`` is its end of turn)::

    prompt        37*48=
    turn 0        calc(37*48)                 (the turn stops at ")", a stop string)
    observation   <eos>=1776\\n               (the template's close of turn 0, then the result)
    turn 1        1776<eos>                   (no call: the final answer, scored)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Iterator, List, Optional

import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.envs import tools as tools_lib
from rlvr_jax.envs.base import Episode, StepResult, ToolCall
from rlvr_jax.envs.tool_env import ToolEnvironment

_CALC = re.compile(r"calc\(([^()\n]*)\)")


def verifier_reward(text: str, example: Any) -> float:
  """The example's verifier (its ``verifier`` name in ``rlvr_jax.rewards.registry``) on
  ``text``, the final assistant turn."""
  from rlvr_jax.rewards import registry  # pylint: disable=g-import-not-at-top
  return float(registry.get_verifier(example.verifier)(text, example))


def parse_calc(text: str) -> List[ToolCall]:
  """Each ``calc(<expression>)`` in ``text`` is a call of the ``calculator`` tool."""
  return [ToolCall("calculator", {"expression": m.group(1)}) for m in _CALC.finditer(text)]


class CalculatorTask(ToolEnvironment):
  """The calculator in the ``calc(...)`` format; a turn without a call is the scored answer.

  Args:
    reward_fn: ``reward_fn(final_text, example) -> float``; default `verifier_reward`.
    result_format: how a tool result is shown (``{}`` is the calculator's output or error).
    max_calls_per_turn: calls beyond it in one turn are errors.
  """

  def __init__(self, reward_fn: Callable[[str, Any], float] = verifier_reward, *,
               result_format: str = "={}\n", max_calls_per_turn: int = 1):
    super().__init__([tools_lib.calculator], reward_fn, tool_format=parse_calc,
                     max_calls_per_turn=max_calls_per_turn, stop_strings=(")",))
    self.result_format = result_format

  def step(self, episode: Episode, text: str) -> StepResult:
    """`ToolEnvironment.step`, with each tool result shown through ``result_format``."""
    result = super().step(episode, text)
    if not result.observations:
      return result
    shown = tuple(dict(m, content=self.result_format.format(m["content"]))
                  for m in result.observations)
    return dataclasses.replace(result, observations=shown)

  def demonstration(self, example: task_lib.Example, end_of_turn: str) -> Optional[str]:
    """The text of a trajectory that calls the calculator on the prompt's expression and copies
    the result: turn, ``end_of_turn`` (the template's close of a turn), observation, answer.
    None when the prompt is not an ``<expression>=`` string."""
    prompt = example.prompt
    if not isinstance(prompt, str) or not prompt.endswith("="):
      return None
    call = f"calc({prompt[:-1]})"
    episode = self.reset(example)
    result = self.step(episode, call)
    if not result.observations or result.tool_errors:
      return None
    observation = "".join(m["content"] for m in result.observations)
    return f"{call}{end_of_turn}{observation}{example.answer}"


@dataclasses.dataclass(frozen=True)
class WithDemonstrations:
  """A task source whose examples carry a tool-using ``sft_target`` with probability
  ``fraction`` (drawn per example from the split and seed, so a stream stays deterministic).

  Attributes:
    source: the wrapped task source.
    demonstrate: ``example -> text or None`` (e.g. `CalculatorTask.demonstration`).
    fraction: the share of examples given a demonstration; the others keep their own target
      (the bare answer by default: answering without the tool).
  """

  source: Any
  demonstrate: Callable[[task_lib.Example], Optional[str]]
  fraction: float

  @property
  def name(self) -> str:
    """The wrapped source's name."""
    return self.source.name

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """The wrapped source's examples, some with ``metadata['sft_target']`` set."""
    rng = np.random.default_rng([seed, 12])
    for example in self.source.examples(split, seed):
      if rng.random() < self.fraction:
        target = self.demonstrate(example)
        if target is not None:
          example = dataclasses.replace(
              example, metadata={**dict(example.metadata or {}), "sft_target": target})
      yield example

  def __getattr__(self, name: str) -> Any:
    # Everything else (heldout_fraction, ...) is the wrapped source's.
    if name in ("source", "demonstrate", "fraction"):
      raise AttributeError(name)
    return getattr(self.source, name)


def with_demonstrations(source: Any, demonstrate: Callable[[task_lib.Example], Optional[str]],
                        fraction: float) -> Any:
  """``source`` itself when ``fraction`` is 0, else a `WithDemonstrations` wrapper."""
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"fraction must be in [0, 1], got {fraction}")
  return source if fraction == 0.0 else WithDemonstrations(source, demonstrate, fraction)
