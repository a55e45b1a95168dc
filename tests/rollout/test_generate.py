"""generate(): layout, stop handling, determinism, compilation count, sharding, references.

References run the model without a KV cache on whole sequences (right-padded, so no left padding
and a different slot layout than the generate loop), then apply the rule being tested.
Distinct jit shapes are few on purpose: each costs seconds of compile time on a CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.rollout import generate as gen
from rlvr_jax.rollout import processors as pr

G, N = 2, 6


def _completions(rollout):
  tokens = np.asarray(rollout.tokens)
  return [tokens[b, :n].tolist() for b, n in enumerate(np.asarray(rollout.lengths))]


def _check_stop_semantics(rollout, stop_ids, pad_id):
  tokens = np.asarray(rollout.tokens)
  lengths = np.asarray(rollout.lengths)
  truncated = np.asarray(rollout.truncated)
  for b in range(tokens.shape[0]):
    n = lengths[b]
    is_stop = np.isin(tokens[b, :n], stop_ids)
    assert not is_stop[:-1].any(), "a sequence continued past a stop token"
    assert truncated[b] == (not is_stop[-1])
    if truncated[b]:
      assert n == tokens.shape[1]
    assert np.all(tokens[b, n:] == pad_id)
    assert np.all(np.asarray(rollout.logprobs)[b, n:] == 0.0)


def _run(tiny, prompts, rng=1, **kw):
  config, params = tiny
  _, tokens, mask = prompts
  return gen.generate(params, config, tokens, mask, jax.random.PRNGKey(rng), num_samples=G,
                      max_new_tokens=N, **kw)


def test_layout_determinism_and_no_retrace(tiny, prompts, sampled):
  config, params = tiny
  rows, tokens, mask = prompts
  r, settings = sampled
  b = len(rows) * G
  assert settings["num_samples"] == G and settings["max_new_tokens"] == N
  assert r.tokens.shape == (b, N) and r.tokens.dtype == jnp.int32
  assert r.logprobs.shape == (b, N) and r.logprobs.dtype == jnp.float32
  assert r.entropy.shape == (b, N)
  # Prompt-major: rows i*G .. i*G+G-1 continue prompt i.
  np.testing.assert_array_equal(r.prompt_tokens, np.repeat(tokens, G, axis=0))
  np.testing.assert_array_equal(r.prompt_mask, np.repeat(mask, G, axis=0))
  # force_full_length: every sequence runs N tokens and counts as truncated.
  np.testing.assert_array_equal(r.lengths, np.full(b, N))
  assert np.all(np.asarray(r.truncated))
  assert np.all(np.asarray(r.logprobs) < 0) and np.all(np.asarray(r.entropy) > 0)
  # The G samples of a prompt are independent draws.
  assert not np.array_equal(r.tokens[0], r.tokens[1])

  run = lambda key, **kw: gen.generate(params, config, tokens, mask, jax.random.PRNGKey(key),
                                       **{**settings, **kw})
  traces = gen.num_traces()
  again = run(1)
  np.testing.assert_array_equal(again.tokens, r.tokens)
  np.testing.assert_array_equal(again.logprobs, r.logprobs)
  assert not np.array_equal(run(2).tokens, r.tokens)
  # Stop ids that do occur are ignored under force_full_length; changing them does not retrace.
  first = tuple(sorted(set(np.asarray(r.tokens)[:, 0].tolist())))
  forced = run(1, stop_token_ids=first)
  np.testing.assert_array_equal(forced.tokens, r.tokens)
  np.testing.assert_array_equal(forced.lengths, N)
  # New prompt contents, same bucket: no retrace either.
  gen.generate(params, config, (tokens + 7) % config.vocab_size, mask[::-1].copy(),
               jax.random.PRNGKey(3), **settings)
  assert gen.num_traces() == traces


def test_greedy_matches_uncached_reference_and_stops(tiny, prompts, full_logits):
  config, params = tiny
  rows, _, _ = prompts
  # Reference greedy decoding, one token at a time, with full uncached forward passes.
  ref = [[] for _ in rows]
  for _ in range(N):
    logits = full_logits(config, params, rows, ref)
    for i, p in enumerate(rows):
      ref[i].append(int(np.argmax(logits[i, len(p) + len(ref[i]) - 1])))
  ref = np.asarray(ref)
  # Stop on the 3rd token of prompt 0 (and on whatever else equals it).
  stop = int(ref[0, 2])
  r = _run(tiny, prompts, temperature=0.0, stop_token_ids=(stop,), pad_token_id=255)
  _check_stop_semantics(r, [stop], 255)
  for b in range(len(rows) * G):
    expected = ref[b // G]
    hits = np.flatnonzero(expected == stop)
    n = hits[0] + 1 if hits.size else N
    assert r.lengths[b] == n
    np.testing.assert_array_equal(np.asarray(r.tokens)[b, :n], expected[:n])
  assert r.lengths[0] <= 3 and not r.truncated[0]
  # Greedy keeps a single token, so its log-prob under the processed distribution is 0.
  np.testing.assert_array_equal(r.logprobs, 0.0)
  # When every first token is a stop token, all sequences end at length 1 (same compilation).
  traces = gen.num_traces()
  first = tuple(sorted(set(ref[:, 0].tolist())))
  r = _run(tiny, prompts, temperature=0.0, stop_token_ids=first, pad_token_id=255)
  assert gen.num_traces() == traces
  np.testing.assert_array_equal(r.lengths, 1)
  assert not np.any(np.asarray(r.truncated))
  np.testing.assert_array_equal(np.asarray(r.tokens)[:, 1:], 255)


def test_truncated_sampling_logprobs_support_and_stops(tiny, prompts, full_logits):
  config, params = tiny
  rows, _, _ = prompts
  chain = pr.default_chain(temperature=0.7, top_k=20, top_p=0.9, min_p=0.02)
  stop_ids = tuple(range(0, config.vocab_size, 4))
  r = _run(tiny, prompts, processors=chain, stop_token_ids=stop_ids, return_entropy=True)
  _check_stop_semantics(r, stop_ids, 0)
  lengths = np.asarray(r.lengths)
  assert lengths.min() < N  # Some stop early; the stop set holds a quarter of the vocabulary.
  comps = _completions(r)
  logits = full_logits(config, params, [rows[b // G] for b in range(len(comps))], comps)
  for b, comp in enumerate(comps):
    start = len(rows[b // G]) - 1
    processed = np.asarray(chain(jnp.asarray(logits[b, start:start + len(comp)])))
    logq = processed - np.logaddexp.reduce(processed, axis=-1, keepdims=True)
    chosen = logq[np.arange(len(comp)), comp]
    assert np.all(np.isfinite(chosen)), "sampled a token outside the processed support"
    np.testing.assert_allclose(np.asarray(r.logprobs)[b, :len(comp)], chosen, atol=1e-5)
    q = np.exp(logq)
    ent = -np.sum(np.where(q > 0, q * np.where(q > 0, logq, 0.0), 0.0), axis=-1)
    np.testing.assert_allclose(np.asarray(r.entropy)[b, :len(comp)], ent, atol=1e-5)
    assert np.all(np.asarray(r.entropy)[b, len(comp):] == 0.0)


def test_bad_input(tiny, prompts):
  config, params = tiny
  _, tokens, mask = prompts
  key = jax.random.PRNGKey(0)
  with pytest.raises(ValueError, match="max_new_tokens"):
    gen.generate(params, config, tokens, mask, key, max_new_tokens=0)
  empty = mask.copy()
  empty[1] = False
  with pytest.raises(ValueError, match="empty prompt"):
    gen.generate(params, config, tokens, empty, key, max_new_tokens=4)
  right_padded = mask[:, ::-1].copy()
  with pytest.raises(ValueError, match="left-padded"):
    gen.generate(params, config, tokens, right_padded, key, max_new_tokens=4)
  with pytest.raises(ValueError, match="max_position_embeddings"):
    gen.generate(params, config, tokens, mask, key,
                 max_new_tokens=config.max_position_embeddings - tokens.shape[1] + 1)
  with pytest.raises(ValueError, match="not both"):
    gen.generate(params, config, tokens, mask, key, max_new_tokens=4,
                 processors=pr.greedy(), temperature=0.5)
  with pytest.raises(ValueError, match="P, S"):
    gen.generate(params, config, tokens[0], mask[0], key, max_new_tokens=4)


def test_pad_prompts():
  tokens, mask = gen.pad_prompts([[5, 6], [7, 8, 9]], bucket_sizes=(8, 4, 16), pad_id=0)
  np.testing.assert_array_equal(tokens, [[0, 0, 5, 6], [0, 7, 8, 9]])
  np.testing.assert_array_equal(mask, [[0, 0, 1, 1], [0, 1, 1, 1]])
  assert tokens.dtype == np.int32 and mask.dtype == bool
  with pytest.raises(ValueError, match="empty"):
    gen.pad_prompts([[1], []], (4,), 0)
  with pytest.raises(ValueError, match="largest bucket"):
    gen.pad_prompts([[1] * 5], (4,), 0)
