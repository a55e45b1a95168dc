"""Host-side reward computation: verifiers in worker processes, time-bounded, never fatal.

Every completion is one work item, so a verifier that crashes or hangs costs that one completion
its reward (``failure_reward``, 0 by default) and nothing else. A verifier that returns NaN or an
infinity is treated the same way: the item gets ``failure_reward`` and counts as a reward error
(the loop's ``reward_errors``), and a ``RuntimeWarning`` names the verifier once per scorer, so a
non-finite score never reaches the advantages. With ``num_workers = 0`` the
verifiers run in the trainer's own process (fast, for trusted verifiers such as the procedural
tasks'; an exception still costs only its item, but a hang is not bounded).

Verifiers are looked up by name in :mod:`rlvr_jax.data.task`'s registry *inside the worker*, so
the modules that register them must be importable there: the built-in ones (procedural tasks,
standard verifiers, reasoning-gym's) are imported here; list other modules in ``verifier_modules``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import warnings
from typing import Sequence, Set, Tuple

import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import registry

# A verifier's float64 score beyond this is infinite once stored in the float32 reward array.
_FLOAT32_MAX = float(np.finfo(np.float32).max)

BUILTIN_VERIFIER_MODULES = ("rlvr_jax.data.procedural", "rlvr_jax.rewards.verifiers",
                            "rlvr_jax.data.gym")


def score_one(completion: str, example: task_lib.Example,
              modules: Tuple[str, ...] = BUILTIN_VERIFIER_MODULES) -> float:
  """``verifier(completion, example)`` after importing the modules that register verifiers."""
  for module in modules:
    importlib.import_module(module)
  return float(registry.get_verifier(example.verifier)(completion, example))


@dataclasses.dataclass
class RewardResult:
  """Rewards of ``B`` completions.

  Attributes:
    rewards: ``[B]`` float32 verifier scores (``failure_reward`` where scoring failed).
    errors: ``[B]`` bool, scoring raised, crashed, timed out or returned a value that is not a
      finite float32 (NaN, an infinity, an overflow).
    timeouts: ``[B]`` bool, scoring timed out.
  """

  rewards: np.ndarray
  errors: np.ndarray
  timeouts: np.ndarray


class RewardScorer:
  """Scores completions against their examples; owns the worker pool (close it, or use ``with``).

  Args:
    num_workers: worker processes; 0 scores in this process.
    timeout_s: per-completion limit (workers only).
    failure_reward: reward of a completion whose verifier failed or timed out.
    verifier_modules: extra modules that register verifiers (imported in the workers too).
  """

  def __init__(self, num_workers: int = 0, timeout_s: float = 10.0, failure_reward: float = 0.0,
               verifier_modules: Sequence[str] = ()):
    self.modules = tuple(BUILTIN_VERIFIER_MODULES) + tuple(verifier_modules)
    for module in self.modules:
      importlib.import_module(module)
    self.failure_reward = float(failure_reward)
    if not math.isfinite(self.failure_reward):
      raise ValueError(f"failure_reward must be finite, got {failure_reward!r}.")
    self._warned_non_finite: Set[str] = set()
    self._pool = None
    if num_workers > 0:
      from rlvr_jax.rewards import workers  # pylint: disable=g-import-not-at-top
      self._pool = workers.WorkerPool(num_workers, timeout_s)

  def __call__(self, completions: Sequence[str], examples: Sequence[task_lib.Example]
               ) -> RewardResult:
    if len(completions) != len(examples):
      raise ValueError(f"{len(completions)} completions for {len(examples)} examples.")
    n = len(completions)
    rewards = np.full(n, self.failure_reward, np.float32)
    errors = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    if self._pool is None:
      for i, (completion, example) in enumerate(zip(completions, examples)):
        try:
          value = score_one(completion, example, self.modules)
        except Exception:  # pylint: disable=broad-except
          errors[i] = True
          continue
        errors[i] = not self._accept(rewards, i, value, example.verifier)
    else:
      items = [(c, e, self.modules) for c, e in zip(completions, examples)]
      for i, outcome in enumerate(self._pool.map(score_one, items)):
        if outcome.error is None:
          errors[i] = not self._accept(rewards, i, outcome.value, examples[i].verifier)
        else:
          errors[i] = True
          timeouts[i] = outcome.timed_out
    return RewardResult(rewards=rewards, errors=errors, timeouts=timeouts)

  def _accept(self, rewards: np.ndarray, i: int, value: float, verifier: str) -> bool:
    """Stores ``value`` as reward ``i`` when it is finite in float32; otherwise leaves the
    failure reward there, warns once per verifier name and returns False (a reward error)."""
    if math.isfinite(value) and abs(value) <= _FLOAT32_MAX:
      rewards[i] = value
      return True
    if verifier not in self._warned_non_finite:
      self._warned_non_finite.add(verifier)
      warnings.warn(
          f"verifier {verifier!r} returned a reward that is not finite ({value!r}); such "
          f"rewards count as reward errors and get failure_reward={self.failure_reward} (warned "
          "once per verifier).", RuntimeWarning, stacklevel=3)
    return False

  def close(self) -> None:
    """Shuts down the worker pool, if any (no-op with ``num_workers=0``)."""
    if self._pool is not None:
      self._pool.close()

  def __enter__(self) -> "RewardScorer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

