"""SSL tiered rewards (EXPERIMENTAL reading): tiers, amplification, ordering, hostile inputs."""

import numpy as np
import pytest

from rlvr_jax.rewards import tiered


def test_amplified_values_and_boundaries_hand_computed():
  np.testing.assert_allclose(tiered.amplified_tier_values(4, 2.0), [0, 1 / 7, 3 / 7, 1],
                             rtol=1e-6)
  np.testing.assert_allclose(tiered.amplified_tier_values(3, 1.0), [0, 0.5, 1])
  v = tiered.amplified_tier_values(5, 3.0)
  assert np.all(np.diff(np.diff(v)) > 0)  # increments grow: progressively amplified
  np.testing.assert_allclose(tiered.quantile_boundaries(4), [0.25, 0.5, 0.75])
  with pytest.raises(ValueError):
    tiered.amplified_tier_values(1)
  with pytest.raises(ValueError):
    tiered.amplified_tier_values(4, 0.5)


def test_tiered_reward_against_numpy():
  b = tiered.quantile_boundaries(4)
  v = tiered.amplified_tier_values(4, 2.0)
  q = np.array([[0.0, 0.249, 0.25, 0.5], [0.74, 0.75, 1.0, 7.0]], np.float32)
  got = np.asarray(tiered.tiered_reward(q, b, v))
  want = v[np.searchsorted(b, q, side="right")]
  np.testing.assert_allclose(got, want)
  np.testing.assert_allclose(got[0], [0, 0, 1 / 7, 3 / 7], rtol=1e-6)


def test_order_preserved_and_zone_noise_filtered():
  rng = np.random.default_rng(0)
  q = np.sort(rng.random(200).astype(np.float32))
  r = np.asarray(tiered.tiered_reward(q, tiered.quantile_boundaries(4),
                                      tiered.amplified_tier_values(4)))
  assert np.all(np.diff(r) >= 0)
  # Two qualities inside one zone earn the same.
  same = np.asarray(tiered.tiered_reward(np.array([0.51, 0.74]), [0.25, 0.5, 0.75],
                                         [0, 0.2, 0.5, 1]))
  assert same[0] == same[1]


def test_checks_and_nan():
  with pytest.raises(ValueError):
    tiered.tiered_reward([0.5], [0.5, 0.5], [0, 1, 2])   # boundaries not increasing
  with pytest.raises(ValueError):
    tiered.tiered_reward([0.5], [0.5], [1.0, 0.0])       # values would invert the order
  with pytest.raises(ValueError):
    tiered.tiered_reward([0.5], [0.5], [0.0, 0.5, 1.0])  # K values need K-1 boundaries
  with pytest.raises(ValueError):
    tiered.tiered_reward([0.5], [np.nan], [0.0, 1.0])
  got = np.asarray(tiered.tiered_reward(np.array([np.nan, 0.9]), [0.5], [0.0, 1.0]))
  assert np.isnan(got[0]) and got[1] == 1.0
  with pytest.raises(ValueError):
    tiered.sweet_spot_reward([1.0], [0.5], [0.5], [0, 1], alpha=-1.0)


def test_gaussian_and_trajectory_proximity():
  d = np.array([0.0, 1.0, 2.0])
  np.testing.assert_allclose(tiered.gaussian_proximity(d, 2.0), np.exp(-d**2 / 8), rtol=1e-6)
  p = np.array([[0.2, 0.6, np.nan], [np.nan, np.nan, np.nan]])
  m = np.array([[True, True, False], [False, False, False]])
  np.testing.assert_allclose(tiered.trajectory_proximity(p, m), [0.4, 0.0], rtol=1e-6)
  with pytest.raises(ValueError):
    tiered.trajectory_proximity(np.zeros((2, 3)), np.zeros((2, 2), bool))


def test_sweet_spot_reward_success_outranks_partial_progress():
  b, v = tiered.quantile_boundaries(4), tiered.amplified_tier_values(4)
  outcome = np.array([1.0, 1.0, 0.0, 0.0])
  quality = np.array([0.0, 1.0, 0.99, 0.0])
  r = np.asarray(tiered.sweet_spot_reward(outcome, quality, b, v, alpha=0.5))
  np.testing.assert_allclose(r, [1.0, 1.5, 0.5, 0.0])
  # Hostile: a failed attempt with the best possible quality stays below the worst success.
  assert r[2] < r[0]
  np.testing.assert_allclose(tiered.sweet_spot_reward(outcome, quality, b, v, alpha=0.0),
                             outcome)
  assert np.isnan(np.asarray(tiered.sweet_spot_reward([np.nan], [0.5], b, v))[0])
