"""Decoder-only transformer of the Llama 3.x / Qwen2 / Qwen3 families in Flax linen.

One module covers the three families; ``ModelConfig`` switches the differences:

* RMSNorm (Zhang & Sennrich 2019, arXiv:1910.07467): ``y = w * x / sqrt(mean(x^2) + eps)``,
  statistics in float32.
* RoPE (Su et al. 2021, arXiv:2104.09864) in the "rotate half" layout of the HF checkpoints,
  ``inv_freq_i = theta^(-2i/Dh)``, optionally rescaled by the llama3 rule (see ``rope_inv_freq``).
* Grouped-query attention (Ainslie et al. 2023, arXiv:2305.13245), optional q/k/v biases (Qwen2)
  and RMSNorm on queries and keys per head before RoPE (Qwen3, arXiv:2505.09388).
* SwiGLU MLP (Shazeer 2020, arXiv:2002.05202): ``down(silu(gate(x)) * up(x))``.
* Tied or untied LM head; logits always float32.

Positions and masks are explicit inputs, so that left-padded batches and a static KV cache need no
recompilation per length:

* ``positions`` ``[B, T]`` are RoPE positions (for left padding ``max(cumsum(mask) - 1, 0)``).
* Without a cache, ``attention_mask`` is ``[B, T]`` bool, True on real tokens; query ``t`` attends
  to keys ``s <= t`` with ``attention_mask[b, s]``.
* With a cache of ``S`` slots, the new keys/values are written at slots
  ``[cache_index, cache_index + T)`` and ``attention_mask`` is ``[B, S]`` bool over all slots (True
  where a slot holds a real token, the new ones included); the query at slot ``cache_index + i``
  attends to valid slots ``<= cache_index + i``. ``cache_index`` may be a traced scalar.

Layers are stacked with ``nn.scan`` (parameters carry a leading ``[L]`` axis), so compile time does
not grow with depth; the KV cache ``[L, B, KV, S, Dh]`` travels in the scan carry and each layer
writes only its new slots in place. The cache is head-major (a head's slots contiguous), so the
attention's batched products read it as stored, with no per-step transpose of the whole cache.
Decoding loops run `apply_unrolled` instead: one step over per-layer params and per-layer caches
(`unstack_layers`, `split_cache`), which neither slices the stacked weights nor copies a layer's
cache out of the stack at every step.

Parameters are the plain ``params`` collection (a nested dict):
``embed/embedding [V, D]``, ``layers/{input_norm,post_attn_norm}/scale [L, D]``,
``layers/attn/{q,k,v}_proj/kernel [L, D, N, Dh]`` (+ ``bias [L, N, Dh]``),
``layers/attn/o_proj/kernel [L, H, Dh, D]`` (+ ``bias [L, D]``),
``layers/attn/{q,k}_norm/scale [L, Dh]``, ``layers/mlp/{gate,up}_proj/kernel [L, D, F]``,
``layers/mlp/down_proj/kernel [L, F, D]``, ``final_norm/scale [D]``, ``lm_head/kernel [D, V]``
(untied only). A projection's node may also hold LoRA leaves (``lora.attach``) and its kernel may
be quantised (``quant``); ``Projection`` reads both.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.models import lora
from rlvr_jax.models import partition
from rlvr_jax.models import quant
from rlvr_jax.models.config import ModelConfig

Array = jax.Array
Params = Any

_INIT_STD = 0.02  # HF ``initializer_range`` default for all three families.


@dataclasses.dataclass(frozen=True)
class KVCache:
  """Static key/value cache of every layer.

  Attributes:
    k: ``[L, B, KV, S, Dh]`` keys after RoPE (and q/k norm), compute dtype; ``[B, KV, S, Dh]``
      in the per-layer caches of `split_cache`.
    v: values, shaped as ``k``.
  """

  k: Array
  v: Array


jax.tree_util.register_dataclass(KVCache, data_fields=["k", "v"], meta_fields=[])


def init_cache(config: ModelConfig, batch_size: int, max_length: int) -> KVCache:
  """A zero KV cache of ``max_length`` slots for ``batch_size`` sequences (compute dtype)."""
  if batch_size <= 0 or max_length <= 0:
    raise ValueError(f"batch_size and max_length must be positive, got {batch_size}, "
                     f"{max_length}")
  shape = (config.num_layers, batch_size, config.num_kv_heads, max_length, config.head_dim)
  return KVCache(k=jnp.zeros(shape, config.compute_dtype), v=jnp.zeros(shape, config.compute_dtype))


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
  """RoPE inverse frequencies ``[Dh / 2]`` float32, with the llama3 rescaling when configured.

  ``inv_freq_i = theta^(-2i / Dh)``. The llama3 rule (Llama 3.1 release, Meta 2024; the
  ``rope_type="llama3"`` of HF transformers) keeps high frequencies, divides low frequencies by
  ``factor`` and interpolates in between, by wavelength ``lambda = 2 pi / inv_freq`` against
  ``L0 = original_max_position_embeddings``:

  * ``lambda < L0 / high_freq_factor``: unchanged;
  * ``lambda > L0 / low_freq_factor``: ``inv_freq / factor``;
  * otherwise, with ``s = (L0 / lambda - low_freq_factor) / (high_freq_factor - low_freq_factor)``:
    ``(1 - s) * inv_freq / factor + s * inv_freq``.
  """
  dh = config.head_dim
  inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dh, 2, dtype=np.float64) / dh))
  if config.rope_scaling is not None:
    rs = dict(config.rope_scaling)
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_len = rs["original_max_position_embeddings"]
    wavelen = 2.0 * math.pi / inv_freq
    smooth = (old_len / wavelen - low) / (high - low)
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    inv_freq = np.where(medium, (1.0 - smooth) * inv_freq / factor + smooth * inv_freq, scaled)
  return inv_freq.astype(np.float32)


def _rope_tables(config: ModelConfig, positions: Array) -> Tuple[Array, Array]:
  """cos/sin tables ``[B, T, Dh]`` float32 for the rotate-half layout."""
  inv_freq = jnp.asarray(rope_inv_freq(config))
  angles = positions.astype(jnp.float32)[..., None] * inv_freq
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def _apply_rope(x: Array, cos: Array, sin: Array) -> Array:
  """Rotates ``x`` ``[B, T, N, Dh]``: ``x * cos + rotate_half(x) * sin`` (in ``x``'s dtype)."""
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  cos = cos[:, :, None, :].astype(x.dtype)
  sin = sin[:, :, None, :].astype(x.dtype)
  return x * cos + rotated * sin


def _project_logits(hidden: Array, weight: Array, tied: bool, dtype: jnp.dtype) -> Array:
  """Logits float32 from ``hidden [..., D]`` and the embedding ``[V, D]`` or head ``[D, V]``.

  Inputs are cast to the compute dtype; accumulation and output are float32.
  """
  spec = "...d,vd->...v" if tied else "...d,dv->...v"
  return jnp.einsum(spec, hidden.astype(dtype), weight.astype(dtype),
                    preferred_element_type=jnp.float32)


class RMSNorm(nn.Module):
  """``y = w * x / sqrt(mean(x^2) + eps)`` over the last axis; statistics in float32."""

  eps: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    # Cast back before scaling, as the reference implementations do.
    return y.astype(self.dtype) * scale.astype(self.dtype)


class Projection(nn.Module):
  """``y = x . W (+ b)``, contracting ``axis`` of ``x`` with the leading axes of ``W``.

  The same parameters, initialisation and numerics as ``nn.DenseGeneral`` (``kernel`` of shape
  ``x.shape[axis] + features``, normal(0.02) drawn flat then reshaped, optional ``bias``), plus two
  hooks read from the parameter tree, so that every function that takes ``params`` (``apply``,
  generation, scoring) serves adapted and quantised models unchanged:

  * a quantised ``kernel`` (a pytree, not an array; ``rlvr_jax.models.quant``) is dequantised to
    the compute dtype here, one layer at a time inside the layer scan;
  * ``lora_a``/``lora_b`` next to the kernel add the LoRA term (``rlvr_jax.models.lora``).
  """

  features: Tuple[int, ...]
  axis: Tuple[int, ...]
  use_bias: bool
  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``x [..., *I] -> [..., *features]`` in the compute dtype."""
    cfg = self.config
    axis = tuple(a % x.ndim for a in self.axis)
    in_shape = tuple(x.shape[a] for a in axis)
    dtype = cfg.compute_dtype
    contract = ((axis, tuple(range(len(axis)))), ((), ()))
    stored = self.get_variable("params", "kernel") if self.has_variable("params", "kernel") \
        else None
    if quant.is_quantized(stored):
      # Rematerialised, so that the backward pass dequantises again instead of keeping every
      # layer's float kernel (which would undo the memory saving of a quantised base).
      out = jax.checkpoint(lambda x, q: jax.lax.dot_general(
          x.astype(dtype), quant.dequantize(q, dtype), contract))(x, stored)
    else:
      def init_flat(rng, shape, dtype):
        flat = (int(np.prod(in_shape)), int(np.prod(self.features)))
        return nn.initializers.normal(_INIT_STD)(rng, flat, dtype).reshape(shape)
      kernel = self.param("kernel", init_flat, in_shape + self.features, cfg.params_dtype)
      out = jax.lax.dot_general(x.astype(dtype), kernel.astype(dtype), contract)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, self.features, cfg.params_dtype)
      out = out + bias.astype(dtype)
    if self.has_variable("params", lora.A):
      names = (lora.A, lora.B, lora.DROPOUT_KEY, lora.DROPOUT_KEEP)
      leaves = {n: self.get_variable("params", n) for n in names
                if self.has_variable("params", n)}
      out = out + lora.adapter_term(x, axis, leaves, dtype)
    return out


def _dense(features, name, config, use_bias=False, axis=-1):
  canon = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,)
  return Projection(canon(features), canon(axis), use_bias, config, name=name)


class Attention(nn.Module):
  """Grouped-query self-attention with RoPE, optional biases, q/k norm and a static KV cache."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x, cos, sin, allowed, kv, layer, cache_index, kv_lengths=None):
    """``allowed`` ``[B, T, S]`` bool masks the einsum path; ``kv_lengths`` ``[B]`` (flash path,
    rows shifted so that each one's real tokens start at slot 0) masks keys ``>= kv_lengths``."""
    cfg = self.config
    h, kvh, dh = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    q = _dense((h, dh), "q_proj", cfg, cfg.attention_bias)(x)
    k = _dense((kvh, dh), "k_proj", cfg, cfg.attention_bias)(x)
    v = _dense((kvh, dh), "v_proj", cfg, cfg.attention_bias)(x)
    if cfg.qk_norm:
      norm = dict(eps=cfg.rms_norm_eps, dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype)
      q = RMSNorm(name="q_norm", **norm)(q)
      k = RMSNorm(name="k_norm", **norm)(k)
    q = _apply_rope(q, cos, sin)
    k = _apply_rope(k, cos, sin)
    keys = "bskd"  # The layout of k and v below: fresh projections are [B, T, KV, Dh].
    if kv is not None:
      k_all, v_all = kv
      zero = jnp.zeros((), jnp.int32)
      k, v = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)  # [B, KV, T, Dh], the cache's layout.
      keys = "bksd"
      if layer is None:  # This layer's own cache [B, KV, S, Dh] (`apply_unrolled`).
        start = (zero, zero, cache_index, zero)
        k = k_all = jax.lax.dynamic_update_slice(k_all, k.astype(k_all.dtype), start)
        v = v_all = jax.lax.dynamic_update_slice(v_all, v.astype(v_all.dtype), start)
      else:  # Every layer's cache [L, B, KV, S, Dh] in the scan carry.
        start = (layer, zero, zero, cache_index, zero)
        k_all = jax.lax.dynamic_update_slice(k_all, k[None].astype(k_all.dtype), start)
        v_all = jax.lax.dynamic_update_slice(v_all, v[None].astype(v_all.dtype), start)
        k = jax.lax.dynamic_index_in_dim(k_all, layer, axis=0, keepdims=False)
        v = jax.lax.dynamic_index_in_dim(v_all, layer, axis=0, keepdims=False)
      kv = (k_all, v_all)
    b, t = q.shape[:2]
    if kv_lengths is not None:
      out = _flash_attention(q, k, v, kv_lengths, cfg.compute_dtype)
      out = _dense(cfg.hidden_size, "o_proj", cfg, cfg.attention_out_bias, axis=(-2, -1))(out)
      return out, kv
    q = q.reshape(b, t, kvh, h // kvh, dh)
    scores = jnp.einsum(f"btkgd,{keys}->bkgts", q, k.astype(q.dtype),
                        preferred_element_type=jnp.float32) * (dh ** -0.5)
    # A fully masked row (a padding query) gets a uniform distribution rather than NaN.
    scores = jnp.where(allowed[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(cfg.compute_dtype)
    out = jnp.einsum(f"bkgts,{keys}->btkgd", probs, v.astype(cfg.compute_dtype))
    out = out.reshape(b, t, h, dh)
    out = _dense(cfg.hidden_size, "o_proj", cfg, cfg.attention_out_bias, axis=(-2, -1))(out)
    return out, kv


def _flash_attention(q: Array, k: Array, v: Array, kv_lengths: Array, dtype) -> Array:
  """Causal GQA attention with keys ``>= kv_lengths[b]`` masked, via ``dot_product_attention``.

  cuDNN's fused kernel on a GPU in bf16/fp16 (it skips the non-causal blocks and never writes
  the ``[B, H, T, T]`` scores to memory); XLA's reference path elsewhere (float32, CPU, TPU).
  """
  on_gpu = jax.default_backend() == "gpu"
  implementation = "cudnn" if on_gpu and jnp.dtype(dtype) != jnp.float32 else "xla"
  return jax.nn.dot_product_attention(
      q.astype(dtype), k.astype(dtype), v.astype(dtype), is_causal=True,
      key_value_seq_lengths=kv_lengths.astype(jnp.int32), implementation=implementation)


def _roll_rows(x: Array, shift: Array) -> Array:
  """``out[b, t] = x[b, (t + shift[b]) % T]``: rotates each row left by ``shift[b]``."""
  t = x.shape[1]
  index = (jnp.arange(t)[None, :] + shift[:, None]) % t
  index = index.reshape(index.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


class MLP(nn.Module):
  """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

  config: ModelConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    gate = _dense(cfg.intermediate_size, "gate_proj", cfg)(x)
    up = _dense(cfg.intermediate_size, "up_proj", cfg)(x)
    return _dense(cfg.hidden_size, "down_proj", cfg)(jax.nn.silu(gate) * up)


class DecoderBlock(nn.Module):
  """Pre-norm block ``x += attn(norm(x)); x += mlp(norm(x))``, in ``nn.scan`` carry form."""

  config: ModelConfig

  @nn.compact
  def __call__(self, carry, cos, sin, allowed, cache_index, kv_lengths):
    cfg = self.config
    x, kv, layer = carry
    norm = dict(eps=cfg.rms_norm_eps, dtype=cfg.compute_dtype, param_dtype=cfg.params_dtype)
    attn_out, kv = Attention(cfg, name="attn")(RMSNorm(name="input_norm", **norm)(x), cos, sin,
                                                allowed, kv, layer, cache_index, kv_lengths)
    x = x + attn_out
    x = x + MLP(cfg, name="mlp")(RMSNorm(name="post_attn_norm", **norm)(x))
    return (x, kv, None if layer is None else layer + 1), None


def _check_inputs(tokens, positions, attention_mask, cache, cache_index):
  if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise ValueError(f"tokens must be [B, T] integers, got {tokens.shape} {tokens.dtype}")
  if positions.shape != tokens.shape or not jnp.issubdtype(positions.dtype, jnp.integer):
    raise ValueError(f"positions must be integers shaped like tokens {tokens.shape}, got "
                     f"{positions.shape} {positions.dtype}")
  b, t = tokens.shape
  if cache is None:
    if cache_index is not None:
      raise ValueError("cache_index given without a cache")
    expected = (b, t)
  else:
    if cache_index is None:
      raise ValueError("a cache needs cache_index (the first slot the new tokens go to)")
    if cache.k.shape[1] != b:
      raise ValueError(f"cache batch {cache.k.shape[1]} != tokens batch {b}")
    if t > cache.k.shape[3]:
      raise ValueError(f"{t} new tokens do not fit a cache of {cache.k.shape[3]} slots")
    expected = (b, cache.k.shape[3])
  if attention_mask.shape != expected or attention_mask.dtype != jnp.bool_:
    raise ValueError(f"attention_mask must be bool {expected} "
                     f"({'[B, T]' if cache is None else '[B, S] over cache slots'}), got "
                     f"{attention_mask.shape} {attention_mask.dtype}")


class Transformer(nn.Module):
  """The policy model: ``(tokens, positions, mask[, cache]) -> (logits | hidden, cache)``."""

  config: ModelConfig

  @nn.compact
  def __call__(self, tokens: Array, positions: Array, attention_mask: Array,
               cache: Optional[KVCache] = None, cache_index: Optional[Array] = None,
               return_hidden: bool = False) -> Tuple[Array, Optional[KVCache]]:
    """Runs the decoder.

    Args:
      tokens: ``[B, T]`` int token ids.
      positions: ``[B, T]`` int RoPE positions.
      attention_mask: bool, ``[B, T]`` without a cache (True on real tokens), ``[B, S]`` over the
        cache slots with one (True on slots holding real tokens, the new ones included).
      cache: optional ``KVCache`` of ``S`` slots; the new keys/values are written at slots
        ``[cache_index, cache_index + T)``. The caller keeps ``cache_index + T <= S`` (a traced
        index cannot be checked; ``dynamic_update_slice`` would clamp it).
      cache_index: int32 scalar (may be traced), required with a cache.
      return_hidden: return the final-normed hidden states ``[B, T, D]`` (compute dtype) instead
        of logits; ``unembed`` turns them into logits (e.g. in chunks, to bound memory).

    Returns:
      ``(logits [B, T, V] float32 or hidden [B, T, D], updated cache or None)``.
    """
    cfg = self.config
    _check_inputs(tokens, positions, attention_mask, cache, cache_index)
    t = tokens.shape[1]
    # The flash path needs causal-plus-length masking: rotate each row so that its real tokens
    # (contiguous by contract) start at slot 0, and rotate the outputs back at the end.
    flash = cache is None and cfg.attention == "flash"
    kv_lengths = shift = None
    if flash:
      shift = jnp.argmax(attention_mask, axis=1).astype(jnp.int32)
      # At least one key: a row of padding only then attends to its first slot and stays finite
      # (the einsum path gives such a row a uniform distribution), never NaN.
      kv_lengths = jnp.maximum(jnp.sum(attention_mask, axis=1, dtype=jnp.int32), 1)
      tokens, positions = _roll_rows(tokens, shift), _roll_rows(positions, shift)
    if cache is None:
      kv = None
      cache_index = jnp.zeros((), jnp.int32)
    else:
      cache_index = jnp.asarray(cache_index, jnp.int32)
      kv = (cache.k, cache.v)
    allowed = None if flash else _allowed(attention_mask, t, cache_index)
    cos, sin = _rope_tables(cfg, positions)

    embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.compute_dtype,
                     param_dtype=cfg.params_dtype,
                     embedding_init=nn.initializers.normal(_INIT_STD), name="embed")
    x = embed(tokens).astype(cfg.compute_dtype)

    block = DecoderBlock
    if cfg.remat:
      policy = (jax.checkpoint_policies.dots_with_no_batch_dims_saveable
                if cfg.remat_policy == "dots" else None)
      block = nn.remat(block, prevent_cse=False, policy=policy)
    layers = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=(nn.broadcast,) * 5, length=cfg.num_layers,
                     unroll=cfg.scan_unroll)(cfg, name="layers")
    (x, kv, _), _ = layers((x, kv, jnp.zeros((), jnp.int32)), cos, sin, allowed, cache_index,
                           kv_lengths)
    if flash:
      x = _roll_rows(x, -shift)
    hidden = RMSNorm(cfg.rms_norm_eps, cfg.compute_dtype, cfg.params_dtype, name="final_norm")(x)
    new_cache = None if kv is None else KVCache(k=kv[0], v=kv[1])
    # The untied head is declared on every path, so params have one tree whatever is returned.
    weight = embed.embedding if cfg.tie_word_embeddings else _LMHead(cfg, name="lm_head")()
    if return_hidden:
      return hidden, new_cache
    return _project_logits(hidden, weight, cfg.tie_word_embeddings, cfg.compute_dtype), new_cache


def _allowed(attention_mask: Array, t: int, cache_index: Array) -> Array:
  """``[B, T, S]`` bool: the query at slot ``cache_index + i`` may read key slot ``s`` when
  ``s <= cache_index + i`` and ``attention_mask[b, s]`` (without a cache, ``cache_index = 0`` and
  ``S = T``)."""
  q_slot = cache_index + jnp.arange(t)
  k_slot = jnp.arange(attention_mask.shape[1])
  return (k_slot[None, :] <= q_slot[:, None])[None] & attention_mask[:, None, :]


def unstack_layers(params: Params) -> Tuple[Params, ...]:
  """The stacked ``params["layers"]`` as one tree per layer: layer ``i``'s leaves ``x[i]``.

  These are the slices ``nn.scan`` takes at each layer (quantised kernels and LoRA leaves
  included). Made once before a decoding loop, they cost one copy of the layer weights for the
  loop's duration, and spare every step the per-layer slicing of the stack, which copies each
  layer's weights again on every step (measured on a CPU: 95 -> 73 ms per SmolLM2-135M step of
  16 rows, `benchmarks/rollout.py`).
  """
  layers = params["layers"]
  num_layers = jax.tree.leaves(layers)[0].shape[0]
  return tuple(jax.tree.map(lambda x, i=i: x[i], layers) for i in range(num_layers))


def split_cache(cache: KVCache) -> Tuple[KVCache, ...]:
  """A stacked cache ``[L, B, KV, S, Dh]`` as ``L`` per-layer caches ``[B, KV, S, Dh]``."""
  return tuple(KVCache(k=cache.k[i], v=cache.v[i]) for i in range(cache.k.shape[0]))


def stack_cache(caches: Tuple[KVCache, ...]) -> KVCache:
  """The inverse of `split_cache`."""
  return KVCache(k=jnp.stack([c.k for c in caches]), v=jnp.stack([c.v for c in caches]))


def apply_unrolled(params: Params, layers: Tuple[Params, ...], config: ModelConfig,
                   tokens: Array, positions: Array, attention_mask: Array,
                   caches: Tuple[KVCache, ...], cache_index: Array
                   ) -> Tuple[Array, Tuple[KVCache, ...]]:
  """`Transformer` with a cache and ``return_hidden=True``, its layer loop unrolled.

  The same computation, layer by layer (the tests check equal hidden states and caches), on
  per-layer params (`unstack_layers`) and per-layer caches (`split_cache`), so that a decoding
  loop's carry holds each layer's cache as its own buffer: a step then updates them in place and
  the attention reads them where they are. The compiled step grows with depth, which is why the
  trainer's forward passes keep the layer scan.

  Args:
    params: the model's ``params`` (its ``embed``, ``final_norm`` and head are read here).
    layers: `unstack_layers` of the same params.
    config: the model config.
    tokens, positions: ``[B, T]`` int.
    attention_mask: ``[B, S]`` bool over the cache slots, as for `Transformer` with a cache.
    caches: ``L`` per-layer caches ``[B, KV, S, Dh]``.
    cache_index: the first slot the ``T`` new keys/values go to (may be traced).

  Returns:
    ``(hidden [B, T, D] final-normed, compute dtype; updated per-layer caches)``.
  """
  cfg = config
  if len(layers) != cfg.num_layers or len(caches) != cfg.num_layers:
    raise ValueError(f"{len(layers)} layer params and {len(caches)} caches for a model of "
                     f"{cfg.num_layers} layers")
  _check_inputs(tokens, positions, attention_mask,
                KVCache(k=caches[0].k[None], v=caches[0].v[None]), cache_index)
  cache_index = jnp.asarray(cache_index, jnp.int32)
  allowed = _allowed(attention_mask, tokens.shape[1], cache_index)
  cos, sin = _rope_tables(cfg, positions)
  # Gather, then cast: the rows read, not the whole table (the values nn.Embed gives).
  x = jnp.take(params["embed"]["embedding"], tokens, axis=0).astype(cfg.compute_dtype)
  block = DecoderBlock(cfg)
  new_caches = []
  for layer_params, cache in zip(layers, caches):
    (x, (k, v), _), _ = block.apply({"params": layer_params}, (x, (cache.k, cache.v), None),
                                    cos, sin, allowed, cache_index, None)
    new_caches.append(KVCache(k=k, v=v))
  norm = RMSNorm(cfg.rms_norm_eps, cfg.compute_dtype, cfg.params_dtype)
  return norm.apply({"params": params["final_norm"]}, x), tuple(new_caches)


class _LMHead(nn.Module):
  """Holds the untied LM head ``kernel [D, V]``."""

  config: ModelConfig

  @nn.compact
  def __call__(self) -> Array:
    cfg = self.config
    return self.param("kernel", nn.initializers.normal(_INIT_STD),
                      (cfg.hidden_size, cfg.vocab_size), cfg.params_dtype)


def unembed(params: Params, config: ModelConfig, hidden: Array) -> Array:
  """LM head: ``hidden [..., D] -> logits [..., V]`` float32 (tied or untied, as configured).

  Args:
    params: the model's ``params`` collection (as returned by ``init_params``/``load_hf``).
    config: the model config.
    hidden: final-normed hidden states, e.g. from ``Transformer(...)(..., return_hidden=True)``.
  """
  if hidden.shape[-1] != config.hidden_size:
    raise ValueError(f"hidden last dim {hidden.shape[-1]} != hidden_size {config.hidden_size}")
  if config.tie_word_embeddings:
    weight = params["embed"]["embedding"]
  else:
    weight = params["lm_head"]["kernel"]
  return _project_logits(hidden, weight, config.tie_word_embeddings, config.compute_dtype)


def init_params(config: ModelConfig, rng: Array,
                mesh: Optional[jax.sharding.Mesh] = None) -> Params:
  """Random parameters (normal(0.02) matrices, unit norm scales, zero biases), ``param_dtype``.

  Args:
    config: the model config.
    rng: a PRNG key.
    mesh: if given, parameters are created directly in their shards (``partition`` rules), so
      a model too large for one device never exists unsharded. The values do not depend on the
      mesh.

  Without a mesh it compiles once per config, so repeated calls are cheap (the tests rely on it).
  """
  if mesh is None:
    return _init_params(config, rng)
  shapes = jax.eval_shape(_init_params, config, rng)
  shardings = partition.param_shardings(shapes, mesh)
  return jax.jit(_init_params, static_argnums=0, out_shardings=shardings)(config, rng)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(config: ModelConfig, rng: Array) -> Params:
  tokens = jnp.zeros((1, 1), jnp.int32)
  mask = jnp.ones((1, 1), jnp.bool_)
  return Transformer(config).init(rng, tokens, tokens, mask)["params"]
