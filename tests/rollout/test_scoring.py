"""token_logprobs(): per-row reference, chunked == unchunked, memory bound, rollout consistency."""

import functools

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.rollout import scoring

TEMPERATURE = 0.7

score = jax.jit(scoring.token_logprobs,
                static_argnames=("config", "temperature", "chunk_size", "return_entropy"))


def _completions(prompts, vocab):
  """Two completions per prompt with lengths 6, 4, 1, 5, ... (right padding with junk ids)."""
  rows, tokens, mask = prompts
  b = 2 * len(rows)
  rng = np.random.default_rng(0)
  comp = rng.integers(0, vocab, (b, 6)).astype(np.int32)
  lengths = np.array([6, 4, 1, 5, 3, 6, 2, 6])[:b]
  comp_mask = np.arange(6)[None, :] < lengths[:, None]
  return (np.repeat(tokens, 2, 0), np.repeat(mask, 2, 0), comp, comp_mask,
          [rows[i // 2] for i in range(b)], lengths)


def test_matches_per_row_reference(tiny, prompts, full_logits):
  config, params = tiny
  ptok, pmask, comp, cmask, rows, lengths = _completions(prompts, config.vocab_size)
  lp, ent = score(params, config, ptok, pmask, comp, cmask, temperature=TEMPERATURE,
                  return_entropy=True)
  assert lp.shape == comp.shape and lp.dtype == jnp.float32 and ent.shape == comp.shape
  logits = full_logits(config, params, rows, [c[:n] for c, n in zip(comp, lengths)])
  for b, n in enumerate(lengths):
    start = len(rows[b]) - 1
    z = logits[b, start:start + n].astype(np.float64) / TEMPERATURE
    logq = z - np.logaddexp.reduce(z, axis=-1, keepdims=True)
    np.testing.assert_allclose(lp[b, :n], logq[np.arange(n), comp[b, :n]], atol=1e-5)
    np.testing.assert_allclose(ent[b, :n], -(np.exp(logq) * logq).sum(-1), atol=1e-5)
    assert np.all(np.asarray(lp)[b, n:] == 0) and np.all(np.asarray(ent)[b, n:] == 0)


def test_chunked_equals_unchunked_values_and_grads(tiny, prompts):
  config, params = tiny
  ptok, pmask, comp, cmask, _, _ = _completions(prompts, config.vocab_size)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=comp.shape), jnp.float32)

  def loss(p, chunk_size):
    lp, ent = scoring.token_logprobs(p, config, ptok, pmask, comp, cmask,
                                     temperature=TEMPERATURE, chunk_size=chunk_size,
                                     return_entropy=True)
    return jnp.sum(lp * weights) + 0.1 * jnp.sum(ent * weights), (lp, ent)

  grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
  (_, (lp_full, ent_full)), g_full = grad(params, None)
  # 4 does not divide T = 6: the last chunk is padded.
  (_, (lp_chunk, ent_chunk)), g_chunk = grad(params, 4)
  np.testing.assert_allclose(lp_chunk, lp_full, atol=1e-5)
  np.testing.assert_allclose(ent_chunk, ent_full, atol=1e-5)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_full),
                          jax.tree_util.tree_leaves(g_chunk)):
    scale = float(jnp.max(jnp.abs(a))) + 1e-6
    np.testing.assert_allclose(np.asarray(b) / scale, np.asarray(a) / scale, atol=1e-5,
                               err_msg=jax.tree_util.keystr(path))
  assert float(jnp.max(jnp.abs(g_full["lm_head"]["kernel"]))) > 0


def _largest_vocab_array(jaxpr, vocab):
  """Elements of the largest array with a trailing vocab axis anywhere in a (nested) jaxpr."""
  biggest = 0
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      shape = getattr(var.aval, "shape", ())
      if shape and shape[-1] == vocab:
        biggest = max(biggest, int(np.prod(shape)))
    for param in eqn.params.values():
      for p in (param if isinstance(param, (tuple, list)) else (param,)):
        if isinstance(p, jex.ClosedJaxpr):
          p = p.jaxpr
        if isinstance(p, jex.Jaxpr):
          biggest = max(biggest, _largest_vocab_array(p, vocab))
  return biggest


def test_chunked_gradient_never_builds_full_logits(tiny, prompts):
  config, params = tiny
  ptok, pmask, comp, cmask, _, _ = _completions(prompts, config.vocab_size)

  def grad_jaxpr(chunk_size):
    def loss(p):
      lp, ent = scoring.token_logprobs(p, config, ptok, pmask, comp, cmask,
                                       chunk_size=chunk_size, return_entropy=True)
      return jnp.sum(lp) + jnp.sum(ent)
    return jax.make_jaxpr(jax.grad(loss))(params).jaxpr

  b, t = comp.shape
  v = config.vocab_size
  # The checker sees the [B, S+T, V] logits of the plain path...
  assert _largest_vocab_array(grad_jaxpr(None), v) >= b * t * v
  # ...and with chunk_size=2 nothing larger than one chunk's [B, 2, V] (nor the [V, D] head).
  assert _largest_vocab_array(grad_jaxpr(2), v) <= max(b * 2 * v, v * config.hidden_size)


def test_logprob_consistency_with_rollout(tiny, sampled):
  """Teacher-forced recomputation reproduces the sampler's log-probs and entropy (fp32)."""
  config, params = tiny
  rollout, settings = sampled
  assert settings["temperature"] == TEMPERATURE
  for chunk_size in (None, 3):
    lp, ent = score(params, config, rollout.prompt_tokens, rollout.prompt_mask, rollout.tokens,
                    rollout.mask, temperature=TEMPERATURE, chunk_size=chunk_size,
                    return_entropy=True)
    np.testing.assert_allclose(lp, rollout.logprobs, atol=1e-5)
    np.testing.assert_allclose(ent, rollout.entropy, atol=1e-5)


def test_bad_input(tiny, prompts):
  config, params = tiny
  ptok, pmask, comp, cmask, _, _ = _completions(prompts, config.vocab_size)
  f = functools.partial(scoring.token_logprobs, params, config)
  with pytest.raises(ValueError, match="temperature"):
    f(ptok, pmask, comp, cmask, temperature=0.0)
  with pytest.raises(ValueError, match="chunk_size"):
    f(ptok, pmask, comp, cmask, chunk_size=0)
  with pytest.raises(ValueError, match=r"\[B, T\]"):
    f(ptok, pmask, comp[:3], cmask[:3])
  with pytest.raises(ValueError, match=r"\[B, S\]"):
    f(ptok, pmask[:, :4], comp, cmask)
