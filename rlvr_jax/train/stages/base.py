"""The group-stage protocol: what a data-stage method is, and what it gets to work with.

A step's samples travel between generation and the advantage stage as a **group batch**: a dict
of host numpy arrays, group-major, ``[P, W, ...]`` (``P`` prompts, ``W`` samples per group):

=================  ===============  ====================================================
key                shape            meaning
=================  ===============  ====================================================
prompt_tokens      [P, W, L] int32  left-padded prompt of each sample
prompt_mask        [P, W, L] bool
tokens             [P, W, T] int32  completion tokens (pad after the end)
logprobs           [P, W, T] f32    behaviour log-probs of the sampled tokens
mask               [P, W, T] f32    completion mask (the advantage stage's view; the loss
                                    mask with holes in multi-turn runs, see :mod:`.multiturn`)
in_loss            [P, W] f32       0 removes a sample from the loss only (overlong filter)
lengths            [P, W] int32     completion lengths, stop token included
truncated          [P, W] f32       1 when generation hit ``max_new_tokens``
raw_rewards        [P, W] f32       verifier score
reward_errors      [P, W] f32       1 when scoring failed (the failure reward was used)
reward_timeouts    [P, W] f32       1 when scoring timed out
example_id         [P, W] int64     index into the step's examples (``StepContext.examples``)
valid              [P, W] bool      False on padding slots (DARS's variable group sizes)
hint_level         [P, W] int32     Scaf-GRPO hint level, 0 = none
is_injected        [P, W] bool      ViSurf's ground-truth sample
=================  ===============  ====================================================

A stage may add arrays; an array named like an input that the objective reads (an
``AdvantageInputs`` extra such as ``greedy_rewards`` ``[P]``, or a ``LossBatch`` extra such as
``selfreward_position`` ``[P, W]``) is handed to it by the trainer (:mod:`rlvr_jax.train.batch`).

A **stage** is an object with ``__call__(ctx, group) -> (group, metrics)`` (:class:`Stage`). It is
switched on either by its config entry ``config.rl.stages.<name>.enabled`` or, for an *input
provider*, because the objective reads one of the names it ``provides`` (ReMax's
``greedy_rewards``, LaSeR's ``self_rewards``). Stages run in registration order (see
:mod:`rlvr_jax.train.stages`); each keeps the update's shapes static, declaring how it changes
them through :meth:`Stage.width` and :attr:`Stage.extra_columns`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from rlvr_jax import types
from rlvr_jax.data import task as task_lib
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import prng

GroupBatch = Dict[str, np.ndarray]
Metrics = Dict[str, float]


def check_rewards(rewards: Any, name: str = "rewards") -> np.ndarray:
  """``rewards`` as float64 ``[P, G]``; a clear error otherwise."""
  rewards = np.asarray(rewards, dtype=np.float64)
  if rewards.ndim != 2:
    raise ValueError(f"{name} must be [P, G], got shape {rewards.shape}.")
  return rewards


def check_group_batch(batch: Mapping[str, np.ndarray], num_groups: int) -> None:
  """Every array of ``batch`` has leading (group) dimension ``num_groups``."""
  for key, value in batch.items():
    if np.shape(value)[:1] != (num_groups,):
      raise ValueError(f"batch[{key!r}] must have leading (group) dimension {num_groups}, "
                       f"got shape {np.shape(value)}.")


def _left_pad(x: np.ndarray, width: int, value) -> np.ndarray:
  pad = [(0, 0)] * (x.ndim - 1) + [(width - x.shape[-1], 0)]
  return np.pad(x, pad, constant_values=value)


def group_batch(rollout: types.Rollout, scored: Any, example_ids: Sequence[int], group_size: int,
                *, prompt_width: Optional[int], pad_id: int) -> GroupBatch:
  """One generation's rollout (``len(example_ids) * group_size`` rows, prompt-major) and its
  scores (a :class:`~rlvr_jax.train.rewards_host.RewardResult`) as a group batch.

  ``prompt_width`` left-pads prompts to one width, so that groups of several generations stack.
  """
  num_prompts = len(example_ids)
  prompt_tokens = np.asarray(rollout.prompt_tokens)
  prompt_mask = np.asarray(rollout.prompt_mask)
  if prompt_width is not None:
    prompt_tokens = _left_pad(prompt_tokens, prompt_width, pad_id)
    prompt_mask = _left_pad(prompt_mask, prompt_width, False)
  tokens, lengths = np.asarray(rollout.tokens), np.asarray(rollout.lengths)
  flat = {
      "prompt_tokens": prompt_tokens, "prompt_mask": prompt_mask, "tokens": tokens,
      "logprobs": np.asarray(rollout.logprobs, np.float32),
      # The mask in numpy: jnp here would compile once per row count (stage chunks vary).
      "mask": (np.arange(tokens.shape[1])[None] < lengths[:, None]).astype(np.float32),
      "in_loss": np.ones(len(lengths), np.float32),
      "lengths": lengths, "truncated": np.asarray(rollout.truncated, np.float32),
      "raw_rewards": np.asarray(scored.rewards, np.float32),
      "reward_errors": np.asarray(scored.errors, np.float32),
      "reward_timeouts": np.asarray(scored.timeouts, np.float32),
  }
  group = {k: v.reshape((num_prompts, group_size) + v.shape[1:]) for k, v in flat.items()}
  ids = np.asarray(example_ids, np.int64)
  shape = (num_prompts, group_size)
  group.update(example_id=np.repeat(ids[:, None], group_size, axis=1),
               valid=np.ones(shape, bool), hint_level=np.zeros(shape, np.int32),
               is_injected=np.zeros(shape, bool))
  return group


def flatten(group: Mapping[str, np.ndarray], shape: Tuple[int, int]) -> GroupBatch:
  """``[P, W, ...]`` arrays as ``[P·W, ...]`` rows, ``shape = (P, W)`` (arrays of one value per
  group, ``[P]``, are repeated over the group)."""
  p, w = shape
  out = {}
  for key, value in group.items():
    value = np.asarray(value)
    if value.shape[:2] != (p, w):
      value = np.repeat(value[:, None], w, axis=1)
    out[key] = value.reshape((p * w,) + value.shape[2:])
  return out


class TimedScorer:
  """A verifier scorer that adds up the seconds it spends (the step's ``time/reward``)."""

  def __init__(self, scorer: Callable[[Sequence[str], Sequence[task_lib.Example]], Any]):
    self._scorer = scorer
    self.seconds = 0.0

  def __call__(self, texts: Sequence[str], examples: Sequence[task_lib.Example]):
    start = time.time()
    try:
      return self._scorer(texts, examples)
    finally:
      self.seconds += time.time() - start

  def reset(self) -> None:
    """Starts a new step's count."""
    self.seconds = 0.0

  def close(self) -> None:
    """Closes the wrapped scorer (its worker pool)."""
    self._scorer.close()


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What a stage may know about the run when it is built.

  Attributes:
    group_size: ``G``, samples per prompt of the main generation (``config.rl.num_samples``).
    num_prompts: ``P``, groups per step.
    temperature: the sampling temperature.
    objective: the run's :class:`~rlvr_jax.objectives.compose.Objective`.
    sampler: the run's :class:`~rlvr_jax.rollout.text_sampler.TextSampler`.
    max_prompt_length: the largest prompt bucket.
    episodes: the multi-turn :class:`~.multiturn.EpisodeSampler` when
      ``config.rl.multiturn.enabled``, else None.
  """

  group_size: int
  num_prompts: int
  temperature: float
  objective: Any
  sampler: text_sampler.TextSampler
  max_prompt_length: int
  episodes: Any = None


@dataclasses.dataclass(frozen=True)
class StepContext:
  """What a stage may use at one step.

  Attributes:
    step: the RL step (0-based).
    params: the policy that sampled the step (stage generations and scoring use it).
    examples: the step's examples; ``group["example_id"]`` indexes them.
    run: the :class:`RunInfo`.
    scorer: the step's verifier scorer ``(texts, examples) -> RewardResult``.
    sample_key: the run's sampling key (see :mod:`rlvr_jax.train.prng`).
    prompt_width: the prompt width groups are padded to when generations stack, else None.
    logprobs_fn: ``(params, rows, all_positions) -> [rows, T]`` teacher-forced log-probs of flat
      rows (``prompt_tokens``, ``prompt_mask``, ``tokens``, ``mask``); ``all_positions`` scores
      every completion column whatever the mask says.
  """

  step: int
  params: Any
  examples: Sequence[task_lib.Example]
  run: RunInfo
  scorer: TimedScorer
  sample_key: jax.Array
  prompt_width: Optional[int]
  logprobs_fn: Callable[[Any, Mapping[str, np.ndarray], bool], np.ndarray]

  def sample_one(self, examples: Sequence[task_lib.Example], example_ids: Sequence[int],
                 stream_id: int, *, temperature: Optional[float] = None) -> GroupBatch:
    """One scored sample per example, a group batch ``[len(examples), 1, ...]``.

    Generated in chunks of ``P·G`` prompts (the last padded by repetition), the main
    generation's row count: the same memory, and one more compilation per run at most.
    """
    chunk_size = self.run.num_prompts * self.run.group_size
    sampler = self.run.sampler
    parts = []
    for c, start in enumerate(range(0, len(examples), chunk_size)):
      chunk, real = text_sampler.pad_by_repetition(examples[start:start + chunk_size],
                                                   chunk_size)
      key = prng.stage_key(self.sample_key, self.step, stream_id, c)
      rollout, texts = sampler.sample(self.params, chunk, key, num_samples=1,
                                      temperature=temperature)
      rollout = jax.tree.map(lambda x, real=real: text_sampler.fetch_global(x)[:real], rollout)
      scored = self.scorer(texts[:real], chunk[:real])
      parts.append(group_batch(rollout, scored, example_ids[start:start + real], 1,
                               prompt_width=self.prompt_width, pad_id=sampler.pad_id))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def group_logprobs(self, group: Mapping[str, np.ndarray], *, params: Any = None,
                     all_positions: bool = False) -> np.ndarray:
    """Teacher-forced log-probs ``[P, W, T]`` of a group batch under ``params`` (default: the
    sampling policy, :attr:`params`); multi-turn groups attend to their ``attention_mask``
    (observation tokens included)."""
    p, w = group["raw_rewards"].shape
    rows = flatten({k: group[k] for k in ("prompt_tokens", "prompt_mask", "tokens")}, (p, w))
    rows["mask"] = flatten({"mask": group.get("attention_mask", group["mask"])}, (p, w))["mask"]
    out = self.logprobs_fn(self.params if params is None else params, rows, all_positions)
    return np.asarray(out, np.float32).reshape((p, w) + out.shape[1:])


class Stage:
  """Base class of a data stage; subclasses override :meth:`__call__` and what they change.

  Attributes:
    stream_id: the PRNG stream of the stage's own generations (:mod:`rlvr_jax.train.prng`).
    stacks_generations: the stage stacks samples of several generations into one group, so
      prompts are padded to the largest bucket.
    extra_columns: completion columns the stage appends (LaSeR's ``z_c``).
    scores_all_positions: the update must score completion positions outside the loss mask.
    provides: input names the stage produces for the objective (``greedy_rewards``, ...).
    scores_rounds: the stage runs inside collection, on every generated round before DAPO's
      filter, instead of after it (the group-reward hook, :mod:`.group_rewards`).
  """

  stream_id: Optional[int] = None
  stacks_generations: bool = False
  extra_columns: int = 0
  scores_all_positions: bool = False
  provides: Tuple[str, ...] = ()
  scores_rounds: bool = False

  def width(self, width: int) -> int:
    """Samples per group after this stage, given ``width`` before it."""
    return width

  def state_dict(self) -> Dict[str, Any]:
    """State the stage carries from step to step, JSON-serialisable; the trainer saves it in
    every checkpoint (``extras["stages"][name]``) and hands it to :meth:`load_state_dict` on
    resume, so a resumed run continues as the uninterrupted one would. Stateless: ``{}``."""
    return {}

  def load_state_dict(self, state: Dict[str, Any]) -> None:
    """Restores what :meth:`state_dict` returned (called on resume, before the first step)."""
    if state:
      raise ValueError(f"stage {type(self).__name__} keeps no state, but the checkpoint holds "
                       f"{sorted(state)}")

  def __call__(self, ctx: StepContext, group: GroupBatch) -> Tuple[GroupBatch, Metrics]:
    raise NotImplementedError
