"""Trust-GRPO against a hand computation of the formula."""

import math

import numpy as np
import pytest

from rlvr_jax.rewards import trust


def test_trust_grpo_reward_hand_computed():
  outcome = np.array([[1.0, 0.0, 1.0, 0.0],   # wrong answers think better: gamma < 1
                      [1.0, 0.0, 0.1, 1.0],   # right answers think better: gamma = 1
                      [1.0, 1.0, 1.0, 1.0],   # all correct: thinking reward off
                      [0.0, 0.0, 0.0, 0.0]])  # none correct: off (saturated)
  think = np.array([[0.2, 0.9, 0.4, 0.7],
                    [0.8, 0.3, 0.6, 0.6],
                    [0.5, 0.5, 0.5, 0.5],
                    [0.5, 0.5, 0.5, 0.5]])
  step, alpha, t_anneal = 100, 0.3, 500.0
  rewards, gamma = trust.trust_grpo_reward(outcome, think, step)
  anneal = math.exp(-step / t_anneal)
  # Row 0: the RM is not queried for o < 0.2, so wrong answers' t are 0: mu_c = 0.3, mu_w = 0.
  t0 = np.array([0.2, 0.0, 0.4, 0.0])
  np.testing.assert_allclose(rewards[0], outcome[0] + alpha * 1.0 * anneal * t0, rtol=1e-5)
  # Row 1: t = (0.8, 0, 0, 0.6); mu_c = 0.7, mu_w = 0.
  t1 = np.array([0.8, 0.0, 0.0, 0.6])
  np.testing.assert_allclose(rewards[1], outcome[1] + alpha * anneal * t1, rtol=1e-5)
  np.testing.assert_allclose(rewards[2:], outcome[2:])
  np.testing.assert_allclose(gamma, [1.0, 1.0, 1.0, 1.0])


def test_trust_weight_below_one_when_wrong_answers_think_better():
  outcome = np.array([[1.0, 0.3, 0.3, 1.0]])
  think = np.array([[0.2, 0.9, 0.7, 0.4]])
  # o = 0.3 >= 0.2 so the RM is queried; those are wrong (< 0.5): mu_c = 0.3, mu_w = 0.8.
  rewards, gamma = trust.trust_grpo_reward(outcome, think, 0, alpha=0.5)
  g = math.exp(0.3 - 0.8)
  assert float(gamma[0]) == pytest.approx(g, rel=1e-5)
  np.testing.assert_allclose(rewards[0], outcome[0] + 0.5 * g * think[0], rtol=1e-5)
  _, gamma2 = trust.trust_grpo_reward(outcome, think, 0, gamma_scale=2.0)
  assert float(gamma2[0]) == pytest.approx(math.exp(2 * (0.3 - 0.8)), rel=1e-5)
  with pytest.raises(ValueError):
    trust.trust_grpo_reward(outcome[0], think[0], 0)
