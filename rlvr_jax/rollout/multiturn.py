"""Multi-turn rollouts: batched episodes that alternate model turns and tool observations.

One call runs ``B = P * G`` episodes (prompt-major, ``G`` per example) of an environment
(`rlvr_jax.envs.base.Environment`) to completion:

1. every episode's rendered prompt is prefilled into a static KV cache (one jit program);
2. a turn: a jit'd ``lax.while_loop`` samples all unfinished episodes until each has emitted a
   stop token (the tokenizer's end of turn, or any of ``stop_token_ids``), completed one of the
   environment's stop strings (matched as token sequences), or used its turn/episode budget.
   Every sampled token is also fed through the model inside the loop, so the cache always holds
   the whole trajectory;
3. the host decodes each turn, steps the environments in parallel threads (`envs.step_episodes`:
   tools run there, in the sandbox or a worker pool), and renders each observation with the chat
   template (`envs.chat.observation_ids`);
4. the observation ids are **prefilled onto the existing cache** (one jit program per
   observation-length bucket), and the next turn starts from the logits of its last token.

Episodes end when the environment says done, after ``max_turns`` assistant turns, or when the
next observation or turn would not fit their ``max_tokens`` budget (observations included).

KV-cache layout. The cache has ``S + C`` slots; all episodes write at one shared slot counter, so
episode ``b``'s tokens are not contiguous in the cache, but each slot it owns is marked valid in
its own row of the cache mask and gets its own RoPE position (positions count only the
episode's real tokens). Attention over valid slots with those positions is exactly the attention
of the contiguous sequence, which is why teacher-forcing the returned trajectory from scratch
gives the recorded log-probs (the test checks 1e-5 in float32). A turn costs the slots of its
longest episode and an observation those of its longest observation; the default ``C`` covers
the worst case, ``max_cache_slots`` trades memory for a ``token_budget`` ending when it runs out.

Compilation: one program for the prompt prefill per (``B``, prompt bucket), one decode program
per (``B``, cache size, ``max_tokens_per_turn``, sampling settings) and one observation prefill
per power-of-two observation bucket (at least 16, at most ``max_observation_tokens``); the
content, the key and the number of turns never retrace.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.envs import base as envs_base
from rlvr_jax.envs import chat
from rlvr_jax.models import transformer as transformer_lib
from rlvr_jax.rollout import generate as generate_lib
from rlvr_jax.rollout import processors as processors_lib

Array = jax.Array

#: ``end_reason`` codes.
END_DONE = 0  # the environment ended the episode
END_TURN_BUDGET = 1  # max_turns assistant turns without the environment ending it
END_TOKEN_BUDGET = 2  # the next observation or turn did not fit max_tokens (or the cache)
END_REASONS = ("done", "turn_budget", "token_budget")


@dataclasses.dataclass(frozen=True)
class MultiTurnRollout:
  """A batch of multi-turn trajectories (a pytree of arrays; ``B`` episodes, ``K = max_turns``).

  The completion side ``tokens[b, :lengths[b]]`` is the episode after its prompt: assistant turn
  0, observation 0, assistant turn 1, ..., each observation starting with the rest of the chat
  template's closing of the turn before it and ending with the next assistant header.

  Attributes:
    prompt_tokens: ``[B, S]`` int32, left-padded rendered prompts.
    prompt_mask: ``[B, S]`` bool, True on real prompt tokens.
    tokens: ``[B, T]`` int32, ``T = max_tokens``; ``pad_token_id`` after ``lengths[b]``.
    token_mask: ``[B, T]`` bool, True on every real token (model and observation): the
      attention mask for teacher forcing (`rlvr_jax.rollout.scoring.token_logprobs`'s
      ``completion_mask``).
    loss_mask: ``[B, T]`` float32, 1 on model-generated tokens, 0 on observation tokens (the
      holes) and padding: the mask of the loss and of the advantage estimators.
    logprobs: ``[B, T]`` float32 behaviour log-probs of model tokens (under the processed
      sampling distribution), 0 elsewhere.
    turn_ids: ``[B, T]`` int32, the assistant turn a token belongs to (an observation belongs to
      the turn it answers), -1 on padding.
    lengths: ``[B]`` int32 real completion tokens.
    turn_rewards: ``[B, K]`` float32 reward part of each assistant turn (0 for turns not taken);
      the outcome reward is the last turn's part.
    num_turns: ``[B]`` int32 assistant turns taken.
    tool_calls: ``[B]`` int32 tool calls parsed over the episode.
    tool_errors: ``[B]`` int32 tool calls that failed.
    end_reason: ``[B]`` int32, ``END_DONE``, ``END_TURN_BUDGET`` or ``END_TOKEN_BUDGET``.
  """

  prompt_tokens: Array
  prompt_mask: Array
  tokens: Array
  token_mask: Array
  loss_mask: Array
  logprobs: Array
  turn_ids: Array
  lengths: Array
  turn_rewards: Array
  num_turns: Array
  tool_calls: Array
  tool_errors: Array
  end_reason: Array

  @property
  def rewards(self) -> Array:
    """``[B]`` episode return: the sum of the turns' reward parts."""
    return self.turn_rewards.sum(axis=-1)

  @property
  def truncated(self) -> Array:
    """``[B]`` bool: the episode was cut by a budget (``end_reason != END_DONE``)."""
    return self.end_reason != END_DONE


jax.tree_util.register_dataclass(
    MultiTurnRollout, data_fields=[f.name for f in dataclasses.fields(MultiTurnRollout)],
    meta_fields=[])


# ---------------------------------------------------------------------------------------------
# jit programs: prompt prefill, one turn of decoding, one observation prefill.


@functools.partial(jax.jit, static_argnames=("config", "num_slots", "repeats"))
def _prefill_prompts(params, prompt_tokens, prompt_mask, *, config, num_slots, repeats):
  """Prompts into a fresh cache of ``num_slots`` slots; logits after each prompt's last token.

  Each of the ``U`` rows is prefilled once and its cache repeated ``repeats`` times (rows
  ``i*repeats ..`` are copies of prompt ``i``), so a group of samples costs one prefill.
  """
  u, s = prompt_tokens.shape
  cache = transformer_lib.init_cache(config, u, num_slots)
  cache_mask = jnp.zeros((u, num_slots), bool).at[:, :s].set(prompt_mask)
  positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1, dtype=jnp.int32) - 1, 0)
  hidden, cache = transformer_lib.Transformer(config).apply(
      {"params": params}, prompt_tokens, positions, cache_mask, cache=cache,
      cache_index=jnp.int32(0), return_hidden=True)
  logits = transformer_lib.unembed(params, config, hidden[:, -1])
  repeat = lambda x, axis: jnp.repeat(x, repeats, axis=axis,
                                      total_repeat_length=x.shape[axis] * repeats)
  cache = jax.tree.map(lambda x: repeat(x, 1), cache)  # KVCache leaves are [L, B, KV, S, Dh].
  lengths = prompt_mask.sum(axis=1, dtype=jnp.int32)
  return cache, repeat(cache_mask, 0), repeat(logits, 0), repeat(lengths, 0)


@functools.partial(jax.jit, static_argnames=("config", "max_new", "processor", "pad_token_id"),
                   donate_argnames=("cache",))
def _decode_turn(params, cache, cache_mask, slot, positions, logits, budget, rng, stop_ids,
                 stop_seqs, *, config, max_new, processor, pad_token_id):
  """Samples one turn for every row with ``budget > 0``, feeding each token into the cache.

  Step ``t`` samples from the carried logits, writes the token at slot ``slot + t`` (valid only
  in the rows still running) and runs the model on it for the next logits. A row stops after a
  stop id, after the last ``len`` tokens equal a stop sequence (rows of ``stop_seqs`` are
  right-aligned, -1 on the left; an all -1 row is unused), or after ``budget`` tokens.

  Returns:
    ``(tokens [B, max_new], logprobs [B, max_new], n [B], cache, cache_mask, logits, steps)``:
    row ``b``'s turn is ``tokens[b, :n[b]]``; ``steps`` slots were used.
  """
  b = logits.shape[0]
  window = stop_seqs.shape[1]
  # Layers unrolled on per-layer weights and caches, as in `rlvr_jax.rollout.generate`.
  layers = transformer_lib.unstack_layers(params)
  seq_used = jnp.any(stop_seqs >= 0, axis=1)

  def cond(carry):
    t, _, _, _, done, *_ = carry
    return (t < max_new) & jnp.any(~done)

  def body(carry):
    t, caches, cache_mask, logits, done, n, recent, tokens, logprobs = carry
    processed = processor(logits.astype(jnp.float32))
    token = processors_lib.categorical(jax.random.fold_in(rng, t), processed)
    logprob = (jnp.take_along_axis(processed, token[:, None], axis=-1)[:, 0]
               - jax.nn.logsumexp(processed, axis=-1))
    running = ~done
    token = jnp.where(running, token, pad_token_id)
    tokens = tokens.at[:, t].set(token)
    logprobs = logprobs.at[:, t].set(jnp.where(running, logprob, 0.0))
    n = jnp.where(running, t + 1, n)
    recent = jnp.concatenate([recent[:, 1:], token[:, None]], axis=1)
    seq_hit = jnp.all((stop_seqs[None] < 0) | (recent[:, None, :] == stop_seqs[None]), axis=-1)
    stop = jnp.any(token[:, None] == stop_ids[None], axis=-1) | jnp.any(seq_hit & seq_used, -1)
    # Feed the token: the cache must hold the whole turn before an observation follows it.
    column = jax.lax.dynamic_update_slice(cache_mask, running[:, None], (0, slot + t))
    hidden, caches = transformer_lib.apply_unrolled(
        params, layers, config, token[:, None], (positions + t)[:, None], column, caches,
        slot + t)
    fed = transformer_lib.unembed(params, config, hidden[:, 0])
    logits = jnp.where(running[:, None], fed, logits)
    done = done | (running & (stop | (t + 1 >= budget)))
    return t + 1, caches, column, logits, done, n, recent, tokens, logprobs

  init = (jnp.int32(0), transformer_lib.split_cache(cache), cache_mask, logits, budget <= 0,
          jnp.zeros((b,), jnp.int32), jnp.full((b, window), -2, jnp.int32),
          jnp.full((b, max_new), pad_token_id, jnp.int32),
          jnp.zeros((b, max_new), jnp.float32))
  steps, caches, cache_mask, logits, _, n, _, tokens, logprobs = jax.lax.while_loop(
      cond, body, init)
  cache = transformer_lib.stack_cache(caches)
  return tokens, logprobs, n, cache, cache_mask, logits, steps


@functools.partial(jax.jit, static_argnames=("config",), donate_argnames=("cache",))
def _prefill_observation(params, cache, cache_mask, slot, positions, logits, obs, obs_len, *,
                         config):
  """Writes ``obs[b, :obs_len[b]]`` at slots ``slot ..`` and positions ``positions[b] ..``.

  Rows with ``obs_len == 0`` keep their logits; the others get the logits after their last
  observation token.
  """
  width = obs.shape[1]
  valid = jnp.arange(width)[None, :] < obs_len[:, None]
  cache_mask = jax.lax.dynamic_update_slice(cache_mask, valid, (0, slot))
  obs_positions = positions[:, None] + jnp.arange(width, dtype=jnp.int32)[None, :]
  hidden, cache = transformer_lib.Transformer(config).apply(
      {"params": params}, obs, obs_positions, cache_mask, cache=cache, cache_index=slot,
      return_hidden=True)
  last = jnp.take_along_axis(hidden, jnp.maximum(obs_len - 1, 0)[:, None, None], axis=1)[:, 0]
  new_logits = transformer_lib.unembed(params, config, last)
  logits = jnp.where((obs_len > 0)[:, None], new_logits, logits)
  return cache, cache_mask, logits


# ---------------------------------------------------------------------------------------------
# Host side.


def stop_sequences(tokenizer: Any, strings: Sequence[str]) -> List[List[int]]:
  """Token-id sequences of ``strings`` (encoded alone, no special tokens added).

  A turn stops when its last tokens equal one of them. A subword tokenizer may spell the same
  string with other ids in context; pass such variants too, or rely on the end-of-turn token.
  """
  return [chat.encode(tokenizer, s) for s in strings if s]


def _stop_table(seqs: Sequence[Sequence[int]]) -> np.ndarray:
  """``[M, W]`` right-aligned stop sequences, -1 on the left; ``M`` and ``W`` multiples of 8
  (at least 8), so tasks with a few short stop strings share one compilation."""
  width = max([8] + [-(-len(s) // 8) * 8 for s in seqs])
  rows = max(8, -(-len(seqs) // 8) * 8)
  table = np.full((rows, width), -1, np.int32)
  for i, s in enumerate(seqs):
    if s:
      table[i, width - len(s):] = s
  return table


def _bucket(n: int, cap: int) -> int:
  """Smallest power of two >= max(n, 16), capped at ``cap`` (few buckets: few compilations)."""
  size = 16
  while size < n:
    size *= 2
  return min(size, cap)


def rollout(
    params: Any,
    config: Any,
    env: envs_base.Environment,
    examples: Sequence[Any],
    tokenizer: Any,
    rng: Array,
    *,
    num_samples: int = 1,
    max_turns: int = 4,
    max_tokens: int = 256,
    max_tokens_per_turn: int = 64,
    max_observation_tokens: int = 64,
    processors: Optional[processors_lib.Processor] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    min_p: Optional[float] = None,
    stop_token_ids: Optional[Sequence[int]] = None,
    prompt_buckets: Optional[Sequence[int]] = None,
    max_cache_slots: Optional[int] = None,
    pad_token_id: Optional[int] = None,
    tool_workers: int = 8,
) -> Tuple[MultiTurnRollout, List[envs_base.Episode]]:
  """Runs ``num_samples`` episodes of ``env`` per example to completion (module docstring).

  Args:
    params: the policy's ``params`` collection.
    config: its `ModelConfig` (static).
    env: the environment; ``env.stop_strings`` also end turns.
    examples: ``P`` task examples, each passed to ``env.reset``.
    tokenizer: a Hugging Face tokenizer with a chat template (renders prompts and observations,
      decodes turns).
    rng: PRNG key; turn ``k`` samples with ``fold_in(rng, k)``, so the same key (and
      deterministic tools) gives the same trajectories.
    num_samples: ``G`` episodes per example (rows ``i*G .. i*G+G-1`` start from example ``i``).
    max_turns: assistant turns per episode.
    max_tokens: ``T``, completion tokens per episode, observations included.
    max_tokens_per_turn: tokens per assistant turn (the decode program's static length).
    max_observation_tokens: tokens per observation; longer tool results are cut
      (`envs.chat.observation_ids`); one that does not fit even then ends its episode
      (``END_TOKEN_BUDGET``).
    processors, temperature, top_k, top_p, min_p: sampling, as in `generate.generate`.
    stop_token_ids: ids that end a turn; default the tokenizer's ``eos_token_id``. Pass the
      chat template's end-of-turn ids when they differ (Qwen base models: ``<|im_end|>``;
      Llama 3: ``<|eot_id|>`` and ``<|eom_id|>``).
    prompt_buckets: allowed prompt widths ``S``; default the next power of two (>= 16).
    max_cache_slots: cache slots after the prompt; default
      ``max_turns * max_tokens_per_turn + (max_turns - 1) * max_observation_tokens``.
    pad_token_id: id written on padding; default the tokenizer's pad id (or 0).
    tool_workers: threads that step environments (run tools) in parallel.

  Returns:
    ``(MultiTurnRollout with B = P * G rows, the B Episode objects)``; each episode's
    ``messages`` hold the conversation (assistant turns as decoded text, observations) and its
    ``steps`` the environment's `StepResult` per turn (``info`` included).
  """
  if min(max_turns, max_tokens, max_tokens_per_turn, max_observation_tokens, num_samples) <= 0:
    raise ValueError("max_turns, max_tokens, max_tokens_per_turn, max_observation_tokens and "
                     "num_samples must be positive")
  if processors is None:
    processors = processors_lib.default_chain(temperature, top_k, top_p, min_p)
  elif temperature != 1.0 or any(x is not None for x in (top_k, top_p, min_p)):
    raise ValueError("pass either processors or temperature/top_k/top_p/min_p, not both")
  if pad_token_id is None:
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
  if stop_token_ids is None:
    stop_token_ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
  stop_set = {int(i) for i in stop_token_ids}
  # Padded with -1 (never sampled) to a multiple of 8: a few more stop ids do not recompile.
  stop_ids = np.full(max(8, -(-len(stop_set) // 8) * 8), -1, np.int32)
  stop_ids[:len(stop_set)] = sorted(stop_set)
  stop_seqs = _stop_table(stop_sequences(tokenizer, env.stop_strings))

  episodes = [env.reset(ex) for ex in examples for _ in range(num_samples)]
  b, k, t_max = len(episodes), max_turns, max_tokens
  prompts = [chat.prompt_ids(tokenizer, e.messages, e.tools) for e in episodes]
  if prompt_buckets is None:
    prompt_buckets = [_bucket(max(map(len, prompts)), 1 << 30)]
  prompt_tokens, prompt_mask = generate_lib.pad_prompts(prompts, prompt_buckets, pad_token_id)
  if max_cache_slots is None:
    max_cache_slots = max_turns * max_tokens_per_turn + (max_turns - 1) * max_observation_tokens
  num_slots = prompt_tokens.shape[1] + int(max_cache_slots)
  limit = getattr(config, "max_position_embeddings", None)
  if limit is not None and prompt_tokens.shape[1] + t_max > limit:
    raise ValueError(f"prompt bucket {prompt_tokens.shape[1]} + max_tokens {t_max} exceeds the "
                     f"model's max_position_embeddings {limit}")

  # Environments usually give the G episodes of an example the same prompt: prefill it once.
  g = num_samples if all(prompts[i] == prompts[i - i % num_samples] for i in range(b)) else 1
  cache, cache_mask, logits, positions = _prefill_prompts(
      params, jnp.asarray(prompt_tokens[::g]), jnp.asarray(prompt_mask[::g]), config=config,
      num_slots=num_slots, repeats=g)
  slot = prompt_tokens.shape[1]

  tokens = np.full((b, t_max), pad_token_id, np.int32)
  loss_mask = np.zeros((b, t_max), np.float32)
  logprobs = np.zeros((b, t_max), np.float32)
  turn_ids = np.full((b, t_max), -1, np.int32)
  used = np.zeros(b, np.int32)
  turn_rewards = np.zeros((b, k), np.float32)
  num_turns = np.zeros(b, np.int32)
  tool_calls = np.zeros(b, np.int32)
  tool_errors = np.zeros(b, np.int32)
  end_reason = np.full(b, -1, np.int32)  # -1 while running

  for turn in range(k):
    live = np.flatnonzero(end_reason < 0)
    if live.size == 0:
      break
    if slot + max_tokens_per_turn > num_slots:
      end_reason[live] = END_TOKEN_BUDGET
      break
    budget = np.zeros(b, np.int32)
    budget[live] = np.minimum(max_tokens_per_turn, t_max - used[live])
    out = _decode_turn(params, cache, cache_mask, jnp.int32(slot), positions, logits,
                       jnp.asarray(budget), jax.random.fold_in(rng, turn), stop_ids,
                       jnp.asarray(stop_seqs), config=config, max_new=int(max_tokens_per_turn),
                       processor=processors, pad_token_id=int(pad_token_id))
    new_tokens, new_logprobs, n, cache, cache_mask, logits, steps = out
    new_tokens, new_logprobs, n = map(np.asarray, (new_tokens, new_logprobs, n))
    slot += int(steps)
    positions = positions + jnp.asarray(n)

    turn_tokens, texts = {}, []
    for row in live:
      ids = new_tokens[row, :n[row]]
      span = slice(used[row], used[row] + n[row])
      tokens[row, span], logprobs[row, span] = ids, new_logprobs[row, :n[row]]
      loss_mask[row, span], turn_ids[row, span] = 1.0, turn
      used[row] += n[row]
      num_turns[row] += 1
      turn_tokens[row] = ids.tolist()
      # The environment reads the turn without its end-of-turn token (stop strings are kept).
      body = ids[:-1] if n[row] and int(ids[-1]) in stop_set else ids
      texts.append(tokenizer.decode(body.tolist(), skip_special_tokens=False))
    results = envs_base.step_episodes(env, [episodes[r] for r in live], texts, tool_workers)

    pending: Dict[int, List[int]] = {}
    for row, text, res in zip(live, texts, results):
      episode = episodes[row]
      episode.messages.append({"role": "assistant", "content": text})
      episode.messages.extend(dict(m) for m in res.observations)
      episode.steps.append(res)
      turn_rewards[row, turn] = res.reward
      tool_calls[row] += res.tool_calls
      tool_errors[row] += res.tool_errors
      if res.done:
        end_reason[row] = END_DONE
        continue
      if turn + 1 >= k:
        end_reason[row] = END_TURN_BUDGET
        continue
      obs = chat.observation_ids(tokenizer, turn_tokens[row], res.observations,
                                 max_tokens=max_observation_tokens)
      # The observation must fit, and leave room for at least one more model token.
      if len(obs) > max_observation_tokens or used[row] + len(obs) + 1 > t_max:
        end_reason[row] = END_TOKEN_BUDGET
        continue
      pending[row] = obs

    longest = max((len(o) for o in pending.values()), default=0)
    if longest == 0:
      continue
    width = _bucket(longest, max_observation_tokens)
    if slot + width > num_slots:
      end_reason[list(pending)] = END_TOKEN_BUDGET
      continue
    obs_tokens = np.full((b, width), pad_token_id, np.int32)
    obs_len = np.zeros(b, np.int32)
    for row, obs in pending.items():
      obs_tokens[row, :len(obs)], obs_len[row] = obs, len(obs)
      span = slice(used[row], used[row] + len(obs))
      tokens[row, span], turn_ids[row, span] = obs, turn
      used[row] += len(obs)
    cache, cache_mask, logits = _prefill_observation(
        params, cache, cache_mask, jnp.int32(slot), positions, logits, jnp.asarray(obs_tokens),
        jnp.asarray(obs_len), config=config)
    positions = positions + jnp.asarray(obs_len)
    slot += longest

  token_mask = np.arange(t_max)[None, :] < used[:, None]
  batch = MultiTurnRollout(
      prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, tokens=tokens,
      token_mask=token_mask, loss_mask=loss_mask, logprobs=logprobs, turn_ids=turn_ids,
      lengths=used, turn_rewards=turn_rewards, num_turns=num_turns, tool_calls=tool_calls,
      tool_errors=tool_errors, end_reason=end_reason)
  return batch, episodes


def multiturn_metrics(batch: MultiTurnRollout) -> Dict[str, float]:
  """Episode statistics of a multi-turn batch (host floats, ``multiturn/`` prefix).

  ``turns_mean``, ``tool_calls_mean`` and ``tool_errors_mean`` per episode;
  ``tool_error_rate`` (errors / calls, 0 without calls); ``observation_token_share`` (observation
  tokens / real completion tokens); ``model_tokens_mean``; and the fraction of episodes ended by
  the environment (``end_done``), the turn budget (``truncated_turn_budget``) and the token
  budget (``truncated_token_budget``).
  """
  real = np.asarray(batch.token_mask).sum()
  model = np.asarray(batch.loss_mask).sum()
  calls = float(np.asarray(batch.tool_calls).sum())
  reason = np.asarray(batch.end_reason)
  return {
      "multiturn/turns_mean": float(np.mean(batch.num_turns)),
      "multiturn/tool_calls_mean": float(np.mean(batch.tool_calls)),
      "multiturn/tool_errors_mean": float(np.mean(batch.tool_errors)),
      "multiturn/tool_error_rate": float(np.sum(batch.tool_errors)) / calls if calls else 0.0,
      "multiturn/observation_token_share": float((real - model) / real) if real else 0.0,
      "multiturn/model_tokens_mean": float(model / len(reason)),
      "multiturn/end_done": float(np.mean(reason == END_DONE)),
      "multiturn/truncated_turn_budget": float(np.mean(reason == END_TURN_BUDGET)),
      "multiturn/truncated_token_budget": float(np.mean(reason == END_TOKEN_BUDGET)),
  }
