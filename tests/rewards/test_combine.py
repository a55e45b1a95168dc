"""Reward combination: missing-value policies, gating, decoupled normalisation."""

import numpy as np
import pytest

from rlvr_jax.rewards import combine

NAN = np.nan
R = np.array([[1.0, 0.0, NAN, NAN],
              [0.5, NAN, 0.5, NAN]])
W = np.array([2.0, 1.0])


def test_weighted_sum_policies():
  total, valid = combine.weighted_sum(R, W, missing="zero")
  np.testing.assert_allclose(total[:3], [2.5, 0.0, 0.5])
  assert np.isnan(total[3])
  np.testing.assert_array_equal(valid, [True, True, True, False])
  total, _ = combine.weighted_sum(R, W, missing="renormalize")
  # Sample 1: only component 0 (w=2) present -> 0 * 3/2; sample 2: only w=1 -> 0.5 * 3.
  np.testing.assert_allclose(total[:3], [2.5, 0.0, 1.5])
  total, valid = combine.weighted_sum(R, W, missing="propagate")
  np.testing.assert_array_equal(valid, [True, False, False, False])
  assert total[0] == 2.5 and np.isnan(total[1:]).all()
  with pytest.raises(ValueError):
    combine.weighted_sum(R, W, missing="drop")
  with pytest.raises(ValueError):
    combine.weighted_sum(R, W[:1])


def test_gate_by_correctness():
  np.testing.assert_allclose(combine.gate_by_correctness([1, 0, 1], [0.5, 1.0, 0.0], lam=0.2),
                             [1.1, 0.0, 1.0])


def test_decoupled_group_normalize():
  r = np.array([[[1.0, 0.0, 1.0, 0.0]],
                [[10.0, 30.0, 20.0, 20.0]]])
  w = np.array([1.0, 0.5])
  z = lambda x: (x - x.mean()) / (x.std() + 1e-6)
  want = z(r[0, 0]) + 0.5 * z(r[1, 0])
  np.testing.assert_allclose(combine.decoupled_group_normalize(r, w)[0], want, rtol=1e-5)
  # A constant component contributes nothing; a missing value is excluded.
  r2 = np.array([[[1.0, 1.0, 1.0]], [[0.0, 2.0, NAN]]])
  got = np.asarray(combine.decoupled_group_normalize(r2, np.array([1.0, 1.0])))
  np.testing.assert_allclose(got[0], [-1 / (1 + 1e-6), 1 / (1 + 1e-6), 0.0], rtol=1e-5)
