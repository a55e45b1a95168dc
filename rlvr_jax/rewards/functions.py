"""TRL-style reward functions: several weighted functions, each logged on its own, none fatal.

A reward function has TRL's signature::

  def fn(prompts: list, completions: list, **columns) -> list[float | None]

where ``columns`` are the dataset columns of the batch (``answer``, ``tests``, ``metadata``,
...), each a list aligned with ``completions``. A function should accept ``**kwargs`` so that
columns it does not use can be passed. ``None`` means "this function does not apply to this
sample". A NaN, an infinity or a number too large for float32 is a *failure* of that sample (a
bug in the function far more often than a choice): it is missing like a ``None``, but counted in
``rewards/<name>/failures`` and reported by a ``RuntimeWarning`` naming the function.

:func:`compute_rewards` calls every :class:`RewardFunction` on the batch, in chunks of
``chunk_size`` samples, and combines them with :func:`rlvr_jax.rewards.combine.weighted_sum`.

Failure policy: an exception, a timeout, or a malformed return value (wrong length, a value that
is not a number or None) in one call costs the samples of *that call* that function's reward:
they become missing (NaN), exactly like a ``None``, and are counted in
``rewards/<name>/failures``; a non-finite value costs only its own sample. The run never stops
because of a reward function. With a
:class:`rlvr_jax.rewards.workers.WorkerPool` the calls run in worker processes with a hard,
killing timeout (the function must then be picklable: a module-level function); without one they
run inline, exceptions are still caught, but nothing can interrupt a hung call.

Metrics (names as TRL's): ``rewards/<name>/mean`` and ``rewards/<name>/std`` over the samples
where the function gave a value (NaN when none did), ``rewards/<name>/failures`` (samples lost to
failures), ``rewards/<name>/missing`` (samples without a value for any reason), and ``reward``,
``reward_std`` of the combined reward over valid samples. Standard deviations use ``ddof = 0``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

RewardFn = Callable[..., Sequence[Optional[float]]]

# A value beyond this is infinite once stored in the float32 reward arrays.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class RewardFunction:
  """One named, weighted reward function.

  Attributes:
    name: used in metric names (``rewards/<name>/...``); must be unique in a call.
    fn: ``fn(prompts, completions, **columns) -> list[float | None]``.
    weight: its weight in the combined reward.
    timeout_s: per-call timeout when run in a worker pool (None: the pool's default).
  """

  name: str
  fn: RewardFn
  weight: float = 1.0
  timeout_s: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class RewardOutput:
  """What :func:`compute_rewards` returns.

  Attributes:
    total: ``[N]`` float32 combined reward, NaN where ``valid`` is False.
    valid: ``[N]`` bool, False where no function gave a value (under the ``"propagate"`` policy:
      where any did not).
    per_function: ``{name: [N] float32}``, NaN where missing or failed.
    metrics: scalar metrics (see the module docstring).
  """

  total: np.ndarray
  valid: np.ndarray
  per_function: Dict[str, np.ndarray]
  metrics: Dict[str, float]


def call_reward_fn(fn: RewardFn, prompts: Sequence[Any], completions: Sequence[Any],
                   columns: Mapping[str, Sequence[Any]]) -> List[Optional[float]]:
  """Calls ``fn`` with TRL's keyword convention (module-level so worker pools can pickle it)."""
  return list(fn(prompts=list(prompts), completions=list(completions), **dict(columns)))


def _to_floats(values: Any, n: int) -> Tuple[Optional[np.ndarray], Optional[str], int]:
  """Validates a function's return value: ``(array, error, num_non_finite)``.

  ``None`` becomes NaN (missing). A NaN, an infinity or a number too large for float32 (an
  integer past ``1e38`` included) is a failure of that sample alone: NaN in the array, counted in
  ``num_non_finite``. A wrong length or a non-numeric value fails the whole call (``error``).
  """
  try:
    values = list(values)
  except TypeError:
    return None, f"returned {type(values).__name__}, not a list", 0
  if len(values) != n:
    return None, f"returned {len(values)} values for {n} samples", 0
  out = np.empty(n, np.float32)
  non_finite = 0
  for i, v in enumerate(values):
    if v is None:
      out[i] = np.nan
      continue
    if not isinstance(v, (numbers.Real, np.bool_)):
      return None, f"returned a non-numeric value of type {type(v).__name__}", 0
    try:
      v = float(v)
    except OverflowError:  # an int beyond float64
      v = math.inf
    if math.isfinite(v) and abs(v) <= _FLOAT32_MAX:
      out[i] = v
    else:
      out[i] = np.nan
      non_finite += 1
  return out, None, non_finite


def _nan_stats(x: np.ndarray) -> Tuple[float, float]:
  present = x[~np.isnan(x)]
  if present.size == 0:
    return float("nan"), float("nan")
  return float(present.mean()), float(present.std())


def compute_rewards(functions: Sequence[RewardFunction],
                    prompts: Sequence[Any],
                    completions: Sequence[Any],
                    columns: Optional[Mapping[str, Sequence[Any]]] = None,
                    *,
                    pool: Any = None,
                    chunk_size: Optional[int] = None,
                    missing: str = "zero",
                    on_error: Optional[Callable[[str, str], None]] = None) -> RewardOutput:
  """Runs every reward function on the batch and combines the results.

  Args:
    functions: the reward functions (unique names).
    prompts: ``N`` prompts (strings or chat messages), aligned with ``completions``.
    completions: ``N`` completions.
    columns: dataset columns, each a length-``N`` list, passed as keyword arguments.
    pool: optional ``WorkerPool`` (``map(fn, items, timeout_s=...) -> [Outcome]``); calls then
      run in its worker processes with a hard timeout.
    chunk_size: samples per call (default: the whole batch in one call); smaller chunks confine
      a failure to fewer samples.
    missing: missing-value policy of :func:`rlvr_jax.rewards.combine.weighted_sum`.
    on_error: optional ``on_error(name, message)`` callback for logging failures.

  Returns:
    A :class:`RewardOutput`.
  """
  n = len(completions)
  if len(prompts) != n:
    raise ValueError(f"{len(prompts)} prompts but {n} completions")
  columns = dict(columns or {})
  for key, col in columns.items():
    if len(col) != n:
      raise ValueError(f"column {key!r} has {len(col)} entries for {n} completions")
  names = [f.name for f in functions]
  if len(set(names)) != len(names):
    raise ValueError(f"reward function names must be unique: {names}")
  if not functions:
    raise ValueError("need at least one reward function")
  size = n if not chunk_size else int(chunk_size)
  chunks = [(s, min(s + size, n)) for s in range(0, n, max(size, 1))]

  per_function: Dict[str, np.ndarray] = {}
  metrics: Dict[str, float] = {}
  for f in functions:
    values = np.full(n, np.nan, np.float32)
    failed = 0
    non_finite = 0
    items = [(f.fn, list(prompts[a:b]), list(completions[a:b]),
              {k: list(v[a:b]) for k, v in columns.items()}) for a, b in chunks]
    if pool is not None:
      outcomes = pool.map(call_reward_fn, items, timeout_s=f.timeout_s)
      results = [(o.value, o.error) for o in outcomes]
    else:
      results = []
      for item in items:
        try:
          results.append((call_reward_fn(*item), None))
        except Exception as e:  # pylint: disable=broad-except
          results.append((None, f"{type(e).__name__}: {e}"))
    for (a, b), (value, error) in zip(chunks, results):
      arr, bad = None, 0
      if error is None:
        arr, error, bad = _to_floats(value, b - a)
      if arr is None:
        failed += b - a
        if on_error is not None:
          on_error(f.name, error or "failed")
        continue
      values[a:b] = arr
      if bad:
        failed += bad
        non_finite += bad
        error = f"returned {bad} values that are not finite (NaN, infinity or float32 overflow)"
        if on_error is not None:
          on_error(f.name, error)
    if n and failed == n:
      # Every call failing is the setup's fault far more often than the data's (with a pool: a
      # function defined in __main__ that the workers cannot import); a metric alone hides it.
      first = next((e for _, e in results if e), "the returned values were unusable")
      warnings.warn(f"reward function {f.name!r} failed on every sample (first error: {first})"
                    + (". With a pool, define it in an importable module, not in __main__ "
                       "(stdin, python -c, a notebook)." if pool is not None else "."),
                    RuntimeWarning, stacklevel=2)
    elif non_finite:
      # The text does not carry the count, so Python's default filter shows it once per run.
      warnings.warn(f"reward function {f.name!r} returned values that are not finite (NaN, "
                    "infinity or float32 overflow); they count as failures of their samples "
                    f"(rewards/{f.name}/failures) and as missing values.", RuntimeWarning,
                    stacklevel=2)
    per_function[f.name] = values
    mean, std = _nan_stats(values)
    metrics[f"rewards/{f.name}/mean"] = mean
    metrics[f"rewards/{f.name}/std"] = std
    metrics[f"rewards/{f.name}/failures"] = float(failed)
    metrics[f"rewards/{f.name}/missing"] = float(np.isnan(values).sum())

  # Imported here, not at the top: worker processes import this module to unpickle
  # `call_reward_fn` and should not pay for importing jax.
  from rlvr_jax.rewards import combine  # pylint: disable=g-import-not-at-top

  stacked = np.stack([per_function[f.name] for f in functions])
  weights = np.asarray([f.weight for f in functions], np.float32)
  total, valid = combine.weighted_sum(stacked, weights, missing=missing)
  total = np.asarray(total, np.float32)
  valid = np.asarray(valid, bool)
  metrics["reward"], metrics["reward_std"] = _nan_stats(np.where(valid, total, np.nan))
  return RewardOutput(total=total, valid=valid, per_function=per_function, metrics=metrics)
