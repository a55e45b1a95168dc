"""Teacher-forced log-probs (and entropy) of given completions: the trainer's side of the rollout.

For a prompt ``x`` and completion ``y`` the model reads ``[x; y]`` in one forward pass (no cache)
and returns, for every completion position ``t``,

    logprobs[b, t] = log softmax(logits(x, y_<t) / temperature)[y_t]
    entropy[b, t]  = -sum_v q_v log q_v,   q = softmax(logits(x, y_<t) / temperature)

both 0 where ``completion_mask`` is False. Positions are the RoPE positions the rollout used
(real tokens counted from 0, padding skipped), so with the same temperature and no truncation rule
these values match `rlvr_jax.rollout.generate`'s ``Rollout.logprobs`` up to float rounding.

The result is differentiable w.r.t. ``params``. With ``chunk_size`` the model returns its final
hidden states and the vocabulary projection, log-softmax and entropy run over ``chunk_size``
completion positions at a time inside a `lax.map`, rematerialised when there is more than one
chunk, so neither the forward nor the backward pass holds the full ``[B, T, V]`` float32 logits
(only ``[B, chunk_size, V]``).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from rlvr_jax.models import transformer as transformer_lib

Array = jax.Array


def _logprobs_entropy(logits: Array, targets: Array, temperature: float,
                      return_entropy: bool) -> Tuple[Array, Optional[Array]]:
  """Per-position log-prob of ``targets`` and entropy under ``softmax(logits / temperature)``."""
  logits = logits.astype(jnp.float32)
  if temperature != 1.0:
    logits = logits / jnp.float32(temperature)
  logz = jax.nn.logsumexp(logits, axis=-1)
  chosen = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  logprobs = chosen - logz
  if not return_entropy:
    return logprobs, None
  # H = logZ - E_q[z], which needs no [.., V] log-prob array beyond the softmax itself.
  q = jax.nn.softmax(logits, axis=-1)
  entropy = logz - jnp.sum(q * logits, axis=-1)
  return logprobs, entropy


def token_logprobs(
    params: Any,
    config: Any,
    prompt_tokens: Array,
    prompt_mask: Array,
    completion_tokens: Array,
    completion_mask: Array,
    *,
    temperature: float = 1.0,
    chunk_size: Optional[int] = None,
    return_entropy: bool = False,
) -> Tuple[Array, Optional[Array]]:
  """Teacher-forced log-probs of ``completion_tokens`` given left-padded prompts.

  Args:
    params: the model's ``params`` collection (`init_params` / `load_hf`).
    config: the model's `ModelConfig`.
    prompt_tokens: ``[B, S]`` int, left-padded (as in `rlvr_jax.types.Rollout.prompt_tokens`).
    prompt_mask: ``[B, S]`` bool, True on real prompt tokens.
    completion_tokens: ``[B, T]`` int, completion at the left of the axis.
    completion_mask: ``[B, T]`` bool/float, True (1) on real completion tokens, a prefix of each
      row (padding only at the right).
    temperature: divides the logits before the softmax (> 0); use the rollout's temperature for
      the behaviour log-probs.
    chunk_size: if set, compute in chunks of this many completion positions from hidden states
      (memory ``O(B * chunk_size * V)`` instead of ``O(B * T * V)``, forward and backward).
    return_entropy: also return the entropy of ``softmax(logits / temperature)``.

  Returns:
    ``(logprobs [B, T] float32, entropy [B, T] float32 or None)``, 0 on masked positions.

  Raises:
    ValueError: on mismatched shapes, non-positive temperature or chunk_size.
  """
  if prompt_tokens.ndim != 2 or prompt_tokens.shape != prompt_mask.shape:
    raise ValueError(f"prompt tokens/mask must be [B, S]; got {prompt_tokens.shape}, "
                     f"{prompt_mask.shape}")
  if (completion_tokens.ndim != 2 or completion_tokens.shape != completion_mask.shape
      or completion_tokens.shape[0] != prompt_tokens.shape[0]):
    raise ValueError(f"completion tokens/mask must be [B, T] with the prompts' B; got "
                     f"{completion_tokens.shape}, {completion_mask.shape}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if chunk_size is not None and chunk_size <= 0:
    raise ValueError(f"chunk_size must be > 0, got {chunk_size}")

  b, s = prompt_tokens.shape
  t = completion_tokens.shape[1]
  completion_tokens = completion_tokens.astype(jnp.int32)
  completion_mask = completion_mask.astype(bool)
  tokens = jnp.concatenate([prompt_tokens.astype(jnp.int32), completion_tokens], axis=1)
  mask = jnp.concatenate([prompt_mask.astype(bool), completion_mask], axis=1)
  positions = jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)
  model = transformer_lib.Transformer(config)
  # The state after reading slot S-1+i predicts completion token i.
  predict = slice(s - 1, s + t - 1)

  if chunk_size is None:
    logits, _ = model.apply({"params": params}, tokens, positions, mask)
    logprobs, entropy = _logprobs_entropy(logits[:, predict], completion_tokens, temperature,
                                          return_entropy)
  else:
    hidden, _ = model.apply({"params": params}, tokens, positions, mask, return_hidden=True)
    hidden = hidden[:, predict]
    # A chunk wider than the completion would only project padding onto the vocabulary.
    chunk_size = min(chunk_size, t)
    num_chunks = -(-t // chunk_size)
    padded = num_chunks * chunk_size
    # [B, T, ...] -> [num_chunks, B, chunk, ...]; padded positions are dropped afterwards.
    to_chunks = lambda x: jnp.moveaxis(
        jnp.pad(x, [(0, 0), (0, padded - t)] + [(0, 0)] * (x.ndim - 2)).reshape(
            (b, num_chunks, chunk_size) + x.shape[2:]), 1, 0)

    def one_chunk(args):
      h, y = args
      logits = transformer_lib.unembed(params, config, h)
      lp, ent = _logprobs_entropy(logits, y, temperature, return_entropy)
      return lp, (ent if return_entropy else jnp.zeros_like(lp))

    # Rematerialised, so that the backward pass holds one chunk's logits at a time, not all of
    # them. A single chunk gains nothing from it (the backward starts at the head, so its logits
    # are the first thing it consumes) and would pay the head's forward twice.
    if num_chunks > 1:
      one_chunk = jax.checkpoint(one_chunk)
    lp, ent = jax.lax.map(one_chunk, (to_chunks(hidden), to_chunks(completion_tokens)))
    from_chunks = lambda x: jnp.moveaxis(x, 0, 1).reshape(b, padded)[:, :t]
    logprobs = from_chunks(lp)
    entropy = from_chunks(ent) if return_entropy else None

  logprobs = jnp.where(completion_mask, logprobs, 0.0)
  if entropy is not None:
    entropy = jnp.where(completion_mask, entropy, 0.0)
  return logprobs, entropy
