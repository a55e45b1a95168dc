"""The jit-compiled generate loop: one prefill pass, then a `lax.while_loop` over a static KV cache.

Layout. ``P`` left-padded prompts ``[P, S]`` are expanded to ``B = P * G`` sequences, prompt-major
(sequence ``b`` samples prompt ``b // G``). The KV cache has ``S + N`` slots (``N`` =
``max_new_tokens``): slots ``[0, S)`` hold the prompt (pads included, masked out), and the ``t``-th
completion token goes to slot ``S + t``. RoPE positions count real tokens only: a prompt with ``n``
real tokens has positions ``0 .. n-1`` and its ``t``-th completion token has position ``n + t``, so
left padding changes nothing but the memory used.

Compilation. Everything from prefill to the last decode step is one `jax.jit` program, compiled
once per (``P``, ``S``, ``G``, ``N``) shape and static sampling settings (processor, pad id,
entropy, force-full-length); prompt contents, the PRNG key, the params' values and the stop ids
(padded to a multiple of 8) never retrace. The prefill runs on the ``P`` distinct prompts and its
cache is repeated ``G`` times, so a group costs one prefill. The decode loop makes no host sync
besides the loop predicate and exits as soon as every sequence has stopped. Its step runs the
layers unrolled (`rlvr_jax.models.transformer.apply_unrolled`) on per-layer weights, sliced from
the stack once per call, and per-layer caches ``[B, KV, S + N, Dh]`` in the loop carry, which it
updates in place; sampling is the Gumbel-max draw of `processors.categorical`.

Sharding (``mesh=``, rules in `rlvr_jax.rollout.sharding`). The ``P`` prompts are split over the
mesh's ``("data", "fsdp")`` devices, so each device prefills its own prompts and the prompt-major
repetition keeps a group's ``G`` samples on that device: the rows that the training batch (split
the same way over ``P * G`` rows) puts there. When the batch devices do not divide ``P``, the
prompts and their prefill are replicated and the ``P * G`` rows are split after the repetition
(or stay replicated when the devices do not divide those either). Params keep the training
partition rules; the KV cache is split by rows and KV heads (``tensor``); sharding constraints
inside the program pin the cache, logits and outputs, which stay on the devices. The sampling
noise is a function of the key and the global ``[B, V]`` shape only (JAX's random bits do not
depend on sharding; with ``jax_threefry_partitionable``, each device draws only its block), so
a mesh changes no token.

Semantics of the returned `rlvr_jax.types.Rollout`:

* ``tokens[b, t]``: the ``t``-th sampled token; after a sequence's stop token, ``pad_token_id``.
* ``logprobs[b, t] = log softmax(processor(logits_t))[tokens[b, t]]``: the log-prob under exactly
  the distribution sampled from (temperature-scaled, then truncated by top-k/top-p/min-p);
  0 on padding. With the plain temperature chain this equals what `rlvr_jax.rollout.scoring`
  recomputes teacher-forced at the same temperature.
* ``lengths[b]``: completion tokens including the stop token; ``truncated[b]``: no stop token in
  ``N`` tokens.
* ``entropy[b, t]`` (optional): ``-sum_v q log q`` of that same processed distribution, 0 on
  padding.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from rlvr_jax import types
from rlvr_jax.models import transformer as transformer_lib
from rlvr_jax.rollout import processors as processors_lib
from rlvr_jax.rollout import sharding as sharding_lib

Array = jax.Array

_NUM_TRACES = 0


def num_traces() -> int:
  """How many times the generate program has been traced (compiled) in this process.

  Tests and benchmarks read it to check that a new batch of the same shape does not recompile.
  """
  return _NUM_TRACES


def pad_prompts(
    prompts: Sequence[Sequence[int]],
    bucket_sizes: Sequence[int],
    pad_id: int,
) -> Tuple[np.ndarray, np.ndarray]:
  """Left-pads token-id lists to the smallest bucket that holds the longest one (host side).

  Args:
    prompts: ``P`` non-empty lists of token ids.
    bucket_sizes: allowed prompt lengths ``S``; padding to few buckets bounds the number of
      compilations of `generate`.
    pad_id: id written into padding slots (they are masked, so any valid id works).

  Returns:
    ``(tokens [P, S] int32, mask [P, S] bool)``, real tokens right-aligned, ``mask`` True on them.

  Raises:
    ValueError: no prompts, an empty prompt, or a prompt longer than the largest bucket.
  """
  if not prompts:
    raise ValueError("pad_prompts needs at least one prompt")
  lengths = [len(p) for p in prompts]
  if min(lengths) == 0:
    raise ValueError(f"prompt {lengths.index(0)} is empty")
  fitting = sorted(s for s in bucket_sizes if s >= max(lengths))
  if not fitting:
    raise ValueError(
        f"longest prompt has {max(lengths)} tokens; largest bucket is {max(bucket_sizes)}")
  size = fitting[0]
  tokens = np.full((len(prompts), size), pad_id, np.int32)
  mask = np.zeros((len(prompts), size), bool)
  for i, p in enumerate(prompts):
    tokens[i, size - len(p):] = np.asarray(p, np.int32)
    mask[i, size - len(p):] = True
  return tokens, mask


def _max_positions(config: Any) -> Optional[int]:
  return getattr(config, "max_position_embeddings", None)


def _validate(config, prompt_tokens, prompt_mask, num_samples, max_new_tokens) -> None:
  if max_new_tokens <= 0:
    raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
  if num_samples <= 0:
    raise ValueError(f"num_samples must be > 0, got {num_samples}")
  if prompt_tokens.ndim != 2 or prompt_tokens.shape != prompt_mask.shape:
    raise ValueError(
        f"prompt_tokens and prompt_mask must both be [P, S]; got {prompt_tokens.shape} and "
        f"{prompt_mask.shape}")
  if not jnp.issubdtype(prompt_tokens.dtype, jnp.integer):
    raise ValueError(f"prompt_tokens must be integers, got {prompt_tokens.dtype}")
  s = prompt_tokens.shape[1]
  limit = _max_positions(config)
  if limit is not None and s + max_new_tokens > limit:
    raise ValueError(
        f"prompt bucket ({s}) + max_new_tokens ({max_new_tokens}) = {s + max_new_tokens} exceeds "
        f"the model's max_position_embeddings ({limit})")
  if isinstance(prompt_mask, jax.core.Tracer) or (
      isinstance(prompt_mask, jax.Array) and not prompt_mask.is_fully_addressable):
    # Values unknown under an outer trace, or spread over other hosts; shapes were checked above.
    return
  mask = np.asarray(prompt_mask).astype(bool)
  empty = np.flatnonzero(~mask.any(axis=1))
  if empty.size:
    raise ValueError(f"prompt rows {empty.tolist()} have no real token (empty prompt)")
  # Left padding: once a row's real tokens start they continue to the end of the bucket, so the
  # last slot always holds the token the first completion token is predicted from.
  if np.any(mask[:, :-1] & ~mask[:, 1:]):
    raise ValueError("prompts must be left-padded: prompt_mask must be False...False True...True")


def _stop_id_array(stop_token_ids: Sequence[int]) -> np.ndarray:
  """Stop ids as an int32 array padded with -1 (never sampled) to a multiple of 8 (at least 8).

  They are a traced argument, not a static one, so that tasks with different stop sets of up to
  eight ids share one compilation.
  """
  ids = [int(i) for i in stop_token_ids]
  if any(i < 0 for i in ids):
    raise ValueError(f"stop token ids must be non-negative, got {ids}")
  size = max(8, -(-len(ids) // 8) * 8)
  return np.asarray(ids + [-1] * (size - len(ids)), np.int32)


def _sample(processor, rng, step, logits, return_entropy):
  """Samples one token per row from ``softmax(processor(logits))``; its log-prob and entropy."""
  processed = processor(logits.astype(jnp.float32))
  token = processors_lib.categorical(jax.random.fold_in(rng, step), processed)
  chosen = jnp.take_along_axis(processed, token[:, None], axis=-1)[:, 0]
  logprob = chosen - jax.nn.logsumexp(processed, axis=-1)
  entropy = processors_lib.log_softmax_and_entropy(processed)[1] if return_entropy else None
  return token, logprob, entropy


@functools.partial(
    jax.jit,
    static_argnames=("config", "num_samples", "max_new_tokens", "processor", "pad_token_id",
                     "return_entropy", "force_full_length", "mesh"))
def _generate(params, prompt_tokens, prompt_mask, rng, stop_ids, *, config, num_samples,
              max_new_tokens, processor, pad_token_id, return_entropy, force_full_length, mesh):
  global _NUM_TRACES
  _NUM_TRACES += 1
  num_prompts, s = prompt_tokens.shape
  g, n = num_samples, max_new_tokens
  b = num_prompts * g
  model = transformer_lib.Transformer(config)
  # With a mesh, every [rows, ...] array and the cache are pinned to the training layout
  # (rollout/sharding.py) where they are made, so XLA's propagation cannot replicate them.
  rows = functools.partial(sharding_lib.constrain_rows, mesh=mesh)
  kv = functools.partial(sharding_lib.constrain_cache, mesh=mesh)
  prompt_tokens, prompt_mask = rows((prompt_tokens.astype(jnp.int32), prompt_mask.astype(bool)))

  # Prefill the P distinct prompts once; slots [S, S+N) are marked valid in advance, which is
  # harmless because a query at slot i only sees slots <= i.
  cache_mask = jnp.concatenate([prompt_mask, jnp.ones((num_prompts, n), bool)], axis=1)
  positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1, dtype=jnp.int32) - 1, 0)
  cache = kv(transformer_lib.init_cache(config, num_prompts, s + n))
  hidden, cache = model.apply({"params": params}, prompt_tokens, positions, cache_mask,
                              cache=cache, cache_index=jnp.int32(0), return_hidden=True)
  # Only the last slot's logits are needed: never materialise [P, S, V]. Sampling sees whole
  # vocabulary rows (a vocabulary split over tensor is gathered here, [rows, V] per step).
  logits = sharding_lib.constrain_logits(
      transformer_lib.unembed(params, config, hidden[:, -1]), mesh)

  # Prompt-major repetition as broadcast + reshape (jnp.repeat lowers to a scatter and a cumsum
  # that the partitioner gathers): with the P prompts split, a group stays on its prompt's device.
  def repeat(x, axis):
    shape = x.shape[:axis + 1] + (g,) + x.shape[axis + 1:]
    out = jnp.broadcast_to(jnp.expand_dims(x, axis + 1), shape)
    return out.reshape(x.shape[:axis] + (x.shape[axis] * g,) + x.shape[axis + 1:])

  logits = rows(repeat(logits, 0))
  cache = jax.tree.map(lambda x: repeat(x, 1), cache)  # KVCache leaves: [L, B, KV, S, Dh].
  # The decode loop runs the layers unrolled on per-layer weights and caches
  # (`transformer.apply_unrolled`): no per-step slicing of the stacked weights or caches.
  caches = kv(transformer_lib.split_cache(cache))
  layers = transformer_lib.unstack_layers(params)
  cache_mask, prompt_lengths = rows((repeat(cache_mask, 0),
                                     repeat(prompt_mask.sum(axis=1, dtype=jnp.int32), 0)))

  def record(t, token, logprob, entropy, state):
    """Writes step t's sample for the sequences still running; updates lengths and stops."""
    tokens, logprobs, entropies, lengths, done = state
    active = ~done
    token = jnp.where(active, token, pad_token_id)
    put = lambda buf, x: jax.lax.dynamic_update_slice_in_dim(buf, x[:, None], t, axis=1)
    tokens = put(tokens, token)
    logprobs = put(logprobs, jnp.where(active, logprob, 0.0))
    if return_entropy:
      entropies = put(entropies, jnp.where(active, entropy, 0.0))
    lengths = jnp.where(active, t + 1, lengths)
    if not force_full_length:
      done = done | (active & jnp.any(token[:, None] == stop_ids[None, :], axis=-1))
    return token, rows((tokens, logprobs, entropies, lengths, done))

  outputs = rows((
      jnp.full((b, n), pad_token_id, jnp.int32),
      jnp.zeros((b, n), jnp.float32),
      jnp.zeros((b, n) if return_entropy else (b, 0), jnp.float32),
      jnp.zeros((b,), jnp.int32),
      jnp.zeros((b,), bool),
  ))
  token, logprob, entropy = _sample(processor, rng, 0, logits, return_entropy)
  token, outputs = record(0, token, logprob, entropy, outputs)

  def cond(carry):
    t, _, _, outputs = carry
    return (t < n) & ~jnp.all(outputs[-1])

  def body(carry):
    t, last, caches, outputs = carry
    # Feed token t-1 (slot S+t-1, position prompt_length+t-1) and sample token t.
    hidden, caches = transformer_lib.apply_unrolled(
        params, layers, config, last[:, None], (prompt_lengths + t - 1)[:, None], cache_mask,
        caches, s + t - 1)
    logits = sharding_lib.constrain_logits(
        transformer_lib.unembed(params, config, hidden[:, 0]), mesh)
    token, logprob, entropy = _sample(processor, rng, t, logits, return_entropy)
    token, outputs = record(t, token, logprob, entropy, outputs)
    return t + 1, token, kv(caches), outputs

  _, _, _, outputs = jax.lax.while_loop(cond, body, (jnp.int32(1), token, caches, outputs))
  tokens, logprobs, entropies, lengths, done = outputs
  return types.Rollout(
      prompt_tokens=rows(repeat(prompt_tokens, 0)),
      prompt_mask=rows(repeat(prompt_mask, 0)),
      tokens=tokens,
      logprobs=logprobs,
      lengths=lengths,
      truncated=~done,
      entropy=entropies if return_entropy else None,
  )


def generate(
    params: Any,
    config: Any,
    prompt_tokens: Array,
    prompt_mask: Array,
    rng: Array,
    *,
    num_samples: int = 1,
    max_new_tokens: int,
    processors: Optional[processors_lib.Processor] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    min_p: Optional[float] = None,
    stop_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    return_entropy: bool = False,
    force_full_length: bool = False,
    mesh: Optional[Mesh] = None,
) -> types.Rollout:
  """Samples ``num_samples`` completions per prompt with a KV-cached, jit-compiled decode loop.

  Each step samples ``y_t ~ softmax(processor(logits(x, y_<t)))`` and records
  ``log softmax(processor(logits))[y_t]``, where the processor is ``processors`` or, by default,
  ``default_chain(temperature, top_k, top_p, min_p)`` (temperature then truncations; temperature 0
  is greedy). Completions are prompt-major: rows ``i*G .. i*G+G-1`` continue prompt ``i``.

  Args:
    params: the model's ``params`` collection (`init_params` / `load_hf`), any sharding.
    config: the model's `ModelConfig` (hashable; a static argument).
    prompt_tokens: ``[P, S]`` integer prompt ids, left-padded.
    prompt_mask: ``[P, S]`` bool, True on real tokens; every row needs at least one.
    rng: PRNG key; the result is a deterministic function of it (step ``t`` uses
      ``fold_in(rng, t)``).
    num_samples: ``G``, completions per prompt.
    max_new_tokens: ``N`` > 0, the static length of the completion axis.
    processors: a hashable processor (see `rlvr_jax.rollout.processors`); exclusive with the
      temperature/top_k/top_p/min_p shortcuts.
    temperature, top_k, top_p, min_p: shortcuts for `processors.default_chain`.
    stop_token_ids: a sequence stops after emitting any of these (the stop token is kept and
      counted in ``lengths``).
    pad_token_id: written after a sequence's end.
    return_entropy: also return per-token entropy of the processed distribution.
    force_full_length: ignore stop tokens and always generate ``N`` tokens (benchmarks); every
      sequence is then reported as truncated.
    mesh: a ``("data", "fsdp", "tensor")`` mesh to generate on (`rlvr_jax.rollout.sharding`):
      prompts and samples split over ``("data", "fsdp")``, params by the training partition
      rules, the KV cache by rows and KV heads. Host prompts are placed here (with several
      processes, each uploads only its own rows, so every process must pass the same prompts);
      the results are the same as without a mesh, token for token.

  Returns:
    `rlvr_jax.types.Rollout` with ``B = P * G`` rows and ``T = N``; with a mesh, its arrays stay
    on the devices, rows split as ``sharding.row_spec`` says.

  Raises:
    ValueError: ``max_new_tokens <= 0``, ``num_samples <= 0``, an empty prompt row, a prompt
      that is not left-padded, ``S + N`` beyond the model's ``max_position_embeddings``, or
      conflicting sampling arguments.
  """
  _validate(config, prompt_tokens, prompt_mask, num_samples, max_new_tokens)
  if processors is None:
    processors = processors_lib.default_chain(temperature, top_k, top_p, min_p)
  elif temperature != 1.0 or any(x is not None for x in (top_k, top_p, min_p)):
    raise ValueError("pass either processors or temperature/top_k/top_p/min_p, not both")
  if mesh is None:
    prompt_tokens, prompt_mask = jnp.asarray(prompt_tokens), jnp.asarray(prompt_mask)
  else:
    params = sharding_lib.shard_params(params, mesh)
    prompt_tokens = sharding_lib.shard_rows(prompt_tokens, mesh)
    prompt_mask = sharding_lib.shard_rows(prompt_mask, mesh)
  return _generate(
      params, prompt_tokens, prompt_mask, rng, _stop_id_array(stop_token_ids), config=config,
      num_samples=int(num_samples), max_new_tokens=int(max_new_tokens), processor=processors,
      pad_token_id=int(pad_token_id), return_entropy=bool(return_entropy),
      force_full_length=bool(force_full_length), mesh=mesh)
