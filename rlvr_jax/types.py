"""The batch pytrees that flow between the stages of an RLVR step.

Shapes use these letters throughout the package:

* ``P``: prompts in a batch; ``G``: samples (completions) per prompt; ``B = P * G`` sequences,
  laid out prompt-major (sequence ``b`` belongs to prompt ``b // G``).
* ``T``: completion length (padded to a static bucket). Completion tokens sit at the left of the
  ``T`` axis; ``mask[b, t] == 1`` exactly for ``t < length[b]``.
* ``V``: vocabulary size.

Everything here is a plain pytree of arrays (registered dataclasses), so it crosses ``jax.jit``,
``jax.lax.scan`` and sharding annotations without custom handling, and this module imports only
jax and numpy, so that ``rlvr_jax.objectives`` and ``rlvr_jax.advantages`` stay standalone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
Metrics = Mapping[str, Array]


def _pytree_dataclass(cls):
  """Frozen dataclass registered as a pytree whose fields are all children."""
  cls = dataclasses.dataclass(frozen=True)(cls)
  names = [f.name for f in dataclasses.fields(cls)]
  return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


@_pytree_dataclass
class LossBatch:
  """Constants the differentiated loss sees for one (micro-)batch of ``B`` sequences.

  Nothing here carries gradient: the trainer builds it from the rollout, the reward stage and the
  advantage stage, and the loss receives the current policy's log-probs separately.

  Attributes:
    mask: ``[B, T]`` float32, 1 on completion tokens that enter the loss, 0 on padding (and on
      tokens a data stage excludes, e.g. hint tokens or overlong-filtered sequences).
    advantages: ``[B, T]`` float32, advantages already broadcast to tokens (sequence-level
      estimators repeat their value over the sequence).
    old_logprobs: ``[B, T]`` float32, log-probs of the sampled tokens under the behaviour policy
      used for the PPO-style ratio (the rollout's, or recomputed by the trainer).
    ref_logprobs: ``[B, T]`` float32, log-probs under the frozen reference policy (zeros when no
      stage needs a reference).
    rollout_logprobs: ``[B, T]`` float32, log-probs reported by the sampler; they differ from
      ``old_logprobs`` only when the trainer recomputes the latter (rollout IS correction).
    rewards: ``[B]`` float32, the scalar reward after reward transforms.
    correct: ``[B]`` float32 in {0, 1}, whether the verifier judged the answer correct.
    group_ids: ``[B]`` int32, the prompt each sequence belongs to (globally unique per step).
    truncated: ``[B]`` float32 in {0, 1}, 1 when generation hit ``max_new_tokens``.
    extras: method-specific arrays (for example ``selfreward_logprobs`` ``[B]`` for LaSeR); a
      stage that needs a key documents it and raises a clear error when it is absent.
  """

  mask: Array
  advantages: Array
  old_logprobs: Array
  ref_logprobs: Array
  rollout_logprobs: Array
  rewards: Array
  correct: Array
  group_ids: Array
  truncated: Array
  extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@_pytree_dataclass
class GlobalCounts:
  """Normalisers of the *whole* batch, passed into every aggregation.

  Micro-batching and gradient accumulation must not change the gradient, so the loss of a
  micro-batch is divided by counts over the full batch, never by its own counts.

  Attributes:
    num_tokens: scalar float32, the number of mask-1 tokens in the full batch.
    num_sequences: scalar float32, the number of non-empty sequences in the full batch.
    num_groups: scalar float32, the number of prompt groups in the full batch.
  """

  num_tokens: Array
  num_sequences: Array
  num_groups: Array


def global_counts(mask: Array, group_ids: Array) -> GlobalCounts:
  """Counts of a full batch. ``mask`` ``[B, T]``; ``group_ids`` ``[B]`` int32."""
  mask = jnp.asarray(mask, jnp.float32)
  lengths = mask.sum(axis=-1)
  # Distinct ids = 1 + the number of changes in the sorted ids (cheaper to compile than unique).
  ids = jnp.sort(jnp.asarray(group_ids).reshape(-1))
  num_groups = jnp.where(ids.size > 0, 1 + (ids[1:] != ids[:-1]).sum(), 0)
  return GlobalCounts(
      num_tokens=mask.sum(),
      num_sequences=(lengths > 0).sum().astype(jnp.float32),
      num_groups=jnp.asarray(num_groups, jnp.float32),
  )


@_pytree_dataclass
class Rollout:
  """What the generate loop returns for ``B`` sequences (``B = P * G``, prompt-major).

  Attributes:
    prompt_tokens: ``[B, S]`` int32, left-padded prompts (repeated ``G`` times).
    prompt_mask: ``[B, S]`` bool, True on real prompt tokens.
    tokens: ``[B, T]`` int32, sampled completion tokens, padded with the pad id after the end.
    logprobs: ``[B, T]`` float32, log-prob of each sampled token under the temperature-scaled,
      processed sampling distribution (0 on padding).
    lengths: ``[B]`` int32, number of completion tokens including the stop token.
    truncated: ``[B]`` bool, True when a sequence reached ``max_new_tokens`` without a stop token.
    entropy: ``[B, T]`` float32 or None, per-token entropy of the sampling distribution.
  """

  prompt_tokens: Array
  prompt_mask: Array
  tokens: Array
  logprobs: Array
  lengths: Array
  truncated: Array
  entropy: Optional[Array] = None

  @property
  def mask(self) -> Array:
    """``[B, T]`` float32 completion mask derived from ``lengths``."""
    t = jnp.arange(self.tokens.shape[1])
    return (t[None, :] < self.lengths[:, None]).astype(jnp.float32)


@_pytree_dataclass
class AdvantageInputs:
  """Everything an advantage stage may read for one step's ``P`` prompts of ``G`` samples.

  Estimators that need only rewards ignore the rest; the objective layer adapts each raw estimator
  in ``rlvr_jax.advantages`` to this one argument so that presets can swap estimators freely.

  Attributes:
    rewards: ``[P, G]`` float32 scalar rewards after reward transforms.
    mask: ``[P, G, T]`` float32 completion mask.
    tokens: ``[P, G, T]`` int32 completion tokens (TEMPO builds its prefix tree from them).
    lengths: ``[P, G]`` int32 completion lengths.
    truncated: ``[P, G]`` float32 in {0, 1}.
    token_rewards: ``[P, G, T]`` float32 per-token rewards added to the outcome reward (for
      example a KL penalty from ``kl_in_reward``), zeros when unused.
    extras: method-specific arrays, e.g. ``greedy_rewards`` ``[P]`` (ReMax) or
      ``self_rewards`` ``[P, G]`` (LaSeR).
  """

  rewards: Array
  mask: Array
  tokens: Array
  lengths: Array
  truncated: Array
  token_rewards: Array
  extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)
