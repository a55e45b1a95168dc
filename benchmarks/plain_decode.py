"""A plain JAX static-cache decode loop: the baseline `benchmarks/rollout.py --plain` times.

Issue #11 measures the engine against what a competent user would write in an afternoon: about a
hundred lines of JAX with no engine around them. This is that loop, written for clarity rather
than speed, on the library's parameter tree (Llama/Qwen2/Qwen3, float32 or bf16):

* the prompts ``[B, S]`` (left-padded, one row per sample) are prefilled in one pass that fills a
  cache of ``S + N`` slots per layer, ``[B, S + N, KV, Dh]`` (positions first, the layout a
  textbook loop keeps);
* ``lax.fori_loop`` runs exactly ``N`` steps: embed the last token, a Python loop over the layers
  (each reads its own slice of the stacked weights), write the new key/value at its slot, attend
  over the whole cache (masked), sample with ``jax.random.categorical``;
* no early exit, no shared prefill for a group, no sharding.

Sampling is plain temperature sampling with key ``fold_in(rng, t)`` at step ``t``, as
`rlvr_jax.rollout.generate`'s; with a greedy choice (``temperature=0``) the loop's tokens equal
the engine's (`tests/benchmarks/test_plain_decode.py`), which checks that the baseline computes
the same model.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlvr_jax.models import transformer as transformer_lib


def _rms(x, w, eps):
  x32 = x.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return y.astype(x.dtype) * w.astype(x.dtype)


def _rope(x, positions, inv_freq):
  angles = positions[..., None].astype(jnp.float32) * inv_freq
  cos = jnp.cos(jnp.concatenate([angles, angles], -1))[:, :, None].astype(x.dtype)
  sin = jnp.sin(jnp.concatenate([angles, angles], -1))[:, :, None].astype(x.dtype)
  half = x.shape[-1] // 2
  return x * cos + jnp.concatenate([-x[..., half:], x[..., :half]], -1) * sin


def _layer(cfg, w, x, positions, k_cache, v_cache, index, visible):
  """One decoder layer on ``x [B, T, D]`` whose keys/values go to cache slots ``index + t``."""
  dt = cfg.compute_dtype
  inv_freq = jnp.asarray(transformer_lib.rope_inv_freq(cfg))
  a = w["attn"]
  h = _rms(x, w["input_norm"]["scale"], cfg.rms_norm_eps)
  proj = lambda name: (jnp.einsum("btd,dnh->btnh", h, a[name]["kernel"].astype(dt))
                       + (a[name]["bias"].astype(dt) if "bias" in a[name] else 0))
  q, k, v = proj("q_proj"), proj("k_proj"), proj("v_proj")
  if cfg.qk_norm:
    q = _rms(q, a["q_norm"]["scale"], cfg.rms_norm_eps)
    k = _rms(k, a["k_norm"]["scale"], cfg.rms_norm_eps)
  q, k = _rope(q, positions, inv_freq), _rope(k, positions, inv_freq)
  k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, index, 0, 0))
  v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, index, 0, 0))
  b, t, n, dh = q.shape
  kv = cfg.num_kv_heads
  q = q.reshape(b, t, kv, n // kv, dh)
  scores = jnp.einsum("btkgd,bskd->bkgts", q, k_cache, preferred_element_type=jnp.float32)
  scores = jnp.where(visible[:, None, None], scores * dh ** -0.5, jnp.finfo(jnp.float32).min)
  out = jnp.einsum("bkgts,bskd->btkgd", jax.nn.softmax(scores, -1).astype(dt), v_cache)
  out = jnp.einsum("btnh,nhd->btd", out.reshape(b, t, n, dh), a["o_proj"]["kernel"].astype(dt))
  if "bias" in a["o_proj"]:
    out = out + a["o_proj"]["bias"].astype(dt)
  x = x + out
  m = w["mlp"]
  h = _rms(x, w["post_attn_norm"]["scale"], cfg.rms_norm_eps)
  gate = jnp.einsum("btd,df->btf", h, m["gate_proj"]["kernel"].astype(dt))
  up = jnp.einsum("btd,df->btf", h, m["up_proj"]["kernel"].astype(dt))
  x = x + jnp.einsum("btf,fd->btd", jax.nn.silu(gate) * up, m["down_proj"]["kernel"].astype(dt))
  return x, k_cache, v_cache


def _forward(cfg, params, tokens, positions, caches, index, slot_mask):
  """Logits ``[B, V]`` after the last of ``tokens [B, T]`` (slots ``index + t``) and the caches."""
  t = tokens.shape[1]
  slots = jnp.arange(slot_mask.shape[1])
  visible = (slots[None, :] <= index + jnp.arange(t)[:, None])[None] & slot_mask[:, None, :]
  x = params["embed"]["embedding"].astype(cfg.compute_dtype)[tokens]
  new = []
  for i, (k_cache, v_cache) in enumerate(caches):
    w = jax.tree.map(lambda p, i=i: p[i], params["layers"])
    x, k_cache, v_cache = _layer(cfg, w, x, positions, k_cache, v_cache, index, visible)
    new.append((k_cache, v_cache))
  h = _rms(x[:, -1], params["final_norm"]["scale"], cfg.rms_norm_eps)
  return transformer_lib.unembed(params, cfg, h), new


@functools.partial(jax.jit, static_argnames=("config", "max_new_tokens", "temperature"))
def plain_generate(params, config, prompt_tokens, prompt_mask, rng, *, max_new_tokens,
                   temperature=1.0):
  """``[B, N]`` sampled tokens for ``B`` left-padded prompts (one row per sample).

  ``temperature=0`` picks the argmax. The parameter tree is the library's
  (`rlvr_jax.models.transformer`); plain float kernels only (no LoRA or quantised leaves).
  """
  b, s = prompt_tokens.shape
  n = max_new_tokens
  shape = (b, s + n, config.num_kv_heads, config.head_dim)
  caches = [(jnp.zeros(shape, config.compute_dtype), jnp.zeros(shape, config.compute_dtype))
            for _ in range(config.num_layers)]
  slot_mask = jnp.concatenate([prompt_mask, jnp.ones((b, n), bool)], axis=1)
  positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1) - 1, 0)
  logits, caches = _forward(config, params, prompt_tokens, positions, caches, 0, slot_mask)
  lengths = prompt_mask.sum(axis=1)

  def pick(t, logits):
    if temperature == 0:
      return jnp.argmax(logits, -1).astype(jnp.int32)
    key = jax.random.fold_in(rng, t)
    return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)

  def step(t, carry):
    out, logits, caches = carry
    token = pick(t, logits)
    out = out.at[:, t].set(token)
    logits, caches = _forward(config, params, token[:, None], (lengths + t)[:, None], caches,
                              s + t, slot_mask)
    return out, logits, caches

  out = jnp.zeros((b, n), jnp.int32)
  out, logits, _ = jax.lax.fori_loop(0, n - 1, step, (out, logits, caches))
  return out.at[:, n - 1].set(pick(n - 1, logits))
