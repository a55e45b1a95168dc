"""Continuous batching inside one jit-compiled call: a fixed pool of decode slots, refilled as
sequences stop, until all ``P * G`` (prompt, sample) rows are done.

Why. The static engine (`rlvr_jax.rollout.generate`) decodes all ``B = P * G`` rows together until
the longest stops, so with the long-tailed response lengths of RL most rows sit finished for most
of the loop, and its KV cache is ``B x (S + N)``. Here the cache holds ``K = num_slots`` sequences;
a slot whose sequence stops takes the next pending row at the next step, so the device decodes
``K`` live sequences per step for as long as rows are pending (the scheme of Orca, Yu et al.
OSDI 2022, and of vLLM/SGLang, here as a ``lax.while_loop`` with static shapes).

Layout and memory.

* Slot cache, one ``[K, KV, S + N, Dh]`` per layer (``S`` = prompt bucket, ``N`` =
  ``max_new_tokens``; the decode step runs the layers unrolled,
  `rlvr_jax.models.transformer.apply_unrolled`): a row
  in slot ``j`` keeps its prompt in columns ``[0, S)`` (left-padded, pads masked) and its ``t``-th
  completion token's input at column ``S - 1 + t``; the last column ``S + N - 1`` is a scratch
  column (below).
* Prompt ring ``[L, R, KV, S, Dh]`` (``R = prefill_chunk`` prompts): prompts are prefilled ``R``
  at a time, in order, each exactly once whatever ``G`` is; a row's slot gets a copy of its prompt's
  keys/values when the row starts. Rows start in group-major order, so once a row of prompt
  ``p`` starts, no row of a prompt before ``p`` is pending, and the ring only ever holds the
  chunk of the next rows to start.
* Outputs ``[B, N]`` (tokens, log-probs, optional entropy) are written by row index, so the result
  has the static engine's group-major layout whatever slot served a row.

One loop iteration: (1) every free slot takes the next pending row (its prompt's chunk is
prefilled first if the ring holds another chunk); a new row's first step feeds the last prompt
token, so its first completion token is sampled by the decode step like every other token; (2)
one decode step runs the model on all ``K`` slots with ``T = 1``; (3) rows that emitted a stop
token, reached ``N`` tokens or their ``stop_lengths`` free their slot. The loop ends when no row is
pending or running. Slots that are free at a step still run through the model (static shapes);
their results are discarded.

Per-slot cache columns with an unchanged model. `rlvr_jax.models.transformer.Transformer` writes
a step's keys/values at one ``cache_index`` shared by the batch and lets a query see columns
``<= cache_index``. Each step therefore writes at the scratch column (the last one, so every
column is visible and the per-slot ``attention_mask`` alone decides what a slot attends to) and
then moves each slot's new keys/values to that slot's own column ``S - 1 + t`` (one
``[K, KV, Dh]`` scatter per layer and step). The model code is the one the static engine and the
trainer run, so LoRA adapters, quantised bases and every architecture option apply unchanged.

Determinism, independent of scheduling. Completion token ``t`` of row ``r`` is drawn with the key
``fold_in(fold_in(rng, r), t)`` (`row_keys`, `sample_rows`), from logits that depend only on row
``r``'s own tokens. The result is thus a function of the key alone, not of ``num_slots``,
``prefill_chunk`` or which slot served a row (up to float rounding in the logits), and row ``r``
equals the static engine run on prompt ``r // G`` alone with ``G = 1`` and key
``fold_in(rng, r)`` (whose step ``t`` uses ``fold_in(fold_in(rng, r), t)`` on a one-row batch).
The tests check both token for token. The static engine itself draws a whole batch from
``fold_in(rng, t)``, so the two engines give different samples of the same distributions for
the same key.

On a mesh (``mesh=``): the prompts are split over the ``("data", "fsdp")`` axes
(`rlvr_jax.rollout.sharding`) and each row shard runs its own engine (``shard_map``, manual over
the batch axes) on its rows, which keep their global row indices, hence their keys: the result
equals the unsharded call. ``tensor`` stays an automatic axis inside a shard, so the decode step is
tensor-parallel with the params' training split.

Log-probs and entropy are those of `rlvr_jax.rollout.generate` (the processed distribution
sampled from), and so are ``lengths``, ``truncated`` and padding. Compilation: one program per
(``P``, ``S``, ``G``, ``N``, ``K``, ``R``) and static sampling settings; prompt contents, the key,
params values, stop ids and ``stop_lengths`` never retrace (`num_traces`).

Costs. Each decode step reads the whole slot cache (masked columns included), like the static
engine's; it saves over the static engine when rows outnumber slots and lengths vary, because no
step is spent on finished rows. A row costs one extra decode step (its last prompt token is fed
through the decode step rather than taken from the prefill) and one copy of its prompt's
keys/values into its slot.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec
import numpy as np

from rlvr_jax import types
from rlvr_jax.models import transformer as transformer_lib
from rlvr_jax.rollout import generate as static_lib
from rlvr_jax.rollout import processors as processors_lib
from rlvr_jax.rollout import sharding

Array = jax.Array

_NUM_TRACES = 0


def num_traces() -> int:
  """How many times the continuous-batching program has been traced (compiled) in this process."""
  return _NUM_TRACES


class EngineStats(NamedTuple):
  """Counters of one continuous-batching call (int32 scalars).

  Attributes:
    decode_steps: iterations of the decode loop; each runs the model once on all ``K`` slots, so
      ``sum(lengths) / (decode_steps * K)`` is the fraction of slot-steps that produced a token.
    prefilled_prompts: prompts run through the prefill; ``P``, each prompt once whatever ``G``.
    prefill_calls: prefill passes of ``prefill_chunk`` prompts each.
  """

  decode_steps: Array
  prefilled_prompts: Array
  prefill_calls: Array


def row_keys(rng: Array, rows: Array, steps: Array) -> Array:
  """Per-row sampling keys ``fold_in(fold_in(rng, rows[i]), steps[i])``, one per entry of ``rows``.

  Keying each token by (row, step) rather than drawing a batch from one key makes a row's sample
  independent of the batch it was decoded in: of the slot, of the other rows, of the schedule.
  """
  return jax.vmap(lambda r, t: jax.random.fold_in(jax.random.fold_in(rng, r), t))(rows, steps)


def sample_rows(processor: processors_lib.Processor, keys: Array, logits: Array,
                return_entropy: bool) -> Tuple[Array, Array, Optional[Array]]:
  """One token per row from ``softmax(processor(logits))``, row ``i`` drawn with ``keys[i]``.

  Args:
    processor: a logits processor (`rlvr_jax.rollout.processors`), applied to the ``[K, V]`` batch.
    keys: ``[K]`` PRNG keys (`row_keys`).
    logits: ``[K, V]`` next-token logits (cast to float32).
    return_entropy: also return ``-sum_v q_v log q_v`` of the processed distribution.

  Returns:
    ``(token [K] int32, logprob [K] float32, entropy [K] float32 or None)`` with
    ``logprob = log softmax(processor(logits))[token]``, the log-prob under exactly the
    distribution sampled from. A row drawn here equals ``jax.random.categorical(keys[i],
    processed[i:i + 1])``, the static engine's draw on a one-row batch.
  """
  processed = processor(logits.astype(jnp.float32))
  token = jax.vmap(processors_lib.categorical)(keys, processed)
  chosen = jnp.take_along_axis(processed, token[:, None], axis=-1)[:, 0]
  logprob = chosen - jax.nn.logsumexp(processed, axis=-1)
  entropy = processors_lib.log_softmax_and_entropy(processed)[1] if return_entropy else None
  return token, logprob, entropy


def default_prefill_chunk(num_prompts: int, num_samples: int, num_slots: int) -> int:
  """Prompts per prefill pass when not given: enough to fill every slot at the start,
  ``min(P, ceil(K / G))``, so the first step needs one prefill and the ring stays ``~K / G``
  prompts."""
  return max(1, min(num_prompts, -(-num_slots // num_samples)))


def _engine(params, prompt_tokens, prompt_mask, rng, stop_ids, stop_lengths, row_offset, *,
            config, num_samples, max_new_tokens, processor, pad_token_id, return_entropy,
            force_full_length, num_slots, prefill_chunk):
  """The engine on ``P`` prompts whose first row is row ``row_offset`` of the whole batch."""
  num_prompts, s = prompt_tokens.shape
  g, n, k, r = num_samples, max_new_tokens, num_slots, prefill_chunk
  b = num_prompts * g
  m = s + n  # Slot columns; column m - 1 is the scratch column.
  model = transformer_lib.Transformer(config)
  layers = transformer_lib.unstack_layers(params)
  prompt_tokens = prompt_tokens.astype(jnp.int32)
  prompt_mask = prompt_mask.astype(bool)
  prompt_lengths = prompt_mask.sum(axis=1, dtype=jnp.int32)

  # Every prefill pass has R prompts: the last chunk is padded with copies of the last prompt,
  # whose keys/values no row reads.
  pad = -(-num_prompts // r) * r - num_prompts
  chunk_tokens = jnp.concatenate([prompt_tokens, jnp.repeat(prompt_tokens[-1:], pad, axis=0)])
  chunk_mask = jnp.concatenate([prompt_mask, jnp.repeat(prompt_mask[-1:], pad, axis=0)])

  def prefill(chunk):
    tokens = jax.lax.dynamic_slice_in_dim(chunk_tokens, chunk * r, r)
    mask = jax.lax.dynamic_slice_in_dim(chunk_mask, chunk * r, r)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1, dtype=jnp.int32) - 1, 0)
    _, cache = model.apply({"params": params}, tokens, positions, mask,
                           cache=transformer_lib.init_cache(config, r, s),
                           cache_index=jnp.int32(0), return_hidden=True)
    return cache

  def start_one(st):
    """The next pending row takes the first free slot; its prompt's chunk is in the ring."""
    j = jnp.argmin(st["active"]).astype(jnp.int32)
    row = st["next_row"]
    p = row // g
    i = p - st["ring_chunk"] * r
    zero = jnp.int32(0)

    def put(slot_buf, ring_buf):  # [K, KV, M, Dh] <- prompt i's [KV, S, Dh] at columns [0, S).
      piece = jax.lax.dynamic_index_in_dim(ring_buf, i, axis=0, keepdims=True)
      return jax.lax.dynamic_update_slice(slot_buf, piece, (j, zero, zero, zero))

    ring = st["ring"]
    caches = tuple(
        transformer_lib.KVCache(k=put(c.k, ring.k[layer]), v=put(c.v, ring.v[layer]))
        for layer, c in enumerate(st["cache"]))
    return dict(
        st,
        cache=caches,
        row=st["row"].at[j].set(row),
        t=st["t"].at[j].set(0),
        active=st["active"].at[j].set(True),
        last=st["last"].at[j].set(prompt_tokens[p, s - 1]),
        prompt_length=st["prompt_length"].at[j].set(prompt_lengths[p]),
        prompt_mask=st["prompt_mask"].at[j].set(prompt_mask[p]),
        next_row=row + 1)

  def fill_from_next_chunk(st):
    """Prefills the chunk of the next pending row if the ring holds another one, then starts
    rows of that chunk while slots are free."""
    chunk = st["next_row"] // g // r
    fresh = chunk != st["ring_chunk"]
    ring = jax.lax.cond(fresh, lambda: prefill(chunk), lambda: st["ring"])
    real = jnp.minimum(r, num_prompts - chunk * r)
    st = dict(st, ring=ring, ring_chunk=chunk,
              prefilled=st["prefilled"] + jnp.where(fresh, real, 0),
              prefill_calls=st["prefill_calls"] + fresh.astype(jnp.int32))
    end = jnp.minimum((chunk + 1) * r * g, b)
    return jax.lax.while_loop(
        lambda st: (st["next_row"] < end) & ~jnp.all(st["active"]), start_one, st)

  def decode(st):
    """One model step on every slot; records the active slots' samples and retires rows."""
    t, active, row = st["t"], st["active"], st["row"]
    column = s - 1 + t  # Where this step's input token's keys/values belong.
    k_col = jnp.arange(m)[None, :]
    # A slot attends to its prompt (bar the last token, fed at t = 0), its earlier inputs, and the
    # scratch column holding this step's input.
    prompt_part = jnp.pad(st["prompt_mask"][:, :s - 1], ((0, 0), (0, m - s + 1)))
    mask = (prompt_part | ((k_col >= s - 1) & (k_col < column[:, None]))) | (k_col == m - 1)
    hidden, caches = transformer_lib.apply_unrolled(
        params, layers, config, st["last"][:, None], (st["prompt_length"] - 1 + t)[:, None],
        mask, st["cache"], jnp.int32(m - 1))
    slots = jnp.arange(k)
    move = lambda x: x.at[slots, :, column].set(x[:, :, m - 1])  # [K, KV, M, Dh] per layer.
    cache = tuple(transformer_lib.KVCache(k=move(c.k), v=move(c.v)) for c in caches)
    logits = transformer_lib.unembed(params, config, hidden[:, 0])
    token, logprob, entropy = sample_rows(processor, row_keys(rng, row_offset + row, t), logits,
                                          return_entropy)

    out_row = jnp.where(active, row, b)  # Row b is out of bounds: free slots write nothing.
    put = lambda buf, x: buf.at[out_row, t].set(x, mode="drop")
    outputs = dict(tokens=put(st["tokens"], token), logprobs=put(st["logprobs"], logprob))
    if return_entropy:
      outputs["entropy"] = put(st["entropy"], entropy)
    stopped = jnp.any(token[:, None] == stop_ids[None, :], axis=-1)
    if force_full_length:
      stopped = jnp.zeros_like(stopped)
    finished = active & (stopped | (t + 1 >= jnp.minimum(stop_lengths[row], n)))
    done_row = jnp.where(finished, row, b)
    return dict(
        st, **outputs, cache=cache,
        lengths=st["lengths"].at[done_row].set(t + 1, mode="drop"),
        truncated=st["truncated"].at[done_row].set(~stopped & (t + 1 >= n), mode="drop"),
        t=jnp.where(active, t + 1, t),
        active=active & ~finished,
        last=jnp.where(active, token, st["last"]),
        steps=st["steps"] + 1)

  def pending_or_running(st):
    return (st["next_row"] < b) | jnp.any(st["active"])

  def step(st):
    st = jax.lax.while_loop(lambda st: (st["next_row"] < b) & ~jnp.all(st["active"]),
                            fill_from_next_chunk, st)
    return decode(st)

  zeros_k = jnp.zeros((k,), jnp.int32)
  state = dict(
      cache=transformer_lib.split_cache(transformer_lib.init_cache(config, k, m)),
      ring=transformer_lib.init_cache(config, r, s),
      ring_chunk=jnp.int32(-1), prefilled=jnp.int32(0), prefill_calls=jnp.int32(0),
      next_row=jnp.int32(0), steps=jnp.int32(0),
      row=zeros_k, t=zeros_k, active=jnp.zeros((k,), bool), last=zeros_k,
      prompt_length=zeros_k, prompt_mask=jnp.zeros((k, s), bool),
      tokens=jnp.full((b, n), pad_token_id, jnp.int32),
      logprobs=jnp.zeros((b, n), jnp.float32),
      lengths=jnp.zeros((b,), jnp.int32),
      truncated=jnp.zeros((b,), bool))
  if return_entropy:
    state["entropy"] = jnp.zeros((b, n), jnp.float32)
  state = jax.lax.while_loop(pending_or_running, step, state)

  repeat = lambda x: jnp.repeat(x, g, axis=0, total_repeat_length=b)
  rollout = types.Rollout(
      prompt_tokens=repeat(prompt_tokens),
      prompt_mask=repeat(prompt_mask),
      tokens=state["tokens"],
      logprobs=state["logprobs"],
      lengths=state["lengths"],
      truncated=state["truncated"],
      entropy=state["entropy"] if return_entropy else None)
  return rollout, EngineStats(state["steps"], state["prefilled"], state["prefill_calls"])


@functools.partial(
    jax.jit,
    static_argnames=("config", "num_samples", "max_new_tokens", "processor", "pad_token_id",
                     "return_entropy", "force_full_length", "num_slots", "prefill_chunk", "mesh"))
def _generate(params, prompt_tokens, prompt_mask, rng, stop_ids, stop_lengths, *, mesh,
              **settings):
  """The engine on one device group, or with ``mesh`` one engine per row shard (``shard_map``
  over the batch axes; ``num_slots``/``prefill_chunk`` are then per shard). Stats per shard
  ``[shards]``."""
  global _NUM_TRACES
  _NUM_TRACES += 1
  if mesh is None:
    rollout, stats = _engine(params, prompt_tokens, prompt_mask, rng, stop_ids, stop_lengths,
                             jnp.int32(0), **settings)
    return rollout, jax.tree.map(lambda x: x[None], stats)
  axes = sharding.batch_axes(mesh)
  shard_rows = prompt_tokens.shape[0] // sharding.num_row_shards(mesh) * settings["num_samples"]

  def shard(params, prompt_tokens, prompt_mask, rng, stop_ids, stop_lengths):
    offset = jax.lax.axis_index(axes).astype(jnp.int32) * shard_rows
    rollout, stats = _engine(params, prompt_tokens, prompt_mask, rng, stop_ids, stop_lengths,
                             offset, **settings)
    return rollout, jax.tree.map(lambda x: x[None], stats)

  rows, whole = PartitionSpec(axes), PartitionSpec()
  # Manual over the batch axes only: each row shard runs its own schedule, while "tensor" stays
  # an automatic axis inside, so params keep their tensor-parallel split (heads, F and V over
  # "tensor"; XLA adds the collectives) and only their fsdp shards are gathered, once per call.
  return jax.shard_map(shard, mesh=mesh, in_specs=(whole, rows, rows, whole, whole, rows),
                       out_specs=(rows, rows), axis_names=frozenset(axes), check_vma=False)(
                           params, prompt_tokens, prompt_mask, rng, stop_ids, stop_lengths)


def _check_stop_lengths(stop_lengths, b: int, n: int) -> Array:
  if stop_lengths is None:
    return np.full((b,), n, np.int32)
  if tuple(np.shape(stop_lengths)) != (b,):
    raise ValueError(f"stop_lengths must be [P * G] = [{b}], got shape {np.shape(stop_lengths)}")
  if not isinstance(stop_lengths, jax.core.Tracer):
    if isinstance(stop_lengths, jax.Array) and not stop_lengths.is_fully_addressable:
      return stop_lengths
    if np.min(np.asarray(stop_lengths)) < 1:
      raise ValueError("stop_lengths must be >= 1")
  return stop_lengths.astype(jnp.int32) if isinstance(stop_lengths, jax.Array) else \
      np.asarray(stop_lengths, np.int32)


def generate(
    params: Any,
    config: Any,
    prompt_tokens: Array,
    prompt_mask: Array,
    rng: Array,
    *,
    num_samples: int = 1,
    max_new_tokens: int,
    num_slots: Optional[int] = None,
    prefill_chunk: Optional[int] = None,
    processors: Optional[processors_lib.Processor] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    min_p: Optional[float] = None,
    stop_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    return_entropy: bool = False,
    force_full_length: bool = False,
    stop_lengths: Optional[Array] = None,
    return_stats: bool = False,
    mesh: Optional[Mesh] = None,
):
  """Samples ``num_samples`` completions per prompt with continuous batching over ``num_slots``
  decode slots, inside one jit-compiled call.

  The sampling semantics are those of `rlvr_jax.rollout.generate.generate` (the same arguments,
  output layout and log-probs); what differs is the schedule and the randomness: completion token
  ``t`` of row ``r`` (``r = i * G + j``: sample ``j`` of prompt ``i``) is drawn with
  ``fold_in(fold_in(rng, r), t)``, so row ``r`` equals the static engine run on prompt ``i`` alone
  with ``G = 1`` and key ``fold_in(rng, r)``, and no row depends on ``num_slots`` (module
  docstring).

  Args:
    params: the model's ``params`` collection.
    config: the model's `ModelConfig` (static).
    prompt_tokens: ``[P, S]`` integer prompt ids, left-padded.
    prompt_mask: ``[P, S]`` bool, True on real tokens; every row needs at least one.
    rng: PRNG key.
    num_samples: ``G``, completions per prompt.
    max_new_tokens: ``N`` > 0, the completion budget (and the static length of the output).
    num_slots: ``K``, sequences decoded at once (the KV cache is ``K x (S + N)``); default
      ``P * G`` (no refills; use fewer slots than rows to gain from continuous batching). More
      than ``P * G`` is clamped to ``P * G``.
    prefill_chunk: ``R``, prompts per prefill pass (the prompt ring's size); default
      `default_prefill_chunk`.
    processors, temperature, top_k, top_p, min_p: as in the static engine.
    stop_token_ids: a row stops after emitting any of these (kept and counted in ``lengths``).
    pad_token_id: written after a row's end.
    return_entropy: also return per-token entropy of the processed distribution.
    force_full_length: ignore stop tokens (every row runs to ``N`` or its ``stop_lengths``).
    stop_lengths: optional ``[P * G]`` ints >= 1: row ``r`` ends after ``stop_lengths[r]`` tokens
      as if it had emitted a stop token there (not truncated below ``N``). A workload hook for
      benchmarks and tests: random weights then stop with an RL policy's length distribution.
      Traced (changing it does not recompile).
    return_stats: also return `EngineStats` (with a mesh: ``decode_steps`` of the slowest shard,
      prefill counts summed over shards).
    mesh: generate on this ``("data", "fsdp", "tensor")`` mesh: the prompts are split over
      ``data x fsdp`` (`rlvr_jax.rollout.sharding`) and each of those row shards runs its own
      engine on its own rows, with ``ceil(num_slots / shards)`` slots; inside a shard the params
      keep their ``tensor`` split (tensor-parallel decode, KV heads over ``tensor``) and only
      their fsdp shards are gathered, once per call. The rows are those of the unsharded call
      (per-row keys). A prompt count the shards do not divide runs as one engine.

  Returns:
    `rlvr_jax.types.Rollout` with ``B = P * G`` group-major rows and ``T = N``, or
    ``(rollout, EngineStats)`` with ``return_stats``.

  Raises:
    ValueError: as the static engine, plus ``num_slots`` or ``prefill_chunk`` below 1, or
      ``stop_lengths`` of the wrong shape or below 1.
  """
  static_lib._validate(config, prompt_tokens, prompt_mask, num_samples, max_new_tokens)  # pylint: disable=protected-access
  if processors is None:
    processors = processors_lib.default_chain(temperature, top_k, top_p, min_p)
  elif temperature != 1.0 or any(x is not None for x in (top_k, top_p, min_p)):
    raise ValueError("pass either processors or temperature/top_k/top_p/min_p, not both")
  num_prompts, g = prompt_tokens.shape[0], int(num_samples)
  num_slots = num_prompts * g if num_slots is None else int(num_slots)
  if num_slots < 1:
    raise ValueError(f"num_slots must be >= 1, got {num_slots}")
  if prefill_chunk is not None and int(prefill_chunk) < 1:
    raise ValueError(f"prefill_chunk must be >= 1, got {prefill_chunk}")
  stop_lengths = _check_stop_lengths(stop_lengths, num_prompts * g, int(max_new_tokens))
  if mesh is not None and num_prompts % sharding.num_row_shards(mesh):
    mesh = None
  shards = 1 if mesh is None else sharding.num_row_shards(mesh)
  shard_prompts = num_prompts // shards
  shard_slots = min(-(-num_slots // shards), shard_prompts * g)
  if prefill_chunk is None:
    prefill_chunk = default_prefill_chunk(shard_prompts, g, shard_slots)
  if mesh is not None:
    prompt_tokens, prompt_mask, stop_lengths = (
        sharding.shard_rows(x, mesh) for x in (prompt_tokens, prompt_mask, stop_lengths))
  rollout, stats = _generate(
      params, prompt_tokens, prompt_mask, rng,
      static_lib._stop_id_array(stop_token_ids),  # pylint: disable=protected-access
      stop_lengths, config=config, num_samples=g, max_new_tokens=int(max_new_tokens),
      processor=processors, pad_token_id=int(pad_token_id), return_entropy=bool(return_entropy),
      force_full_length=bool(force_full_length), num_slots=shard_slots,
      prefill_chunk=min(int(prefill_chunk), shard_prompts), mesh=mesh)
  stats = EngineStats(stats.decode_steps.max(), stats.prefilled_prompts.sum(),
                      stats.prefill_calls.sum())
  return (rollout, stats) if return_stats else rollout
