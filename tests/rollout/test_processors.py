"""Processors against small numpy references written from each rule's definition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.rollout import processors as pr


def _np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _kept(x):
  return np.isfinite(np.asarray(x))


LOGITS = np.array(
    [[2.0, 1.0, 0.5, -1.0, 3.0, 0.0],
     [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]], np.float32)


def test_temperature_scales():
  out = pr.temperature(0.5)(jnp.asarray(LOGITS))
  np.testing.assert_allclose(out, LOGITS / 0.5, rtol=1e-6)
  np.testing.assert_array_equal(pr.temperature(1.0)(jnp.asarray(LOGITS)), LOGITS)


def test_top_k_hand_computed():
  out = pr.top_k(2)(jnp.asarray(LOGITS))
  np.testing.assert_array_equal(_kept(out), [[1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 1]])
  # Kept values pass through unchanged.
  np.testing.assert_array_equal(np.asarray(out)[0, [0, 4]], [2.0, 3.0])
  # k >= V is the identity.
  np.testing.assert_array_equal(pr.top_k(6)(jnp.asarray(LOGITS)), LOGITS)


def test_top_k_keeps_ties():
  z = jnp.asarray([[1.0, 2.0, 2.0, 0.0]])
  np.testing.assert_array_equal(_kept(pr.top_k(2)(z)), [[0, 1, 1, 0]])
  np.testing.assert_array_equal(_kept(pr.top_k(1)(z)), [[0, 1, 1, 0]])


def _np_top_p(z, p):
  """Reference: walk tokens by decreasing prob, keep while the mass *before* a token is < p."""
  keep = np.zeros_like(z, bool)
  for r in range(z.shape[0]):
    q = _np_softmax(z[r])
    mass = 0.0
    for i in np.argsort(-z[r], kind="stable"):
      if mass < p:
        keep[r, i] = True
      mass += q[i]
  return keep


@pytest.mark.parametrize("p", [0.05, 0.5, 0.8, 0.95])
def test_top_p_matches_reference(p):
  out = pr.top_p(p)(jnp.asarray(LOGITS))
  np.testing.assert_array_equal(_kept(out), _np_top_p(LOGITS, p))


def test_top_p_hand_computed():
  # probs 0.5, 0.3, 0.2 (logits are their logs): p=0.5 keeps only the first; p=0.6 the first two.
  z = jnp.log(jnp.asarray([[0.3, 0.5, 0.2]], jnp.float32))
  np.testing.assert_array_equal(_kept(pr.top_p(0.5)(z)), [[0, 1, 0]])
  np.testing.assert_array_equal(_kept(pr.top_p(0.6)(z)), [[1, 1, 0]])
  np.testing.assert_array_equal(_kept(pr.top_p(1.0)(z)), [[1, 1, 1]])


def test_min_p_hand_computed():
  # probs 0.5, 0.3, 0.15, 0.05; min_p 0.4 keeps q >= 0.2: the first two.
  z = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]], jnp.float32))
  np.testing.assert_array_equal(_kept(pr.min_p(0.4)(z)), [[1, 1, 0, 0]])
  np.testing.assert_array_equal(_kept(pr.min_p(0.0)(z)), [[1, 1, 1, 1]])
  np.testing.assert_array_equal(_kept(pr.min_p(1.0)(z)), [[1, 0, 0, 0]])


def test_greedy_keeps_first_argmax_only():
  z = jnp.asarray([[1.0, 3.0, 3.0], [5.0, 0.0, 1.0]])
  np.testing.assert_array_equal(_kept(pr.greedy()(z)), [[0, 1, 0], [1, 0, 0]])
  logq, ent = pr.log_softmax_and_entropy(pr.greedy()(z))
  np.testing.assert_array_equal(np.asarray(logq)[[0, 1], [1, 0]], [0.0, 0.0])
  np.testing.assert_array_equal(ent, [0.0, 0.0])


def test_chain_order_and_default_chain():
  z = jnp.asarray(LOGITS)
  chained = pr.chain(pr.temperature(2.0), pr.top_k(3))(z)
  expected = np.where(_kept(pr.top_k(3)(z)), LOGITS / 2.0, -np.inf)
  np.testing.assert_allclose(chained, expected, rtol=1e-6)
  d = pr.default_chain(temperature=0.7, top_k=4, top_p=0.9, min_p=0.05)
  assert [type(s) for s in d.processors] == [pr.Temperature, pr.TopK, pr.TopP, pr.MinP]
  assert pr.default_chain(temperature=0).processors == (pr.Greedy(),)


def test_processors_are_hashable_values():
  # Static jit arguments: equal parameters give equal, equally-hashed processors.
  a = pr.default_chain(temperature=0.7, top_k=4)
  b = pr.default_chain(temperature=0.7, top_k=4)
  assert a == b and hash(a) == hash(b)
  assert a != pr.default_chain(temperature=0.7, top_k=5)


def test_entropy_reference_with_masked_entries():
  z = jnp.asarray(LOGITS)
  processed = pr.top_k(3)(z)
  logq, ent = pr.log_softmax_and_entropy(processed)
  ref = []
  for r in range(2):
    keep = _kept(processed)[r]
    q = _np_softmax(LOGITS[r][keep])
    ref.append(-(q * np.log(q)).sum())
  np.testing.assert_allclose(ent, ref, rtol=1e-5)
  assert np.all(np.isneginf(np.asarray(logq)[~_kept(processed)]))


def test_jit_and_bad_input():
  f = jax.jit(pr.default_chain(temperature=0.5, top_k=2, top_p=0.9, min_p=0.1))
  assert f(jnp.asarray(LOGITS)).shape == LOGITS.shape
  with pytest.raises(ValueError):
    pr.temperature(0.0)
  with pytest.raises(ValueError):
    pr.top_k(0)
  with pytest.raises(ValueError):
    pr.top_p(0.0)
  with pytest.raises(ValueError):
    pr.min_p(1.5)
  with pytest.raises(ValueError):
    pr.default_chain(temperature=0, top_k=3)
  with pytest.raises(ValueError):
    pr.top_k(2)(jnp.zeros((3,), jnp.float32))
  with pytest.raises(ValueError):
    pr.top_k(2)(jnp.zeros((1, 3), jnp.bfloat16))


def test_first_argmax_is_jnp_argmax():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, 50)).astype(np.float32)
  x[1, [3, 17]] = 9.0                      # a tie: the first wins
  x[2, :] = -np.inf                        # all masked: index 0, as jnp.argmax
  x[3, [5, 30]] = np.nan                   # NaN: the first NaN, as jnp.argmax
  x[4, 10:] = -np.inf
  x[5, :] = 1.0
  np.testing.assert_array_equal(jax.jit(pr.first_argmax)(x), jnp.argmax(x, axis=-1))
  assert pr.first_argmax(x).dtype == jnp.int32


@pytest.mark.parametrize("seed", range(3))
def test_categorical_draws_the_tokens_of_jax_random_categorical(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(8, 300)).astype(np.float32) * 3
  logits[:, 100:] = -np.inf                # a top-k style mask: never drawn
  key = jax.random.PRNGKey(seed)
  got = jax.jit(pr.categorical)(key, logits)
  np.testing.assert_array_equal(got, jax.random.categorical(key, logits, axis=-1))
  assert got.dtype == jnp.int32 and np.all(np.asarray(got) < 100)
  keys = jax.random.split(key, 8)          # per-row keys, as the continuous engine draws
  np.testing.assert_array_equal(jax.vmap(pr.categorical)(keys, logits),
                                jax.vmap(jax.random.categorical)(keys, logits))


def test_categorical_frequencies_follow_softmax():
  logits = jnp.log(jnp.asarray([[0.1, 0.2, 0.7]], jnp.float32))
  draws = jax.vmap(lambda k: pr.categorical(k, logits)[0])(
      jax.random.split(jax.random.PRNGKey(0), 20000))
  freq = np.bincount(np.asarray(draws), minlength=3) / 20000
  np.testing.assert_allclose(freq, [0.1, 0.2, 0.7], atol=0.015)
