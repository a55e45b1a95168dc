"""Surrogates against independent numpy references written from the formulas (spec §1-2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
enable_x64 = lambda: jax.enable_x64(True)

from rlvr_jax.objectives import surrogates

RNG = np.random.default_rng(0)
B, T = 6, 5
LP = RNG.normal(-1.0, 0.5, (B, T)).astype(np.float32)
OLD = (LP + RNG.normal(0.0, 0.3, (B, T))).astype(np.float32)
ADV = np.repeat(RNG.normal(0, 1, (B, 1)), T, axis=1).astype(np.float32)
ADV[0] = 0.0
LENGTHS = np.array([5, 3, 0, 4, 1, 5])
MASK = (np.arange(T)[None] < LENGTHS[:, None]).astype(np.float32)
CORRECT = np.array([1, 0, 0, 1, 1, 0], np.float32)
GROUPS = np.array([7, 7, 7, 3, 3, 3], np.int32)


def np_ppo(lp, old, adv, el, eh, c=None):
  ratio = np.exp(lp - old)
  loss = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - el, 1 + eh))
  if c is not None:
    loss = np.where(adv < 0, np.minimum(loss, -adv * c), loss)
  return loss


@pytest.mark.parametrize("el,eh,c", [(0.2, 0.2, None), (0.2, 0.28, None), (0.2, 0.28, 3.0)])
def test_ppo_clip_matches_numpy(el, eh, c):
  old = OLD.copy()
  old[1, 0] = LP[1, 0] - 2.0  # ratio e^2 > 3: the dual-clip bound binds for negative A
  adv = ADV.copy()
  adv[1] = -1.0
  loss, diag = surrogates.ppo_clip(jnp.asarray(LP), jnp.asarray(old), jnp.asarray(adv),
                                   epsilon_low=el, epsilon_high=eh, dual_clip=c)
  np.testing.assert_allclose(loss, np_ppo(LP, old, adv, el, eh, c), rtol=1e-6, atol=1e-6)
  ratio = np.exp(LP - old)
  np.testing.assert_array_equal(diag["clip_ratio/low_mean"], (ratio < 1 - el) & (adv < 0))
  np.testing.assert_array_equal(diag["clip_ratio/high_mean"], (ratio > 1 + eh) & (adv > 0))
  if c is not None:
    assert diag["clip_ratio/dual_mean"][1, 0] == 1.0


def _grad(fn, lp):
  return jax.jit(jax.grad(lambda x: jnp.sum(fn(x)[0] * MASK)))(jnp.asarray(lp))


def test_on_policy_gradients_equal_reinforce():
  """spec §3.3.6: with lp == old, ratio surrogates have the REINFORCE gradient −A ∇lp."""
  lp = jnp.asarray(LP)
  expected = -ADV * MASK
  for fn in (
      lambda x: surrogates.ppo_clip(x, LP, ADV, epsilon_high=0.28, dual_clip=3.0),
      lambda x: surrogates.sapo(x, LP, ADV),
      lambda x: surrogates.cispo(x, LP, ADV),
      lambda x: surrogates.dispo(x, LP, ADV, CORRECT),
      lambda x: surrogates.reinforce(x, ADV),
  ):
    np.testing.assert_allclose(_grad(fn, lp), expected, rtol=1e-6, atol=1e-6)


def test_gradient_zero_outside_trust_region_and_constants_get_no_gradient():
  old = LP - 1.0  # ratio e > 1.28 everywhere
  adv = np.abs(ADV) + 0.5
  g = _grad(lambda x: surrogates.ppo_clip(x, old, adv, epsilon_high=0.28), LP)
  np.testing.assert_array_equal(g, 0.0)
  # CISPO keeps a gradient at the capped weight 1 + 0.28: −1.28·A.
  g = _grad(lambda x: surrogates.cispo(x, old, adv, is_upper=1.28), LP)
  np.testing.assert_allclose(g, -1.28 * adv * MASK, rtol=1e-6)
  for fn in (surrogates.ppo_clip, surrogates.cispo, surrogates.sapo):
    g_old = jax.grad(lambda o: jnp.sum(fn(jnp.asarray(LP), o, jnp.asarray(ADV))[0]))(
        jnp.asarray(OLD))
    g_adv = jax.grad(lambda a: jnp.sum(fn(jnp.asarray(LP), jnp.asarray(OLD), a)[0]))(
        jnp.asarray(ADV))
    np.testing.assert_array_equal(g_old, 0.0)
    np.testing.assert_array_equal(g_adv, 0.0)


def test_cispo_and_dispo_weights():
  ratio = np.exp(LP - OLD)
  loss, _ = surrogates.cispo(LP, OLD, ADV, is_lower=0.9, is_upper=1.2)
  np.testing.assert_allclose(loss, -np.clip(ratio, 0.9, 1.2) * ADV * LP, rtol=1e-5)
  # Defaults: no lower bound, absolute cap 5 (TRL ``epsilon_high=5.0``).
  loss, diag = surrogates.cispo(LP, OLD - 2.0, ADV)
  np.testing.assert_allclose(loss, -np.minimum(ratio * np.exp(2.0), 5.0) * ADV * LP, rtol=1e-5)
  np.testing.assert_array_equal(diag["clip_ratio/low_mean"], 0.0)
  with pytest.raises(ValueError):
    surrogates.cispo(LP, OLD, ADV, is_lower=2.0, is_upper=1.5)
  loss, _ = surrogates.cispo(LP, OLD, ADV, is_lower=0.9, is_upper=1.2,
                             out_of_range="mask_directional")
  drop = ((ADV > 0) & (ratio > 1.2)) | ((ADV < 0) & (ratio < 0.9))
  np.testing.assert_allclose(loss, np.where(drop, 0, -np.clip(ratio, 0.9, 1.2) * ADV * LP),
                             rtol=1e-5, atol=1e-7)
  bounds = {1: (0.95, 1.5), 0: (0.7, 1.05)}
  lo = np.array([bounds[int(c)][0] for c in CORRECT])[:, None]
  hi = np.array([bounds[int(c)][1] for c in CORRECT])[:, None]
  inside = (ratio >= lo) & (ratio <= hi)
  loss, _ = surrogates.dispo(LP, OLD, ADV, CORRECT, epsilon_low_correct=0.05,
                             epsilon_high_correct=0.5, epsilon_low_incorrect=0.3,
                             epsilon_high_incorrect=0.05)
  np.testing.assert_allclose(loss, np.where(inside, -ratio * ADV * LP, 0.0), rtol=1e-5,
                             atol=1e-7)


def test_sapo_matches_formula_and_gradient():
  ratio = np.exp(LP - OLD)
  tau = np.where(ADV > 0, 1.0, 1.05)
  gate = 1 / (1 + np.exp(-tau * (ratio - 1))) * 4 / tau
  loss, _ = surrogates.sapo(LP, OLD, ADV)
  np.testing.assert_allclose(loss, -gate * ADV, rtol=1e-5, atol=1e-7)
  # d/dlp [−σ(τ(ρ−1))4/τ·A] = −4σ(1−σ)·ρ·A
  s = 1 / (1 + np.exp(-tau * (ratio - 1)))
  g = jax.grad(lambda x: jnp.sum(surrogates.sapo(x, OLD, ADV)[0]))(jnp.asarray(LP))
  np.testing.assert_allclose(g, -4 * s * (1 - s) * ratio * ADV, rtol=1e-5, atol=1e-6)


def np_gspo_seq_loss(lp, old, adv_seq, mask, el, eh):
  """Sequence-level GSPO (arXiv 2507.18071 eq. 5-7), one term per sequence."""
  lengths = np.maximum(mask.sum(-1), 1)
  s = np.exp(((lp - old) * mask).sum(-1) / lengths)
  return np.maximum(-adv_seq * s, -adv_seq * np.clip(s, 1 - el, 1 + eh))


def test_gspo_token_form_equals_sequence_gspo_in_value_and_gradient():
  with enable_x64():
    lp = LP.astype(np.float64)
    old = (LP + RNG.normal(0, 1e-4, LP.shape)).astype(np.float64)
    adv_seq = ADV[:, 0].astype(np.float64)
    adv = np.repeat(adv_seq[:, None], T, 1)
    nonempty = MASK.sum(-1) > 0

    def seq_mean(x):
      loss, _ = surrogates.gspo(x, old, adv, MASK.astype(np.float64))
      per_seq = jnp.sum(loss * MASK, -1) / jnp.maximum(MASK.sum(-1), 1)
      return jnp.sum(per_seq)

    ref = np_gspo_seq_loss(lp, old, adv_seq, MASK, 3e-4, 4e-4)[nonempty].sum()
    np.testing.assert_allclose(seq_mean(jnp.asarray(lp)), ref, rtol=1e-10)
    g = jax.jit(jax.grad(seq_mean))(jnp.asarray(lp))
    eps = 1e-6
    for b, t in [(0, 0), (1, 2), (3, 3), (5, 4)]:
      up, down = lp.copy(), lp.copy()
      up[b, t] += eps
      down[b, t] -= eps
      fd = (np_gspo_seq_loss(up, old, adv_seq, MASK, 3e-4, 4e-4)[nonempty].sum()
            - np_gspo_seq_loss(down, old, adv_seq, MASK, 3e-4, 4e-4)[nonempty].sum()) / (2 * eps)
      np.testing.assert_allclose(g[b, t], fd, rtol=1e-5, atol=1e-8)


def np_gmpo(lp, old, adv_seq, mask, el, eh):
  out = []
  for i in range(lp.shape[0]):
    m = mask[i] > 0
    d = (lp[i] - old[i])[m]
    a = adv_seq[i]
    if not m.any():
      out.append(-a)
      continue
    if a >= 0:  # maximise A·Π min(ρ, clip ρ)^(1/T)
      term = np.minimum(d, np.clip(d, -el, eh))
    else:  # A<0: A·Π max(ρ, clip ρ)^(1/T)
      term = np.maximum(d, np.clip(d, -el, eh))
    out.append(-a * np.exp(term.mean()))
  return np.array(out)


def test_gmpo_matches_numpy_and_finite_differences():
  with enable_x64():
    lp = LP.astype(np.float64)
    old = (LP + RNG.normal(0, 0.3, LP.shape)).astype(np.float64)
    adv = ADV.astype(np.float64)
    mask = MASK.astype(np.float64)
    loss, _ = surrogates.gmpo(lp, old, adv, mask, log_clip_low=0.2, log_clip_high=0.3)
    ref = np_gmpo(lp, old, adv[:, 0], mask, 0.2, 0.3)
    nonempty = mask.sum(-1) > 0
    np.testing.assert_allclose(np.asarray(loss)[nonempty], ref[nonempty], rtol=1e-10)
    g = jax.jit(jax.grad(lambda x: jnp.sum(surrogates.gmpo(
        x, old, adv, mask, log_clip_low=0.2, log_clip_high=0.3)[0])))(jnp.asarray(lp))
    eps = 1e-6
    for b, t in [(1, 0), (3, 1), (5, 4)]:
      up, down = lp.copy(), lp.copy()
      up[b, t] += eps
      down[b, t] -= eps
      fd = (np_gmpo(up, old, adv[:, 0], mask, 0.2, 0.3).sum()
            - np_gmpo(down, old, adv[:, 0], mask, 0.2, 0.3).sum()) / (2 * eps)
      np.testing.assert_allclose(g[b, t], fd, rtol=1e-5, atol=1e-8)


def np_real(lp, old, mask, correct, groups, tau):
  """Official REAL: per group log(1+Σ_pos e^{−s/τ}) + log(1+Σ_neg e^{s/τ}); skip one-class groups."""
  score = ((lp - old) * mask).sum(-1) / np.maximum(mask.sum(-1), 1)
  nonempty = mask.sum(-1) > 0
  total = 0.0
  for g in np.unique(groups):
    sel = groups == g
    pos = sel & nonempty & (correct == 1)
    neg = sel & nonempty & (correct == 0)
    if pos.any() and neg.any():
      total += np.log1p(np.exp(-score[pos] / tau).sum()) + np.log1p(np.exp(score[neg] / tau).sum())
  return total


def np_pacs(lp, old, mask, correct, groups, beta):
  r = beta * ((lp - old) * mask).sum(-1)
  out = np.zeros(len(r))
  for g in np.unique(groups):
    idx = np.where(groups == g)[0]
    n = len(idx)
    for i in idx:
      psi = r[i] - (r[idx].sum() - r[i]) / (n - 1)
      y = correct[i]
      bce = -(y * np.log(1 / (1 + np.exp(-psi))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-psi))))
      n_cls = (correct[idx] == y).sum()
      w = n / (2 * n_cls) if 0 < correct[idx].sum() < n else 1.0
      out[i] = w * bce
  return out


@pytest.mark.parametrize("which", ["real", "pacs"])
def test_group_classification_losses_value_and_gradient(which):
  with enable_x64():
    lp = LP.astype(np.float64)
    old = (LP + RNG.normal(0, 0.3, LP.shape)).astype(np.float64)
    mask = MASK.astype(np.float64)
    correct = CORRECT.astype(np.float64)
    if which == "real":
      fn = lambda x: jnp.sum(surrogates.real(x, old, mask, correct, GROUPS, tau=0.5)[0])
      ref = lambda x: np_real(x, old, mask, correct, GROUPS, 0.5)
    else:
      fn = lambda x: jnp.sum(surrogates.pacs(x, old, mask, correct, GROUPS, beta=2.0)[0])
      ref = lambda x: np_pacs(x, old, mask, correct, GROUPS, 2.0).sum()
    value, g = jax.jit(jax.value_and_grad(fn))(jnp.asarray(lp))
    np.testing.assert_allclose(value, ref(lp), rtol=1e-10)
    eps = 1e-6
    for b, t in [(0, 0), (1, 2), (3, 3), (4, 0), (5, 4), (2, 1)]:
      up, down = lp.copy(), lp.copy()
      up[b, t] += eps
      down[b, t] -= eps
      np.testing.assert_allclose(g[b, t], (ref(up) - ref(down)) / (2 * eps), rtol=1e-5,
                                 atol=1e-8)


def test_real_skips_one_class_groups_and_places_loss_once_per_group():
  correct = np.array([1, 1, 1, 0, 1, 0], np.float32)  # group 7 all correct: skipped
  loss, diag = jax.jit(surrogates.real)(LP, OLD, MASK, correct, GROUPS)
  loss = np.asarray(loss)
  np.testing.assert_array_equal(loss[:3], 0.0)
  assert loss[3] > 0 and loss[4] == 0 and loss[5] == 0
  np.testing.assert_array_equal(diag["real/valid_group_mean"], [0, 0, 0, 1, 1, 1])


def test_pacs_single_class_group_has_weight_one():
  correct = np.array([1, 1, 1, 0, 1, 0], np.float32)
  lp, old = LP.astype(np.float64), OLD.astype(np.float64)
  loss, _ = jax.jit(surrogates.pacs)(LP, OLD, MASK, correct, GROUPS)
  np.testing.assert_allclose(loss, np_pacs(lp, old, MASK, correct, GROUPS, 1.0), rtol=1e-5)


def test_kl_cov_penalises_top_covariance_tokens():
  loss, diag = jax.jit(lambda *a: surrogates.kl_cov(*a, kl_cov_ratio=0.1, coef=1.0))(
      LP, OLD, ADV, MASK)
  cov = np.where(MASK > 0, (ADV - ADV[MASK > 0].mean()) * (LP - LP[MASK > 0].mean()), -np.inf)
  k = max(int(0.1 * MASK.sum()), 1)
  top = cov >= np.sort(cov.ravel())[::-1][k - 1]
  ratio = np.exp(LP - OLD)
  ref = -ADV * ratio + np.where(top, np.abs(LP - OLD), 0.0)
  np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-6)
  assert diag["kl_cov/selected_mean"].sum() == k


def test_extreme_log_ratios_are_finite():
  def cases(x, old):
    return {
        "ppo": surrogates.ppo_clip(x, old, ADV, dual_clip=3.0),
        "gspo": surrogates.gspo(x, old, ADV, MASK),
        "cispo": surrogates.cispo(x, old, ADV),
        "sapo": surrogates.sapo(x, old, ADV),
        "gmpo": surrogates.gmpo(x, old, ADV, MASK),
        "real": surrogates.real(x, old, MASK, CORRECT, GROUPS),
        "pacs": surrogates.pacs(x, old, MASK, CORRECT, GROUPS),
        "kl_cov": surrogates.kl_cov(x, old, ADV, MASK),
    }

  @jax.jit
  def values_and_grads(x, old):
    out = {}
    for name in cases(x, old):
      out[name] = jax.value_and_grad(lambda y, n=name: jnp.sum(cases(y, old)[n][0]))(x)
    return out

  for scale in (1e4, -1e4):
    for name, (value, grad) in values_and_grads(jnp.asarray(LP), jnp.asarray(LP - scale)).items():
      assert np.isfinite(value), (name, scale)
      assert np.all(np.isfinite(grad)), (name, scale)


def test_shape_checks():
  with pytest.raises(ValueError):
    surrogates.ppo_clip(LP, OLD[:, :3], ADV)
  with pytest.raises(ValueError):
    surrogates.real(LP, OLD, MASK, CORRECT[:3], GROUPS)
  with pytest.raises(ValueError):
    surrogates.ppo_clip(LP, OLD, ADV, dual_clip=0.5)


def test_single_sample_groups():
  """G = 1: PACS has no leave-one-out baseline (ψ = r̂) and weight 1; REAL has no pair: loss 0."""
  groups = np.arange(B, dtype=np.int32)
  loss, diag = jax.jit(surrogates.pacs)(LP, OLD, MASK, CORRECT, groups)
  psi = ((LP - OLD) * MASK).sum(-1)
  bce = np.log1p(np.exp(psi)) - CORRECT * psi
  np.testing.assert_allclose(loss, bce, rtol=1e-5, atol=1e-6)
  loss, _ = jax.jit(surrogates.real)(LP, OLD, MASK, CORRECT, groups)
  np.testing.assert_array_equal(loss, 0.0)
