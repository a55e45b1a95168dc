"""KL estimators, adaptive entropy and LaSeR terms against their formulas (spec §1.2, §2.13)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.objectives import regularizers

RNG = np.random.default_rng(1)
LP = RNG.normal(-1, 0.5, (3, 4)).astype(np.float32)
REF = (LP + RNG.normal(0, 0.4, (3, 4))).astype(np.float32)


def test_kl_estimators_match_schulman_formulas():
  d = LP - REF
  r = np.exp(REF - LP)
  expected = {"k1": d, "abs": np.abs(d), "k2": 0.5 * d ** 2, "k3": r - 1 - np.log(r),
              "k3+": r - 1 - np.log(r)}
  for name, ref in expected.items():
    np.testing.assert_allclose(regularizers.kl_penalty(LP, REF, estimator=name), ref, rtol=1e-5,
                               atol=1e-6, err_msg=name)


def test_kl_gradients():
  grads = jax.jit(lambda x: {
      e: jax.grad(lambda y: jnp.sum(regularizers.kl_penalty(y, REF, estimator=e)))(x)
      for e in ("k1", "k2", "k3", "k3+")})(jnp.asarray(LP))
  d = LP - REF
  np.testing.assert_allclose(grads["k1"], 1.0)
  np.testing.assert_allclose(grads["k2"], d, rtol=1e-5)
  np.testing.assert_allclose(grads["k3"], 1 - np.exp(REF - LP), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(grads["k3+"], d, rtol=1e-5)  # straight-through: k2's gradient
  g_ref = jax.grad(lambda r: jnp.sum(regularizers.kl_penalty(jnp.asarray(LP), r)))(
      jnp.asarray(REF))
  np.testing.assert_array_equal(g_ref, 0.0)


def test_k3_clamps_and_bad_estimator():
  value = regularizers.kl_penalty(jnp.array([[0.0, 0.0]]), jnp.array([[1e4, -1e4]]))
  # exp(20) - 21 and exp(-20) + 19 both exceed the value clamp of 10.
  np.testing.assert_allclose(value, [[10.0, 10.0]])
  assert np.all(np.isfinite(value))
  with pytest.raises(ValueError):
    regularizers.kl_penalty(LP, REF, estimator="k4")


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
