"""Likelihood rewards (VeriFree, RLPR, log-prob) and SAR against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.rewards import likelihood as lk

# [P=1, G=3, L=3]: sample 0 has 3 answer tokens, sample 1 has 2, sample 2 is invalid.
LOGP = np.log(np.array([[[0.5, 0.8, 0.9], [0.25, 0.5, 0.123], [0.9, 0.9, 0.9]]], np.float32))
MASK = np.array([[[1, 1, 1], [1, 1, 0], [1, 1, 1]]], np.float32)
VALID = np.array([[True, True, False]])


def test_answer_logprob_stats_reference():
  st = lk.answer_logprob_stats(LOGP, MASK, VALID)
  np.testing.assert_allclose(st["prob"], [[0.5 * 0.8 * 0.9, 0.25 * 0.5, 0.0]], rtol=1e-5)
  np.testing.assert_allclose(st["mean_prob"], [[(0.5 + 0.8 + 0.9) / 3, 0.375, 0.0]], rtol=1e-5)
  np.testing.assert_allclose(st["sum_logp"][0, :2], np.log([0.36, 0.125]), rtol=1e-5)
  assert np.isneginf(st["sum_logp"][0, 2]) and np.isneginf(st["mean_logp"][0, 2])
  np.testing.assert_allclose(lk.verifree_reward(LOGP, MASK, VALID), st["prob"])


def test_verifree_gradient_is_finite_for_invalid_samples():
  grad = jax.grad(lambda lp: lk.verifree_reward(lp, MASK, VALID).sum())(jnp.asarray(LOGP))
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad[0, 2], 0.0)
  # d exp(sum) / d logp_i = exp(sum) on answer tokens.
  np.testing.assert_allclose(grad[0, 0], [0.36] * 3, rtol=1e-5)
  np.testing.assert_allclose(grad[0, 1], [0.125, 0.125, 0.0], rtol=1e-5)


def test_logprob_reward_invalid_policy():
  got = np.asarray(lk.logprob_reward(LOGP, MASK, VALID))
  s = np.log([0.36, 0.125])
  np.testing.assert_allclose(got[0], [s[0], s[1], s[1]], rtol=1e-5)  # group minimum
  got = np.asarray(lk.logprob_reward(LOGP, MASK, VALID, invalid_reward=-50.0))
  assert got[0, 2] == -50.0
  all_bad = np.asarray(lk.logprob_reward(LOGP, MASK, np.zeros((1, 3), bool)))
  np.testing.assert_allclose(all_bad, 0.0)


def test_rlpr_reward_and_std_filter():
  r = np.array([[0.6, 0.3, 0.9]])
  np.testing.assert_allclose(lk.rlpr_reward(r, 0.4), [[0.2, 0.0, 0.5]], rtol=1e-6)
  np.testing.assert_allclose(lk.rlpr_reward(r, 0.4, fmt=np.array([[1, 0, 1]]), alpha=0.1),
                             [[0.9 * 0.2 + 0.1, 0.0, 0.9 * 0.5 + 0.1]], rtol=1e-6)
  rewards = np.array([[0.1, 0.9, 0.5], [0.5, 0.5, 0.5]])
  keep, mean_std = lk.std_filter_mask(rewards, 0.2)
  np.testing.assert_array_equal(keep, [True, False])
  assert float(mean_std) == pytest.approx(np.std(rewards, axis=1).mean(), rel=1e-6)
  assert float(lk.update_std_threshold(0.5, 0.1, momentum=0.99)) == pytest.approx(0.496)


def test_sar_reward_reference():
  cond = np.log(np.array([[0.5, 0.5, 0.1], [0.2, 0.2, 0.2], [0.9, 0.9, 0.9]], np.float32))
  uncond = np.log(np.array([[0.25, 0.25, 0.1], [0.4, 0.4, 0.4], [0.9, 0.9, 0.9]], np.float32))
  mask = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], np.float32)
  got = np.asarray(lk.sar_reward(cond, uncond, mask))
  ppl = lambda lp, m: np.exp(-(lp * m).sum(-1) / m.sum(-1))
  # Row 0: ppl(a|q) = 2, ppl(a) = 4 -> 0.5. Row 1: ppl(a|q) = 5, ppl(a) = 2.5 -> -1 (clipped).
  want0 = (ppl(uncond[0], mask[0]) - ppl(cond[0], mask[0])) / ppl(uncond[0], mask[0])
  np.testing.assert_allclose(got, [want0, -1.0, 0.0], rtol=1e-5)
  assert want0 == pytest.approx(0.5, rel=1e-5)
  assert np.all(got < 1.0)


def test_string_helpers():
  assert lk.split_at_delimiter("think... <answer> 3 </answer>") == "think... <answer"
  assert lk.split_at_delimiter("no delimiter") is None
  assert lk.verifree_answer_suffix("42") == "> \\boxed{42} </answer>"
