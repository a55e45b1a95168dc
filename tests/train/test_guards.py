"""Failure guards of the training loop: consecutive skipped updates, skip-aware metric means."""

import math

import pytest

from rlvr_jax.train import guards


def test_skip_guard_stops_after_k_consecutive_skips():
  guard = guards.SkipGuard(max_consecutive=3)
  guard.update(1, [0.0, 1.0])
  guard.update(2, [1.0])
  assert guard.consecutive == 2
  guard.update(3, [0.0, 1.0, 1.0])  # an applied update resets the count
  assert guard.consecutive == 2 and guard.total == 4
  with pytest.raises(guards.TooManySkippedUpdates) as info:
    guard.update(4, [1.0], last_checkpoint=3)
  message = str(info.value)
  assert "step 4" in message and "3 consecutive" in message
  assert "checkpoint at step 3 is intact" in message


def test_skip_guard_without_checkpoint_and_argument_checks():
  guard = guards.SkipGuard(max_consecutive=1)
  with pytest.raises(guards.TooManySkippedUpdates, match="no checkpoint was written yet"):
    guard.update(7, 1.0)
  for bad in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match="max_consecutive"):
      guards.SkipGuard(bad)


def test_mean_over_updates_leaves_skipped_updates_out():
  per_update = [
      {"loss": 1.0, "grad_norm": 2.0, "ratio_max": 1.5, "ratio_min": 0.5, "update/skipped": 0.0},
      {"loss": math.nan, "grad_norm": math.inf, "ratio_max": math.nan, "ratio_min": math.nan,
       "update/skipped": 1.0},
      {"loss": 3.0, "grad_norm": 4.0, "ratio_max": 1.2, "ratio_min": 0.8, "update/skipped": 0.0},
  ]
  out = guards.mean_over_updates(per_update)
  assert out == {"loss": 2.0, "grad_norm": 3.0, "ratio_max": 1.5, "ratio_min": 0.5,
                 "update/skipped": 1.0}
  # Every update skipped: the values are reported as they were (not finite), flagged by the count.
  out = guards.mean_over_updates(per_update[1:2] * 2)
  assert out["update/skipped"] == 2.0 and math.isnan(out["loss"])
  # Metrics without the flag (an older step function) average over all updates.
  assert guards.mean_over_updates([{"loss": 1.0}, {"loss": 2.0}]) == {"loss": 1.5}


def test_nonfinite_leaves_names_only_bad_float_leaves():
  import jax
  import jax.numpy as jnp
  import numpy as np
  tree = {"w": jnp.ones((2, 3)), "b": jnp.array([0.0, jnp.inf], jnp.bfloat16),
          "n": np.array([np.nan]), "step": jnp.zeros((), jnp.int32), "key": jax.random.key(0)}
  assert guards.nonfinite_leaves(tree) == ["['b']", "['n']"]
  assert guards.nonfinite_leaves({"w": jnp.ones(3), "i": jnp.arange(3)}) == []
