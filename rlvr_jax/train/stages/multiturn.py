"""Multi-turn collection: a step's groups are episodes of a tool-using environment.

Switched on by ``config.rl.multiturn.enabled``. Each sample of a group is then one episode of
:func:`rlvr_jax.rollout.multiturn.rollout` (model turns, tool observations appended to the KV
cache, up to the turn and token budgets), and the group batch (:mod:`.base`) carries, besides
the usual keys:

=================  ===============  ====================================================
key                shape            meaning
=================  ===============  ====================================================
mask               [P, W, T] f32    the **loss** mask: 1 on model tokens, 0 on observation
                                    tokens (the holes) and padding
attention_mask     [P, W, T] f32    every real token (model and observation): the completion
                                    mask of teacher forcing, so scoring and the update attend
                                    to the observations the model saw
token_rewards      [P, W, T] f32    per-turn reward parts for token-return estimators, minus
                                    the outcome placement they add themselves (see below)
num_turns          [P, W] int32     assistant turns taken
tool_calls         [P, W] int32     tool calls over the episode
tool_errors        [P, W] int32     failed tool calls
end_reason         [P, W] int32     ``rollout.multiturn.END_*``: done, turn or token budget
guided             [P, W] bool      a guided re-attempt (:mod:`.agent_rlvr`)
episodes           [P, W] object    the `Episode` of each sample (messages, per-turn feedback)
=================  ===============  ====================================================

``raw_rewards`` is the episode return (the sum of the turns' reward parts), ``lengths`` the
trajectory length (model and observation tokens), ``truncated`` 1 when a budget ended the
episode. The completion budget ``T`` is ``config.rl.max_new_tokens`` (observations included).

**Credit over turns.** Token-return estimators (REINFORCE++ through
``compose.token_reward_advantage``) get ``outcome_to_token_rewards(rewards) + token_rewards``:
the episode return on the last model token, plus the input ``token_rewards``. To place each turn's
part on the last model token of *its* turn instead (``advantages.turn_rewards_to_token_rewards``)
without counting the earlier parts twice, ``token_rewards`` is that placement minus the outcome
placement of the return; estimators that read only the scalar reward (GRPO, RLOO, ...) see the
return. With outcome-only environments (every part but the last 0) ``token_rewards`` is zero.

**Environments** are built by name (``config.rl.multiturn.env``) from :data:`ENVIRONMENTS`
(:func:`register_environment` adds yours) with ``config.rl.multiturn.env_kwargs``. Rewards come
from the environment (its verifier runs in the rollout's tool threads); the run's verifier scorer
is not used.

**Evaluation** of a multi-turn run (:class:`Evaluator`) runs episodes too: ``pass@1`` (mean
correctness, return >= 1, of ``config.eval.num_samples`` episodes per held-out example at the
training temperature), ``greedy_accuracy`` (one greedy episode each) and the tool-call rates
of both (``tool_call_rate``, ``greedy_tool_call_rate``: share of episodes with a tool call).
"""

from __future__ import annotations

import dataclasses
import types as pytypes
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np

from rlvr_jax import advantages as advantages_lib
from rlvr_jax.data import task as task_lib
from rlvr_jax.envs import base as envs_base
from rlvr_jax.envs import tasks as env_tasks
from rlvr_jax.envs import tool_env
from rlvr_jax.rollout import multiturn as rollout_lib
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train.stages import base
from rlvr_jax.train.stages import dynamic_sampling

#: ``config.rl.multiturn`` fields and defaults (``experiments/configs/base.py`` copies them).
DEFAULTS = dict(enabled=False, env="calculator", env_kwargs={}, max_turns=3,
                max_tokens_per_turn=32, max_observation_tokens=32, max_cache_slots=0,
                tool_workers=8, demonstration_fraction=0.0)


def _tool_environment(tools: Sequence[str] = ("calculator",), tool_format: str = "qwen",
                      **kwargs) -> envs_base.Environment:
  return tool_env.ToolEnvironment(list(tools), env_tasks.verifier_reward,
                                  tool_format=tool_format, **kwargs)


#: Environment factories by name: ``factory(**config.rl.multiturn.env_kwargs)``.
ENVIRONMENTS: Dict[str, Callable[..., envs_base.Environment]] = {
    "calculator": env_tasks.CalculatorTask,
    "tools": _tool_environment,
}


def register_environment(name: str, factory: Callable[..., envs_base.Environment], *,
                         overwrite: bool = False) -> None:
  """Makes ``config.rl.multiturn.env=name`` build ``factory(**env_kwargs)``."""
  if name in ENVIRONMENTS and not overwrite:
    raise ValueError(f"environment {name!r} is already registered (pass overwrite=True)")
  ENVIRONMENTS[name] = factory


def build_environment(name: str, **kwargs) -> envs_base.Environment:
  """The registered environment ``name`` built with ``kwargs``."""
  if name not in ENVIRONMENTS:
    raise ValueError(f"unknown environment {name!r}; registered: {sorted(ENVIRONMENTS)}")
  return ENVIRONMENTS[name](**kwargs)


@dataclasses.dataclass
class EpisodeSampler:
  """Runs a run's environment episodes with its sampling settings (the multi-turn counterpart
  of :class:`~rlvr_jax.rollout.text_sampler.TextSampler`).

  Attributes:
    model_config: the model's config.
    tokenizer: a tokenizer with a chat template (``rlvr_jax.data.char_tokenizer`` has one).
    env: the environment.
    settings: ``config.rl.multiturn``.
    prompt_buckets: prompt widths (``config.data.prompt_buckets``).
    max_tokens: ``T``, completion tokens per episode (``config.rl.max_new_tokens``).
    temperature, top_k, top_p: sampling settings of the run.
  """

  model_config: Any
  tokenizer: Any
  env: envs_base.Environment
  settings: Any
  prompt_buckets: Sequence[int]
  max_tokens: int
  temperature: float = 1.0
  top_k: Optional[int] = None
  top_p: Optional[float] = None

  def __post_init__(self):
    self.pad_id = text_sampler.pad_token_id(self.tokenizer)
    self.stop_ids = text_sampler.stop_token_ids(self.tokenizer)

  def rollout(self, params: Any, examples: Sequence[Any], rng: jax.Array, *, num_samples: int,
              temperature: Optional[float] = None
              ) -> Tuple[rollout_lib.MultiTurnRollout, List[envs_base.Episode]]:
    """``num_samples`` episodes per example (``temperature=0``: greedy)."""
    s = self.settings
    temperature = self.temperature if temperature is None else temperature
    greedy = temperature == 0
    return rollout_lib.rollout(
        params, self.model_config, self.env, examples, self.tokenizer, rng,
        num_samples=num_samples, max_turns=s.max_turns, max_tokens=self.max_tokens,
        max_tokens_per_turn=s.max_tokens_per_turn,
        max_observation_tokens=s.max_observation_tokens, temperature=temperature,
        top_k=None if greedy else self.top_k, top_p=None if greedy else self.top_p,
        stop_token_ids=self.stop_ids, prompt_buckets=tuple(self.prompt_buckets),
        max_cache_slots=s.max_cache_slots or None, pad_token_id=self.pad_id,
        tool_workers=s.tool_workers)

  def generate(self, params: Any, examples: Sequence[Any], example_ids: Sequence[int],
               rng: jax.Array, *, num_samples: int, prompt_width: Optional[int]
               ) -> base.GroupBatch:
    """One round of episodes as a group batch ``[len(examples), num_samples, ...]``."""
    batch, episodes = self.rollout(params, examples, rng, num_samples=num_samples)
    return episode_group(batch, example_ids, num_samples, prompt_width=prompt_width,
                         pad_id=self.pad_id, episodes=episodes)


def token_rewards(turn_rewards: np.ndarray, turn_ids: np.ndarray, loss_mask: np.ndarray
                  ) -> np.ndarray:
  """``[B, T]``: per-turn placement of ``turn_rewards [B, K]`` minus the outcome placement of
  their sum (module docstring), so a token-return estimator's total is the per-turn placement."""
  turn_rewards = np.asarray(turn_rewards, np.float32)
  per_turn = advantages_lib.turn_rewards_to_token_rewards(turn_rewards, turn_ids, loss_mask)
  outcome = advantages_lib.outcome_to_token_rewards(turn_rewards.sum(-1)[:, None],
                                                    np.asarray(loss_mask)[:, None])[:, 0]
  return np.asarray(per_turn - outcome, np.float32)


def episode_group(batch: rollout_lib.MultiTurnRollout, example_ids: Sequence[int],
                  group_size: int, *, prompt_width: Optional[int], pad_id: int,
                  episodes: Optional[Sequence[envs_base.Episode]] = None) -> base.GroupBatch:
  """A multi-turn batch (``len(example_ids) * group_size`` rows, prompt-major) as a group
  batch (module docstring); ``prompt_width`` left-pads prompts so rounds stack. With
  ``episodes`` (the rollout's `Episode` objects) the group keeps them in ``episodes``, an object
  array ``[P, W]`` (the environment feedback that guided re-attempts read)."""
  b = jax.tree.map(np.asarray, batch)
  prompt_tokens, prompt_mask = b.prompt_tokens, b.prompt_mask
  if prompt_width is not None:
    pad = prompt_width - prompt_tokens.shape[1]
    prompt_tokens = np.pad(prompt_tokens, [(0, 0), (pad, 0)], constant_values=pad_id)
    prompt_mask = np.pad(prompt_mask, [(0, 0), (pad, 0)], constant_values=False)
  rows = len(b.lengths)
  zeros = np.zeros(rows, np.float32)
  flat = {
      "prompt_tokens": prompt_tokens, "prompt_mask": prompt_mask, "tokens": b.tokens,
      "logprobs": b.logprobs.astype(np.float32), "mask": b.loss_mask.astype(np.float32),
      "attention_mask": b.token_mask.astype(np.float32),
      "token_rewards": token_rewards(b.turn_rewards, b.turn_ids, b.loss_mask),
      "in_loss": np.ones(rows, np.float32), "lengths": b.lengths,
      "truncated": (b.end_reason != rollout_lib.END_DONE).astype(np.float32),
      "raw_rewards": b.turn_rewards.sum(-1).astype(np.float32),
      "reward_errors": zeros, "reward_timeouts": zeros,
      "num_turns": b.num_turns, "tool_calls": b.tool_calls, "tool_errors": b.tool_errors,
      "end_reason": b.end_reason, "guided": np.zeros(rows, bool),
  }
  if episodes is not None:
    flat["episodes"] = np.empty(rows, object)
    flat["episodes"][:] = list(episodes)
  num_prompts = len(example_ids)
  group = {k: v.reshape((num_prompts, group_size) + v.shape[1:]) for k, v in flat.items()}
  shape = (num_prompts, group_size)
  group.update(example_id=np.repeat(np.asarray(example_ids, np.int64)[:, None], group_size, 1),
               valid=np.ones(shape, bool), hint_level=np.zeros(shape, np.int32),
               is_injected=np.zeros(shape, bool))
  return group


def group_metrics(groups: Sequence[base.GroupBatch]) -> Dict[str, float]:
  """``multiturn/*`` metrics (``rollout.multiturn.multiturn_metrics``) of every episode in
  ``groups`` (group batches with the multi-turn keys)."""
  cat = lambda key: np.concatenate([np.asarray(g[key]).reshape(
      (-1,) + np.shape(g[key])[2:]) for g in groups])
  view = pytypes.SimpleNamespace(
      token_mask=cat("attention_mask"), loss_mask=cat("mask"), num_turns=cat("num_turns"),
      tool_calls=cat("tool_calls"), tool_errors=cat("tool_errors"), end_reason=cat("end_reason"))
  return rollout_lib.multiturn_metrics(view)


def collect(stream, position: int, *, run: base.RunInfo, prompt_width: Optional[int],
            **kwargs) -> dynamic_sampling.Collected:
  """:func:`.dynamic_sampling.collect` with episodes of ``run.episodes`` (an
  :class:`EpisodeSampler`) as the generation; adds the ``multiturn/*`` metrics of every
  generated round."""
  sampler = run.episodes

  def generate(params, examples, ids, rng):
    return sampler.generate(params, examples, ids, rng, num_samples=run.group_size,
                            prompt_width=prompt_width)

  collected = dynamic_sampling.collect(stream, position, run=run, prompt_width=prompt_width,
                                       generate=generate, **kwargs)
  collected.metrics.update(group_metrics(collected.rounds))
  return collected


def from_config(config: ml_collections.ConfigDict, model_config: Any, tokenizer: Any,
                source: Any) -> Tuple[Optional[EpisodeSampler], Any]:
  """``(episode sampler or None when multi-turn is off, task source)``; with
  ``demonstration_fraction`` and an environment that has ``demonstration(example,
  end_of_turn)``, the source's examples carry tool-using warm-up targets
  (:func:`rlvr_jax.envs.tasks.with_demonstrations`)."""
  settings = config.rl.multiturn
  if not settings.enabled:
    return None, source
  env = build_environment(settings.env, **dict(settings.env_kwargs))
  sampler = EpisodeSampler(model_config, tokenizer, env, settings,
                           tuple(config.data.prompt_buckets), config.rl.max_new_tokens,
                           config.rl.temperature, config.rl.top_k, config.rl.top_p)
  if settings.demonstration_fraction:
    if not hasattr(env, "demonstration"):
      raise ValueError(f"environment {settings.env!r} has no demonstration(); set "
                       "config.rl.multiturn.demonstration_fraction=0")
    close = tokenizer.eos_token or ""
    source = env_tasks.with_demonstrations(
        source, lambda e: env.demonstration(e, close), settings.demonstration_fraction)
  return sampler, source


def check_stages(stages: Sequence[base.Stage]) -> None:
  """Multi-turn runs take stages that do not generate single-turn samples of their own."""
  bad = [s.name for s in stages if (s.stream_id is not None or s.stacks_generations)
         and not getattr(s, "multiturn", False)]
  if bad:
    raise ValueError(f"stages {bad} generate single-turn samples; they cannot run in a "
                     "multi-turn run (config.rl.multiturn.enabled)")


class Evaluator:
  """Held-out evaluation by episodes: ``evaluate(params, examples, key, greedy=None)`` (the
  RL loop's evaluator interface; metrics in the module docstring).

  Args:
    config: ``config.eval`` (``num_samples``, ``batch_size``, ``greedy``).
    sampler: the run's :class:`EpisodeSampler`.
    heldout: the held-out examples.
    key: the evaluation key.
  """

  def __init__(self, config: Any, sampler: EpisodeSampler,
               heldout: Sequence[task_lib.Example], key: jax.Array):
    self.config, self.sampler, self.heldout, self.key = config, sampler, heldout, key

  def _episodes(self, params, examples, key, num_samples, temperature):
    rewards, calls = [], []
    size = self.config.batch_size
    for i, start in enumerate(range(0, len(examples), size)):
      chunk, real = text_sampler.pad_by_repetition(examples[start:start + size], size)
      batch, _ = self.sampler.rollout(params, chunk, jax.random.fold_in(key, i),
                                      num_samples=num_samples, temperature=temperature)
      rewards.append(np.asarray(batch.rewards)[:real * num_samples])
      calls.append(np.asarray(batch.tool_calls)[:real * num_samples])
    return np.concatenate(rewards), np.concatenate(calls)

  def __call__(self, params: Any, examples: Sequence[task_lib.Example], key: jax.Array,
               greedy: Optional[bool] = None) -> Dict[str, float]:
    """``pass@1``, ``tool_call_rate`` and, with ``greedy``, ``greedy_accuracy`` and
    ``greedy_tool_call_rate`` of ``params`` on ``examples``."""
    rewards, calls = self._episodes(params, list(examples), key, self.config.num_samples, None)
    out = {"pass@1": float(np.mean(rewards >= 1.0)),
           "tool_call_rate": float(np.mean(calls > 0))}
    if self.config.greedy if greedy is None else greedy:
      rewards, calls = self._episodes(params, list(examples), key, 1, 0.0)
      out.update(greedy_accuracy=float(np.mean(rewards >= 1.0)),
                 greedy_tool_call_rate=float(np.mean(calls > 0)))
    return out
