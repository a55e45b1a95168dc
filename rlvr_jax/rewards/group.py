"""Group-level reward functions: rewards that see a whole group at once, and their registry.

A verifier scores one completion against its example. Many reward designs need more: the other
samples of the group (TTRL's majority vote, VeRPO's per-test pass rates, Co-Reward's rephrased
twin), or the policy itself (VeriFree, RLPR and SAR score a reference answer or the response
under the current policy, teacher-forced). A **group reward function** gets a whole step's
groups as a :class:`RewardBatch` and returns::

  fn(batch: RewardBatch) -> np.ndarray [P, G]      # one reward per sequence
                          | np.ndarray [P, G, T]   # per-token rewards (completion positions)
                          | GroupRewardResult      # rewards plus metrics, group filter, columns

Per-token rewards reach token-return estimators (REINFORCE++, PPO-style returns) on their tokens
and sequence estimators (GRPO, RLOO) as their sum over the completion mask (the trainer places
them like multi-turn per-turn rewards: ``docs/reward_design.md``).

Several functions combine with weights, as :mod:`rlvr_jax.rewards.functions` combines TRL-style
ones (:func:`compute_group_rewards`, :func:`rlvr_jax.rewards.combine.weighted_sum` and its
missing-value policies). **Failure policy**: an exception in one function, or a return value of
the wrong shape, costs that function's reward for that call (every sample missing, counted in
``rewards/<name>/failures``, a ``RuntimeWarning`` naming it); a NaN or an infinity costs only its
own sample. The run never stops because of a reward function.

**State across steps**: a function that carries a value from call to call (RLPR's EMA std
threshold) keeps it in a JSON-serialisable dict attribute ``fn.state``; the trainer saves every
such dict in its checkpoints and puts it back on resume
(:meth:`rlvr_jax.train.stages.group_rewards.GroupRewards.state_dict`), so a resumed run scores
as the uninterrupted one would.

The registry maps names to factories: :func:`register` ``(name, factory)`` and
:func:`build` ``(name, **kwargs) -> fn``. The built-in designs (TTRL, Co-Reward, VeRPO,
VeriFree, RLPR, the log-probability reward, SAR, DARL) are registered by
:mod:`rlvr_jax.rewards.group_functions`, the LLM-judge rewards (``judge``, ``judge_soft``,
``rlbff``, ``rubric_anchors``, ``openrs``, ``cm2_judge``, ``rlvrr_style``, ``search_gen_v``) by
:mod:`rlvr_jax.rewards.judge_group`; a TRL-style function ``fn(prompts, completions,
**columns)`` runs through :func:`from_trl` (registered as ``"trl"``, with its import ``path``).

This module is pure host code: numpy, no trainer import. The trainer's hook
(:mod:`rlvr_jax.train.stages.group_rewards`) builds the batch and its :attr:`RewardBatch.policy`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np


@dataclasses.dataclass(frozen=True)
class RewardBatch:
  """A step's groups, as a group reward function sees them (``P`` prompts x ``G`` samples).

  Attributes:
    examples: the ``P`` examples (one per group): ``answer`` (gold), ``metadata``, ``prompt``.
    prompts: the ``P`` prompts as rendered for the model (chat template applied), without BOS.
    completions: ``P`` lists of ``G`` completion texts (special tokens dropped).
    tokens: ``[P, G, T]`` int32 completion tokens.
    mask: ``[P, G, T]`` float32 completion mask (1 on generated tokens, stop token included).
    verifier_rewards: ``[P, G]`` float32, the per-sample verifier's rewards.
    truncated: ``[P, G]`` float32, 1 where generation hit ``max_new_tokens``.
    prompt_tokens: ``[P, L]`` int32 left-padded prompt tokens (BOS included when the run adds
      it), the same for every sample of a group.
    prompt_mask: ``[P, L]`` bool.
    logprobs: ``[P, G, T]`` float32 behaviour log-probs of the sampled tokens, or None.
    pad_id: the tokenizer's padding id.
    policy: a :class:`PolicyScorer` for teacher-forced scoring under the current (sampling)
      policy, or None where none is available (then likelihood rewards raise, and the hook
      counts that function's samples as failures).
    step: the RL step (0-based).
  """

  examples: Sequence[Any]
  prompts: Sequence[str]
  completions: Sequence[Sequence[str]]
  tokens: np.ndarray
  mask: np.ndarray
  verifier_rewards: np.ndarray
  truncated: np.ndarray
  prompt_tokens: np.ndarray
  prompt_mask: np.ndarray
  logprobs: Optional[np.ndarray] = None
  pad_id: int = 0
  policy: Optional["PolicyScorer"] = None
  step: int = 0

  @property
  def shape(self) -> Tuple[int, int]:
    """``(P, G)``."""
    return tuple(np.shape(self.verifier_rewards))  # type: ignore[return-value]

  def prompt_ids(self, p: int) -> List[int]:
    """Group ``p``'s prompt tokens without padding (BOS included when the run adds it)."""
    return [int(t) for t, m in zip(self.prompt_tokens[p], self.prompt_mask[p]) if m]

  def completion_ids(self, p: int, g: int) -> List[int]:
    """Sample ``(p, g)``'s generated tokens (stop token included when it finished)."""
    return [int(t) for t in self.tokens[p, g][self.mask[p, g] > 0]]


class PolicyScorer:
  """The protocol of :attr:`RewardBatch.policy` (the trainer's handle implements it).

  Every call scores its rows in one batched, teacher-forced pass under the policy that sampled
  the step, at the sampling temperature, on the run's mesh; rows are padded to static shapes.
  """

  def logprobs(self, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
               ) -> np.ndarray:
    """``[N, L]`` float32: ``log pi(c_i | context, c_<i)`` of each continuation token, 0 past a
    continuation's end (``L`` = the longest continuation). ``contexts`` are full prompt token
    lists (BOS and chat template included, as from :meth:`encode_prompt`)."""
    raise NotImplementedError

  def sample(self, prompts: Sequence[Any], num_samples: int) -> List[List[str]]:
    """``num_samples`` completion texts for each prompt (text or chat messages), sampled under
    the policy at the run's temperature in one batched generation (Co-Reward's rephrasings)."""
    raise NotImplementedError

  def encode(self, text: str) -> List[int]:
    """Token ids of ``text`` without special tokens."""
    raise NotImplementedError

  def decode(self, ids: Sequence[int]) -> str:
    """Text of ``ids``, special tokens dropped (as completions are decoded)."""
    raise NotImplementedError

  def encode_prompt(self, prompt: Any) -> List[int]:
    """Token ids of a prompt (text or chat messages) exactly as the sampler builds them."""
    raise NotImplementedError

  def model(self) -> Tuple[Any, Any, Any, bool]:
    """``(model_config, params, tokenizer, add_bos)`` of the sampling policy: what a judge that
    shares the policy's weights runs on (:func:`rlvr_jax.rewards.judge.policy_judge_model`)."""
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class GroupRewardResult:
  """What a group reward function may return instead of a bare array.

  Attributes:
    rewards: ``[P, G]`` or ``[P, G, T]`` float; NaN marks a missing value (the function does not
      apply to that sample).
    metrics: scalar diagnostics, logged as ``<name>/<key>``.
    drop_groups: ``[P]`` bool, groups to take out of the loss (RLPR's std filter); None keeps all.
    columns: extra group arrays ``[P, G, ...]`` for the objective (a loss input such as
      VeriFree's ``answer_mask``), or replacements of ``tokens``, ``mask`` and ``logprobs``
      (VeriFree splices the reference answer into the trained sequence); see
      :mod:`rlvr_jax.train.stages.group_rewards`.
  """

  rewards: Any
  metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
  drop_groups: Optional[np.ndarray] = None
  columns: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)


GroupRewardFn = Callable[[RewardBatch], Union[np.ndarray, GroupRewardResult]]
Factory = Callable[..., GroupRewardFn]

_REGISTRY: Dict[str, Factory] = {}
# Modules that register the built-in functions, imported on the first lookup (they import jax).
_BUILTIN_MODULES = ("rlvr_jax.rewards.group_functions", "rlvr_jax.rewards.judge_group")


def register(name: str, factory: Factory) -> None:
  """Registers ``factory(**kwargs) -> fn`` under ``name`` (a later registration replaces it)."""
  if not callable(factory):
    raise TypeError(f"factory must be callable, got {type(factory).__name__}")
  _REGISTRY[name] = factory


def _load_builtins() -> None:
  for module in _BUILTIN_MODULES:
    importlib.import_module(module)


def names() -> List[str]:
  """Registered names (the built-in ones included)."""
  _load_builtins()
  return sorted(_REGISTRY)


def build(name: str, /, **kwargs) -> GroupRewardFn:
  """The function registered as ``name``, built with ``kwargs``."""
  _load_builtins()
  if name not in _REGISTRY:
    raise KeyError(f"No group reward function {name!r}; registered: {sorted(_REGISTRY)}.")
  return _REGISTRY[name](**kwargs)


def from_trl(fn: Callable[..., Sequence[Optional[float]]]) -> GroupRewardFn:
  """A TRL-style ``fn(prompts, completions, **columns) -> list[float | None]`` as a group
  reward function.

  It is called once on the ``P·G`` samples, prompt-major, with TRL's keyword convention: the
  rendered prompt repeated per sample, the completion texts, and the columns ``answer`` (gold),
  ``metadata`` and ``verifier_reward`` (each a list aligned with ``completions``). ``None``
  becomes a missing value (NaN).
  """

  def group_fn(batch: RewardBatch) -> np.ndarray:
    p, g = batch.shape
    flat = [c for row in batch.completions for c in row]
    columns = {"answer": [e.answer for e in batch.examples for _ in range(g)],
               "metadata": [dict(e.metadata) for e in batch.examples for _ in range(g)],
               "verifier_reward": [float(r) for r in np.ravel(batch.verifier_rewards)]}
    prompts = [batch.prompts[i] for i in range(p) for _ in range(g)]
    values = list(fn(prompts=prompts, completions=flat, **columns))
    if len(values) != p * g:
      raise ValueError(f"returned {len(values)} values for {p * g} samples")
    return np.asarray([np.nan if v is None else float(v) for v in values],
                      np.float64).reshape(p, g)

  group_fn.__name__ = getattr(fn, "__name__", "trl_fn")
  return group_fn


def _import_callable(path: str) -> Callable:
  module, _, attr = path.rpartition(".")
  if not module:
    raise ValueError(f"need 'module.function', got {path!r}")
  return getattr(importlib.import_module(module), attr)


# From a config: {"acc": {"function": "trl", "path": "my_package.rewards.accuracy"}}.
register("trl", lambda path: from_trl(_import_callable(path)))


@dataclasses.dataclass(frozen=True)
class GroupRewardFunction:
  """One named, weighted group reward function.

  Attributes:
    name: used in metric names (``rewards/<name>/...``); unique in a call.
    fn: ``fn(batch) -> [P, G] | [P, G, T] | GroupRewardResult``.
    weight: its weight in the combined reward.
  """

  name: str
  fn: GroupRewardFn
  weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class GroupRewardOutput:
  """What :func:`compute_group_rewards` returns.

  Attributes:
    total: ``[P, G]`` float32 weighted sum of the sequence rewards (per-token functions count
      their sum over the completion mask), NaN where no function gave a value.
    valid: ``[P, G]`` bool, where ``total`` is defined.
    token_rewards: ``[P, G, T]`` float32 weighted per-token rewards of the per-token functions
      (zeros when none), masked to the completion.
    per_function: ``{name: [P, G] float32}`` sequence rewards, NaN where missing or failed.
    drop_groups: ``[P]`` bool, the union of the functions' group filters.
    columns: the functions' extra group arrays (a name given twice is an error).
    metrics: ``rewards/<name>/{mean,std,failures,missing}`` and each function's own metrics as
      ``<name>/<key>``.
  """

  total: np.ndarray
  valid: np.ndarray
  token_rewards: np.ndarray
  per_function: Dict[str, np.ndarray]
  drop_groups: np.ndarray
  columns: Dict[str, np.ndarray]
  metrics: Dict[str, float]


def _as_result(value: Any) -> GroupRewardResult:
  return value if isinstance(value, GroupRewardResult) else GroupRewardResult(rewards=value)


def _check_result(result: GroupRewardResult, p: int, g: int, t: int) -> np.ndarray:
  """The rewards as float64 ``[P, G]`` or ``[P, G, T]``; raises on any other shape."""
  rewards = np.asarray(result.rewards, np.float64)
  if rewards.shape not in ((p, g), (p, g, t)):
    raise ValueError(f"returned rewards of shape {rewards.shape}; need {(p, g)} or {(p, g, t)}")
  if result.drop_groups is not None and np.shape(result.drop_groups) != (p,):
    raise ValueError(f"drop_groups must be [P] = ({p},), got {np.shape(result.drop_groups)}")
  for key, col in result.columns.items():
    if np.shape(col)[:2] != (p, g):
      raise ValueError(f"column {key!r} must be [P, G, ...], got shape {np.shape(col)}")
  return rewards


def _nan_stats(x: np.ndarray) -> Tuple[float, float]:
  present = x[~np.isnan(x)]
  if present.size == 0:
    return float("nan"), float("nan")
  return float(present.mean()), float(present.std())


def compute_group_rewards(functions: Sequence[GroupRewardFunction], batch: RewardBatch, *,
                          missing: str = "zero",
                          on_error: Optional[Callable[[str, str], None]] = None
                          ) -> GroupRewardOutput:
  """Calls every function on ``batch`` and combines their rewards with their weights.

  Args:
    functions: the functions (unique names, at least one).
    batch: the step's groups.
    missing: missing-value policy of :func:`rlvr_jax.rewards.combine.weighted_sum`
      (``"zero"``, ``"renormalize"``, ``"propagate"``).
    on_error: optional ``on_error(name, message)`` for logging failures.

  Returns:
    A :class:`GroupRewardOutput`. A per-token function's sequence reward is
    ``sum_t r_t · mask_t``; its tokens enter ``token_rewards`` with its weight.
  """
  from rlvr_jax.rewards import combine  # pylint: disable=g-import-not-at-top

  names_ = [f.name for f in functions]
  if not functions:
    raise ValueError("need at least one group reward function")
  if len(set(names_)) != len(names_):
    raise ValueError(f"group reward function names must be unique: {names_}")
  p, g = batch.shape
  mask = np.asarray(batch.mask, np.float64)
  t = mask.shape[-1]
  per_function: Dict[str, np.ndarray] = {}
  token_rewards = np.zeros((p, g, t), np.float64)
  drop = np.zeros(p, bool)
  columns: Dict[str, np.ndarray] = {}
  metrics: Dict[str, float] = {}
  for f in functions:
    failed = 0
    try:
      result = _as_result(f.fn(batch))
      rewards = _check_result(result, p, g, t)
    except Exception as e:  # pylint: disable=broad-except
      message = f"{type(e).__name__}: {e}"
      warnings.warn(f"group reward function {f.name!r} failed on this step's batch ({message}); "
                    "its rewards are missing for every sample.", RuntimeWarning, stacklevel=2)
      if on_error is not None:
        on_error(f.name, message)
      result, rewards, failed = GroupRewardResult(np.full((p, g), np.nan)), None, p * g
    if rewards is not None:
      if rewards.ndim == 3:
        finite = np.isfinite(np.where(mask > 0, rewards, 0.0)).all(-1)
        tokens = np.where((mask > 0) & finite[..., None], rewards, 0.0)
        token_rewards += f.weight * tokens
        rewards = np.where(finite, tokens.sum(-1), np.nan)
        bad = int((~finite).sum())
      else:
        usable = np.isfinite(rewards) & (np.abs(rewards) <= np.finfo(np.float32).max)
        bad = int((~usable & ~np.isnan(rewards)).sum())  # NaN is "missing", not a failure
        rewards = np.where(usable, rewards, np.nan)
      if bad:
        failed += bad
        warnings.warn(f"group reward function {f.name!r} returned values that are not finite; "
                      "they count as failures of their samples.", RuntimeWarning, stacklevel=2)
      if result.drop_groups is not None:
        drop |= np.asarray(result.drop_groups, bool)
      for key, col in result.columns.items():
        if key in columns:
          raise ValueError(f"column {key!r} is returned by two group reward functions")
        columns[key] = np.asarray(col)
      metrics.update({f"{f.name}/{k}": float(v) for k, v in result.metrics.items()})
    else:
      rewards = np.asarray(result.rewards, np.float64)
    values = rewards.astype(np.float32)
    per_function[f.name] = values
    mean, std = _nan_stats(values)
    metrics[f"rewards/{f.name}/mean"] = mean
    metrics[f"rewards/{f.name}/std"] = std
    metrics[f"rewards/{f.name}/failures"] = float(failed)
    metrics[f"rewards/{f.name}/missing"] = float(np.isnan(values).sum())
  stacked = np.stack([per_function[n] for n in names_])
  weights = np.asarray([f.weight for f in functions], np.float32)
  total, valid = combine.weighted_sum(stacked, weights, missing=missing)
  return GroupRewardOutput(total=np.asarray(total, np.float32), valid=np.asarray(valid, bool),
                           token_rewards=token_rewards.astype(np.float32),
                           per_function=per_function, drop_groups=drop, columns=columns,
                           metrics=metrics)


def combine_with_verifier(verifier_rewards: np.ndarray, output: GroupRewardOutput, *,
                          mode: str, verifier_weight: float = 1.0,
                          failure_reward: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
  """The group's new raw rewards ``[P, G]`` and where they failed ``[P, G]`` bool.

  ``mode="replace"``: ``R = total`` (the group functions' weighted sum); ``mode="add"``:
  ``R = verifier_weight · r_verifier + total``. A sample without any group reward (every
  function missing or failed) gets ``failure_reward`` under ``"replace"`` and the verifier term
  alone under ``"add"``; it is flagged in the second array either way.
  """
  if mode not in ("replace", "add"):
    raise ValueError(f"combine must be 'replace' or 'add', got {mode!r}")
  if not math.isfinite(failure_reward):
    raise ValueError(f"failure_reward must be finite, got {failure_reward!r}")
  verifier = np.asarray(verifier_rewards, np.float32)
  total = np.where(output.valid, output.total, 0.0).astype(np.float32)
  if mode == "replace":
    rewards = np.where(output.valid, total, np.float32(failure_reward))
  else:
    rewards = np.float32(verifier_weight) * verifier + total
  return rewards.astype(np.float32), ~output.valid
