"""Tests for rlvr_jax.objectives.reward_transforms, written from the formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.objectives import reward_transforms as rt


def test_binary_remaps():
  c = jnp.array([1.0, 0.0, 1.0])
  np.testing.assert_allclose(rt.remap_binary(c, pos=2.0, neg=-3.0), [2.0, -3.0, 2.0])
  np.testing.assert_allclose(rt.psr(c), [1.0, 0.0, 1.0])
  np.testing.assert_allclose(rt.nsr(c), [0.0, -1.0, 0.0])
  np.testing.assert_allclose(rt.w_reinforce(c), [0.1, -1.0, 0.1], rtol=1e-6)
  np.testing.assert_allclose(rt.w_reinforce(jnp.array([[1, 0]]), lam=0.5), [[0.5, -1.0]])


def test_overlong_soft_penalty_dapo_eq13():
  # The spec's vector: L_max=20480, L_cache=4096, |y|=18432 -> -0.5.
  got = rt.overlong_soft_penalty(jnp.array([16384, 18432, 20480, 20481, 100]), max_length=20480,
                                 cache_length=4096)
  np.testing.assert_allclose(got, [0.0, -0.5, -1.0, -1.0, 0.0])
  # TRL's docstring example: max 100, cache 20, length 90 -> -0.5; factor scales.
  np.testing.assert_allclose(
      rt.overlong_soft_penalty(jnp.array([90]), max_length=100, cache_length=20, factor=2.0),
      [-1.0])
  np.testing.assert_allclose(
      rt.overlong_soft_penalty(jnp.array([99, 100, 101]), max_length=100, cache_length=0),
      [0.0, 0.0, -1.0])
  with pytest.raises(ValueError):
    rt.overlong_soft_penalty(jnp.array([1]), max_length=10, cache_length=11)


def test_kl_in_reward_estimators():
  old = np.array([[-1.0, -2.0, -0.5, 0.0]], np.float32)
  ref = np.array([[-1.5, -1.0, -0.5, -np.inf]], np.float32)  # the padded position holds -inf
  mask = np.array([[1.0, 1.0, 1.0, 0.0]], np.float32)
  d = (old - ref)[:, :3]
  refs = {
      "k1": d,
      "abs": np.abs(d),
      "k2": 0.5 * d ** 2,
      "k3": np.exp(-d) + d - 1.0,
  }
  for name, kl in refs.items():
    got = np.asarray(rt.kl_in_reward(old, ref, mask, beta=0.1, estimator=name))
    np.testing.assert_allclose(got[:, :3], -0.1 * kl, rtol=1e-6, atol=1e-7, err_msg=name)
    assert got[0, 3] == 0.0 and np.all(np.isfinite(got)), name
  with pytest.raises(ValueError):
    rt.kl_in_reward(old, ref, mask, beta=0.1, estimator="full")


def test_kl_in_reward_k3_clamps_and_no_gradient():
  # d = -30: exp(30) overflows the estimate; the log-ratio is clamped to 20, the value to 10.
  old, ref, mask = jnp.array([[-31.0]]), jnp.array([[-1.0]]), jnp.ones((1, 1))
  np.testing.assert_allclose(rt.kl_in_reward(old, ref, mask, beta=1.0, estimator="k3"), [[-10.0]])
  grad = jax.grad(lambda o: jnp.sum(rt.kl_in_reward(o, ref, mask, beta=1.0)))(old)
  np.testing.assert_allclose(grad, 0.0)
