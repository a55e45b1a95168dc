"""PPR ReNorm (EXPERIMENTAL reading): step rewards, per-sequence form, hostile process scores."""

import numpy as np
import pytest

from rlvr_jax.rewards import process


def test_hand_computed():
  p = np.array([[0.9, 0.2, 0.0], [0.9, 0.2, 0.5]])
  o = np.array([1.0, 0.0])
  m = np.array([[True, True, False], [True, True, True]])
  got = np.asarray(process.renorm_step_rewards(p, o, m))
  np.testing.assert_allclose(got, [[0.9, 0.2, 0.0], [-0.1, -0.8, -0.5]], rtol=1e-6, atol=1e-7)
  seq = np.asarray(process.renorm_sequence_reward(p, o, m))
  np.testing.assert_allclose(seq, [0.55, -1.4 / 3], rtol=1e-6)


def test_against_numpy_reference():
  rng = np.random.default_rng(0)
  p = rng.random((6, 5)).astype(np.float32)
  o = (rng.random(6) < 0.5).astype(np.float32)
  m = rng.random((6, 5)) < 0.7
  want = np.where(m, p + o[:, None] - 1.0, 0.0)
  np.testing.assert_allclose(process.renorm_step_rewards(p, o, m), want, rtol=1e-6, atol=1e-7)


def test_zero_steps_nan_and_shapes():
  empty = np.zeros((2, 0))
  assert process.renorm_step_rewards(empty, np.ones(2), empty.astype(bool)).shape == (2, 0)
  np.testing.assert_allclose(
      process.renorm_sequence_reward(empty, np.array([1.0, 0.0]), empty.astype(bool)), [0, -1])
  got = np.asarray(process.renorm_step_rewards(np.array([[np.nan, np.nan]]), np.array([1.0]),
                                               np.array([[True, False]])))
  assert np.isnan(got[0, 0]) and got[0, 1] == 0.0
  with pytest.raises(ValueError):
    process.renorm_step_rewards(np.zeros((2, 3)), np.zeros(3), np.ones((2, 3), bool))


def test_hacked_process_scores_cannot_beat_the_outcome():
  m = np.ones((2, 4), bool)
  # A failed trajectory whose process model was gamed into perfect (or out-of-range) scores
  # against a successful trajectory with poor step scores.
  hacked = np.array([[1.0, 1.0, 5.0, 1.0], [0.0, 0.1, -3.0, 0.0]])
  r = np.asarray(process.renorm_step_rewards(hacked, np.array([0.0, 1.0]), m))
  assert r[0].max() <= 0.0 <= r[1].min()
  seq = np.asarray(process.renorm_sequence_reward(hacked, np.array([0.0, 1.0]), m))
  assert seq[0] <= seq[1]
