"""KL estimators, adaptive entropy and LaSeR terms against their formulas (spec §1.2, §2.13)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.objectives import binding, regularizers, reward_transforms

RNG = np.random.default_rng(1)
LP = RNG.normal(-1, 0.5, (3, 4)).astype(np.float32)
REF = (LP + RNG.normal(0, 0.4, (3, 4))).astype(np.float32)
BASES = ("k1", "k2", "k3", "abs")


def np_kl(lp, ref, base, log_ratio_clamp=20.0, value_clamp=10.0):
  """Schulman's estimators (joschu.net/blog/kl-approx.html), clamps as verl's ``kl_penalty``."""
  d = lp - ref
  if base == "k1":
    return d
  if base == "k2":
    return 0.5 * d ** 2
  if base == "abs":
    return np.abs(d)
  neg = np.clip(-d, -log_ratio_clamp, log_ratio_clamp)  # r = exp(ref − lp): r − log r − 1
  return np.clip(np.exp(neg) - neg - 1.0, -value_clamp, value_clamp)


def np_kl_grad(lp, ref, base):
  d = lp - ref
  return {"k1": np.ones_like(d), "k2": d, "abs": np.sign(d), "k3": 1.0 - np.exp(-d)}[base]


def kl_grad(estimator, lp, ref):
  return jax.jit(jax.grad(lambda y: jnp.sum(regularizers.kl_penalty(
      y, ref, estimator=estimator))))(jnp.asarray(lp))


def test_kl_estimators_match_schulman_formulas_and_plus_variants_keep_the_value():
  for base in BASES:
    for name in (base, base + "+"):
      np.testing.assert_allclose(regularizers.kl_penalty(LP, REF, estimator=name),
                                 np_kl(LP, REF, base), rtol=1e-5, atol=1e-6, err_msg=name)
  # k3 = r − log r − 1 with r = π_ref/π_θ (GRPO eq. 4).
  r = np.exp(REF - LP)
  np.testing.assert_allclose(regularizers.kl_penalty(LP, REF, estimator="k3"),
                             r - np.log(r) - 1, rtol=1e-5, atol=1e-6)


def test_kl_gradients_and_straight_through_variants():
  for base in BASES:
    np.testing.assert_allclose(kl_grad(base, LP, REF), np_kl_grad(LP, REF, base), rtol=1e-5,
                               atol=1e-6, err_msg=base)
    # ``+``: the value of ``base``, the gradient of k2 (verl ``kl_penalty``'s straight-through).
    np.testing.assert_allclose(kl_grad(base + "+", LP, REF), LP - REF, rtol=1e-5, atol=1e-6,
                               err_msg=base + "+")
  # Finite differences of k3 (float64).
  with jax.enable_x64(True):
    lp, ref = LP.astype(np.float64), REF.astype(np.float64)
    eps = 1e-6
    fd = (np_kl(lp + eps, ref, "k3") - np_kl(lp - eps, ref, "k3")) / (2 * eps)
    g = jax.grad(lambda y: jnp.sum(regularizers.kl_penalty(y, ref, estimator="k3")))(lp)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
  # The reference is a constant.
  g_ref = jax.grad(lambda r: jnp.sum(regularizers.kl_penalty(jnp.asarray(LP), r)))(
      jnp.asarray(REF))
  np.testing.assert_array_equal(g_ref, 0.0)


def test_abs_gradient_is_zero_at_exact_ties():
  """torch's ``abs`` backward (so verl's) is ``sign(d)``: 0 where ``lp == lr``, not jax's 1."""
  lp = jnp.array([[-1.0, -2.0, -0.5]])
  ref = jnp.array([[-1.0, -2.5, 0.0]])  # a tie, d > 0, d < 0
  for name in ("abs", "abs+"):
    np.testing.assert_array_equal(kl_grad(name, lp, ref), [[0.0, 1.0 if name == "abs" else 0.5,
                                                            -1.0 if name == "abs" else -0.5]])
  assert float(jax.grad(jnp.abs)(0.0)) == 1.0  # what a plain ``jnp.abs`` would have done


def test_verl_names_are_aliases():
  for verl, ours in regularizers.KL_ALIASES.items():
    np.testing.assert_array_equal(regularizers.kl_penalty(LP, REF, estimator=verl),
                                  regularizers.kl_penalty(LP, REF, estimator=ours))
    np.testing.assert_array_equal(kl_grad(verl, LP, REF), kl_grad(ours, LP, REF))


def test_k3_clamps_and_bad_estimator():
  lp, ref = jnp.array([[0.0, 0.0, 0.0]]), jnp.array([[1e4, -1e4, 0.5]])
  value = regularizers.kl_penalty(lp, ref)
  # exp(20) − 21 and exp(−20) + 19 both exceed the value clamp of 10.
  np.testing.assert_allclose(value, [[10.0, 10.0, np.exp(0.5) - 1.5]], rtol=1e-6)
  np.testing.assert_array_equal(kl_grad("k3", lp, ref)[0, :2], 0.0)  # clamped: no gradient
  np.testing.assert_allclose(regularizers.kl_penalty(lp, ref, value_clamp=1e30)[0, 1], 19.0,
                             rtol=1e-6)  # exp(−20) + 20 − 1: the log-ratio clamp alone
  for bad in ("k4", "full", "k3++"):
    with pytest.raises(ValueError):
      regularizers.kl_penalty(LP, REF, estimator=bad)
    with pytest.raises(ValueError):
      regularizers.kl_loss(0.1, estimator=bad)


def test_one_estimator_serves_kl_in_loss_and_kl_in_reward():
  """``kl_in_reward`` is ``−β·kl_penalty(old, ref)·m``: same estimators, same clamps."""
  old = np.concatenate([LP, [[-31.0, 0.0, -1.0, 5.0]]]).astype(np.float32)
  ref = np.concatenate([REF, [[-1.0, -25.0, -1.0, -20.0]]]).astype(np.float32)  # clamps bind
  mask = np.ones_like(old)
  mask[0, -1] = 0.0
  for name in regularizers.KL_ESTIMATORS:
    got = reward_transforms.kl_in_reward(old, ref, mask, beta=0.5, estimator=name)
    base = name.rstrip("+")
    np.testing.assert_allclose(got, np.where(mask > 0, -0.5 * np_kl(old, ref, base), 0.0),
                               rtol=1e-5, atol=1e-6, err_msg=name)
  got = reward_transforms.kl_in_reward(old, ref, mask, beta=1.0, estimator="k3",
                                       log_ratio_clamp=5.0, value_clamp=100.0)
  np.testing.assert_allclose(got, -np.where(mask > 0, np_kl(old, ref, "k3", 5.0, 100.0), 0.0),
                             rtol=1e-5, atol=1e-6)


def test_regularizer_terms_are_loss_stages_with_the_surrogate_convention():
  kl = regularizers.kl_loss(0.04, estimator="k2")
  assert kl.role == "regularizer" and kl.reads == {"logprobs", "ref_logprobs"}
  assert kl.options["coef"] == 0.04 and kl.options["aggregation"] is None
  term, diag = kl({"logprobs": jnp.asarray(LP), "ref_logprobs": jnp.asarray(REF)})
  np.testing.assert_allclose(term, 0.5 * (LP - REF) ** 2, rtol=1e-5)
  assert set(diag) == {"kl"}
  bonus = regularizers.entropy_bonus(0.01)
  assert bonus.reads == {"entropy"}
  term, diag = bonus({"entropy": jnp.ones((2, 3))})
  np.testing.assert_array_equal(term, -1.0)
  adaptive = regularizers.entropy_bonus()
  assert adaptive.reads == {"entropy", "entropy_coef"} and adaptive.options["coef"] == 1.0
  term, diag = adaptive({"entropy": jnp.ones((2, 3)), "entropy_coef": jnp.float32(0.3)})
  np.testing.assert_allclose(term, -0.3)
  assert float(diag["entropy_coef_max"]) == pytest.approx(0.3)
  laser = regularizers.laser_self_reward_loss(0.1)
  assert laser.reads == {"logprobs", "selfreward_position", "correct", "truncated",
                         "selfreward_weights"}
  assert "selfreward_weights" not in regularizers.laser_self_reward_loss(balanced=False).reads
  with pytest.raises(KeyError, match="ref_logprobs"):
    kl({"logprobs": jnp.asarray(LP)})
  assert isinstance(kl, binding.Stage)


def test_adaptive_entropy_coefficient():
  up = regularizers.adaptive_entropy_coefficient(0.01, 0.1, target=0.2, delta=0.005)
  down = regularizers.adaptive_entropy_coefficient(0.01, 0.3, target=0.2, delta=0.005)
  floor = regularizers.adaptive_entropy_coefficient(0.002, 0.3, target=0.2, delta=0.005,
                                                    coef_min=0.001)
  np.testing.assert_allclose([up, down, floor], [0.015, 0.005, 0.001], rtol=1e-6)


def test_laser_weights_and_mse():
  correct = np.array([1, 0, 0, 1, 0], np.float32)
  truncated = np.array([0, 0, 0, 0, 1], np.float32)
  w = regularizers.laser_class_weights(correct, truncated)
  # 4 non-truncated: 2 correct, 2 incorrect -> n/(2 n_c) = 1 each; truncated 0.
  np.testing.assert_allclose(w, [1, 1, 1, 1, 0])
  correct2 = np.array([1, 0, 0, 0, 0], np.float32)
  np.testing.assert_allclose(regularizers.laser_class_weights(correct2, truncated),
                             [2.0, 2 / 3, 2 / 3, 2 / 3, 0], rtol=1e-6)
  slp = np.array([-20.0, -25.0, -23.0, -13.0, -1.0], np.float32)
  mse = regularizers.laser_self_reward_mse(slp, correct, truncated, w, beta_v=0.1, c_ref=-23.0)
  r_s = 0.1 * (slp + 23.0)
  np.testing.assert_allclose(mse, w * (1 - truncated) * (r_s - correct) ** 2, rtol=1e-5)
  # A truncated response's z_c log-prob is not a real value: NaN there gives 0 and no NaN gradient.
  slp_nan = slp.copy()
  slp_nan[-1] = np.nan
  value, grad = jax.value_and_grad(lambda x: jnp.sum(regularizers.laser_self_reward_mse(
      x, correct, truncated, w)))(jnp.asarray(slp_nan))
  np.testing.assert_allclose(value, mse.sum(), rtol=1e-5)
  assert np.all(np.isfinite(grad)) and grad[-1] == 0.0
