"""Token weighting against numpy/torch references of the peer formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from rlvr_jax.objectives import weighting

RNG = np.random.default_rng(2)
B, T = 4, 6
LENGTHS = np.array([6, 2, 0, 4])
MASK = (np.arange(T)[None] < LENGTHS[:, None]).astype(np.float32)
OLD = RNG.normal(-1, 0.5, (B, T)).astype(np.float32)
ROLL = (OLD + RNG.normal(0, 0.5, (B, T))).astype(np.float32)
ENT = RNG.uniform(0, 3, (B, T)).astype(np.float32)


def test_high_entropy_mask_matches_trl_torch_quantile():
  # TRL get_high_entropy_mask: threshold = torch.quantile(non-pad entropies, 1 - q); keep H >= it.
  valid = torch.tensor(ENT[MASK > 0])
  threshold = torch.quantile(valid, 1 - 0.2).item()
  keep, diag = weighting.high_entropy_mask(ENT, MASK, top_quantile=0.2)
  np.testing.assert_array_equal(keep, (ENT >= threshold).astype(np.float32))
  np.testing.assert_allclose(weighting.entropy_quantile_threshold(ENT, MASK, top_quantile=0.2),
                             threshold, rtol=1e-6)
  keep, _ = weighting.high_entropy_mask(ENT, MASK, threshold=jnp.float32(1.0))
  np.testing.assert_array_equal(keep, ENT >= 1.0)
  assert "entropy/kept_mean" in diag


def np_is(old, roll, mask, level, mode, lo, hi):
  d = (old - roll) * mask
  if level == "token":
    r = np.exp(d)
    dec = r
  elif level == "sequence":
    r = np.repeat(np.exp(d.sum(-1, keepdims=True)), T, 1)
    dec = r
  else:
    g = np.exp(d.sum(-1) / np.maximum(mask.sum(-1), 1))
    dec = np.repeat(g[:, None], T, 1)
    r = np.exp(d)
  lo_ = -np.inf if lo is None else lo
  if mode == "truncate":
    return np.clip(r, lo_, hi)
  return np.where((dec >= lo_) & (dec <= hi), r, 0.0)


@pytest.mark.parametrize("level,mode,lo,hi", [
    ("token", "truncate", None, 2.0),       # verl rollout_is=token, TRL token_truncate
    ("token", "mask", 0.5, 2.0),            # IcePop / TRL token_mask / OpenRLHF icepop
    ("sequence", "truncate", None, 3.0),    # TRL sequence_truncate (product ratio)
    ("sequence", "mask", 0.0, 3.0),         # TRL sequence_mask
    ("geometric", "mask", 0.8, 1.25),       # OpenRLHF seq-mask-tis
])
def test_rollout_importance_weights(level, mode, lo, hi):
  w, diag = weighting.rollout_importance_weights(OLD, ROLL, MASK, level=level, mode=mode,
                                                 lower=lo, upper=hi)
  np.testing.assert_allclose(np.asarray(w) * MASK, np_is(OLD, ROLL, MASK, level, mode, lo, hi)
                             * MASK, rtol=1e-5, atol=1e-7)
  assert set(diag) >= {"sampling/importance_sampling_ratio/min",
                       "sampling/importance_sampling_ratio/max",
                       "sampling/sampling_logp_difference/mean"}
  g = jax.grad(lambda o: jnp.sum(weighting.rollout_importance_weights(
      o, ROLL, MASK, level=level, mode=mode, lower=lo, upper=hi)[0]))(jnp.asarray(OLD))
  np.testing.assert_array_equal(g, 0.0)


def test_geometric_needs_mask_mode():
  with pytest.raises(ValueError):
    weighting.rollout_importance_weights(OLD, ROLL, MASK, level="geometric", mode="truncate")


def test_thr_reweight():
  thr = np.array([[0.5, -0.5, 0.01, -0.01, 0.0, 2.0]], np.float32)
  mask = np.ones_like(thr)
  w, _ = weighting.thr_reweight(thr, mask, p=0.5, tau=0.1)
  np.testing.assert_allclose(w, [[1.5, 0.5, 1, 1, 1, 1.5]])
  w, _ = weighting.thr_reweight(thr, mask, p=-0.5, tau=0.1, drop_non_dominant=True)
  np.testing.assert_allclose(w, [[0.5, 1.5, 0, 0, 0, 0.5]])


def test_token_hidden_reward_matches_loops():
  g_size, d, v = 2, 3, 4
  hidden = RNG.normal(size=(B, T, d)).astype(np.float32)
  err = RNG.normal(size=(B, T, v)).astype(np.float32)
  correct = np.array([1, 0, 0, 1], np.float32)
  out = weighting.token_hidden_reward(hidden, err, MASK, correct, group_size=g_size)
  ref = np.zeros((B, T))
  for p in range(B // g_size):
    rows = range(p * g_size, (p + 1) * g_size)
    m_plus = sum(np.outer(err[i, k], hidden[i, k]) for i in rows if correct[i]
                 for k in range(T) if MASK[i, k])
    for j in rows:
      for t in range(T):
        if MASK[j, t] and not np.isscalar(m_plus):
          ref[j, t] = err[j, t] @ m_plus @ hidden[j, t]
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_clip_cov_detaches_exactly_k_candidates():
  adv = np.repeat(RNG.normal(0, 2, (B, 1)), T, 1).astype(np.float32)
  w, diag = weighting.clip_cov_weights(adv, OLD, MASK, jax.random.PRNGKey(0),
                                       clip_cov_ratio=0.2, lower=-100.0, upper=100.0)
  k = int(0.2 * MASK.sum())
  assert int((np.asarray(w) == 0).sum()) == k
  assert np.all(np.asarray(w)[MASK == 0] == 1)
  assert float(np.asarray(diag["clip_cov/detached_mean"]).sum()) == k
