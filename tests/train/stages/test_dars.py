"""DARS: the ET/HW extra-rollout schedules (worked examples and a scalar reference), keep-mask,
padding and merging."""

import math

import numpy as np
import pytest

from rlvr_jax.train.stages import dars as ds


def _dars_reference(a, n, n_max, schedule, use_std):
  """Scalar transcription of the DARS rule in specs/rewards.md §6."""
  if a <= 1e-6:
    a = 0.5 / n
  if a >= 0.5:
    return 0
  s = 2 * math.sqrt(a * (1 - a)) if use_std else 2 * a * (1 - a)
  peak = n if use_std else 0.5 * n
  target = peak if schedule == "ET" else 2 * (1 - a) * peak
  return min(math.ceil((target - n * s) / s), n_max - n)


def test_dars_worked_examples():
  acc = np.array([1 / 8, 0.0, 3 / 8, 0.5, 1.0])
  # specs/rewards.md §6 (N=8, no std): ET 11, 27 capped at 24 (n_max 32), 1; HW 24, 56, 3.
  np.testing.assert_array_equal(ds.dars_extra_rollouts(acc, 8, 32, schedule="ET"),
                                [11, 24, 1, 0, 0])
  np.testing.assert_array_equal(ds.dars_extra_rollouts(acc, 8, 64, schedule="HW"),
                                [24, 56, 3, 0, 0])
  assert ds.dars_extra_rollouts(np.array([0.0]), 8, 1000, schedule="ET")[0] == 27


@pytest.mark.parametrize("schedule", ["ET", "HW"])
@pytest.mark.parametrize("use_std", [False, True])
def test_dars_matches_scalar_reference(schedule, use_std):
  n, n_max = 8, 64
  acc = np.arange(n + 1) / n
  expected = [_dars_reference(a, n, n_max, schedule, use_std) for a in acc]
  got = ds.dars_extra_rollouts(acc, n, n_max, schedule=schedule, use_std=use_std)
  np.testing.assert_array_equal(got, expected)
  assert got.dtype == np.int64


def test_dars_keep_and_pad():
  np.testing.assert_array_equal(ds.dars_keep_mask(np.array([0.0, 0.3, 1.0, 0.99])),
                                [False, True, False, True])
  np.testing.assert_array_equal(ds.dars_keep_mask(np.array([0.9]), upper=0.9), [False])
  padded, valid = ds.pad_groups([np.array([1.0, 0.0]), np.array([0.0, 0.0, 1.0])], 4, fill=-1)
  np.testing.assert_array_equal(padded, [[1, 0, -1, -1], [0, 0, 1, -1]])
  np.testing.assert_array_equal(valid, [[1, 1, 0, 0], [1, 1, 1, 0]])
  with pytest.raises(ValueError, match="> size"):
    ds.pad_groups([np.zeros(5)], 4)
  with pytest.raises(ValueError):
    ds.dars_extra_rollouts(np.array([0.1]), 8, 32, schedule="XX")


def test_dars_merge_appends_extra_rows_to_their_groups():
  stage1 = {"r": np.array([[1.0, 0.0], [0.0, 0.0]]), "tokens": np.arange(8).reshape(2, 2, 2)}
  # Two extra rows for group 1, one for group 0, interleaved.
  extra = {"r": np.array([5.0, 6.0, 7.0]), "tokens": np.array([[50, 51], [60, 61], [70, 71]])}
  out = ds.dars_merge(stage1, extra, np.array([1, 0, 1]), 5)
  np.testing.assert_array_equal(out["r"], [[1, 0, 6, 0, 0], [0, 0, 5, 7, 0]])
  np.testing.assert_array_equal(out["valid"], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
  np.testing.assert_array_equal(out["tokens"][1, 2:4], [[50, 51], [70, 71]])
  np.testing.assert_array_equal(out["tokens"][0, 3:], 0)
  with pytest.raises(ValueError, match="keys"):
    ds.dars_merge(stage1, {"r": extra["r"]}, np.array([1, 0, 1]), 5)
