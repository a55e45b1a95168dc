"""The PRNG stream layout of a run, in one place.

Every random draw of :func:`rlvr_jax.train.loop.train` is a pure function of ``config.seed`` and
the step, so a resumed run draws exactly what an uninterrupted one would::

  seed_key = jax.random.key(config.seed)
  init_key, sample_key, eval_key = jax.random.split(seed_key, 3)

  init_key                      random model initialisation (presets without ``hf_dir``)
  lora_keys(init_key)           LoRA adapter initialisation, adapter dropout (folded with the
                                update step)
  round_key(sample_key, s, r)   generation round r of RL step s (r > 0 only with dynamic sampling)
  stage_key(sample_key, s, i, c)  chunk c of the extra generations of the stage with stream id i
                                  at step s (DARS 0, Scaf-GRPO 1, ReMax greedy 2, Agent-RLVR 3,
                                  group rewards 4; a stream id is fixed when the stage is
                                  registered)
  eval_key                      held-out evaluation (the driver folds in the batch index);
  fold_in(eval_key, s)          the warm-up's accuracy probe at SFT step s
  numpy default_rng([seed, s])  the order of mini-batches at RL step s (host side)

Stage streams start at ``STAGE_STREAM``, far above any generation round, so the two never meet.
"""

from __future__ import annotations

import jax
import numpy as np

STAGE_STREAM = 1 << 20


def split_seed(seed: int):
  """``(init_key, sample_key, eval_key)`` of a run's ``config.seed``."""
  return tuple(jax.random.split(jax.random.key(seed), 3))


def lora_keys(init_key: jax.Array):
  """``(adapter init key, adapter dropout key)`` of a LoRA run."""
  return jax.random.fold_in(init_key, 1), jax.random.fold_in(init_key, 2)


def round_key(sample_key: jax.Array, step: int, round_index: int) -> jax.Array:
  """The key of generation round ``round_index`` of RL step ``step``."""
  return jax.random.fold_in(jax.random.fold_in(sample_key, step), round_index)


def stage_key(sample_key: jax.Array, step: int, stream_id: int, chunk: int) -> jax.Array:
  """The key of chunk ``chunk`` of stage stream ``stream_id``'s generations at step ``step``."""
  key = jax.random.fold_in(jax.random.fold_in(sample_key, step), STAGE_STREAM + stream_id)
  return jax.random.fold_in(key, chunk)


def probe_key(eval_key: jax.Array, sft_step: int) -> jax.Array:
  """The key of the warm-up's accuracy probe at SFT step ``sft_step``."""
  return jax.random.fold_in(eval_key, sft_step)


def minibatch_order(seed: int, step: int) -> np.random.Generator:
  """The host generator that shuffles step ``step``'s groups into mini-batches."""
  return np.random.default_rng([seed, step])
