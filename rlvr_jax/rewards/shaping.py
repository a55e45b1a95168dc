"""Length shaping: Kimi-style group length reward, cosine length scaling, n-gram repetition.

DAPO's soft overlong punishment is a reward transform of the objective layer:
``rlvr_jax.objectives.reward_transforms.overlong_soft_penalty`` (its one home; ``rewards`` does
not import ``objectives``).
"""

from __future__ import annotations

import functools
import math
from typing import Hashable, Optional, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["kimi_length_reward", "cosine_length_reward", "repetition_penalty"]


@jax.jit
def kimi_length_reward(lengths: Array, correct: Array, valid: Optional[Array] = None) -> Array:
  """Kimi k1.5 length reward (arXiv 2501.12599 section 2.3.3; open-r1 ``len_reward``).

  Within each group of responses to one prompt, with ``L_min``/``L_max`` the shortest and longest
  valid lengths:

      lambda_i = 0.5 - (L_i - L_min) / (L_max - L_min)
      r_i = lambda_i if correct_i else min(0, lambda_i)

  and ``r = 0`` for the whole group when all valid lengths are equal. open-r1 takes ``L_min``
  and ``L_max`` over the whole batch it is called with; here they are per group, as in the paper.

  Args:
    lengths: ``[P, G]`` response lengths (tokens or characters).
    correct: ``[P, G]`` bool/0-1.
    valid: ``[P, G]`` bool, samples that take part (default all); invalid ones get 0.

  Returns:
    ``[P, G]`` float32 rewards in ``[-0.5, 0.5]``.
  """
  length = jnp.asarray(lengths, jnp.float32)
  if length.ndim != 2:
    raise ValueError(f"lengths must be [P, G], got {length.shape}")
  ok = jnp.asarray(correct).astype(bool)
  v = jnp.ones(length.shape, bool) if valid is None else jnp.asarray(valid, bool)
  lo = jnp.min(jnp.where(v, length, jnp.inf), axis=-1, keepdims=True)
  hi = jnp.max(jnp.where(v, length, -jnp.inf), axis=-1, keepdims=True)
  spread = hi - lo
  lam = 0.5 - (length - lo) / jnp.where(spread > 0, spread, 1.0)
  r = jnp.where(ok, lam, jnp.minimum(0.0, lam))
  return jnp.where(v & (spread > 0), r, 0.0)


@functools.partial(jax.jit, static_argnames=("max_length",))
def cosine_length_reward(lengths: Array,
                         correct: Array,
                         *,
                         max_length: float,
                         min_value_correct: float = 0.5,
                         max_value_correct: float = 1.0,
                         min_value_wrong: float = -1.0,
                         max_value_wrong: float = -0.5) -> Array:
  """Cosine length scaling ("Demystifying Long CoT", arXiv 2502.03373; TRL/open-r1 form).

      progress = min(L / max_length, 1)
      R = v_start + 0.5 (v_end - v_start) (1 - cos(pi * progress))

  with ``(v_start, v_end) = (max_value_correct, min_value_correct)`` for correct answers (short
  correct answers earn the most) and ``(min_value_wrong, max_value_wrong)`` for wrong ones (short
  wrong answers are penalised the most). Equivalent to open-r1's
  ``min + 0.5 (max - min)(1 + cos(pi p))`` with its swapped wrong-answer bounds.

  Args:
    lengths: response lengths, any shape.
    correct: bool/0-1, same shape.
    max_length: length at which the schedule ends (open-r1: 1000 characters).
    min_value_correct, max_value_correct, min_value_wrong, max_value_wrong: the bounds.

  Returns:
    float32 rewards of the shape of ``lengths``.
  """
  if max_length <= 0:
    raise ValueError(f"max_length must be > 0, got {max_length}")
  length = jnp.asarray(lengths, jnp.float32)
  ok = jnp.asarray(correct).astype(bool)
  progress = jnp.clip(length / max_length, 0.0, 1.0)
  ramp = 0.5 * (1.0 - jnp.cos(math.pi * progress))  # 0 at L=0, 1 at L >= max_length
  start = jnp.where(ok, max_value_correct, min_value_wrong)
  end = jnp.where(ok, min_value_correct, max_value_wrong)
  return start + (end - start) * ramp


def repetition_penalty(tokens: Sequence[Hashable], *, ngram_size: int = 3,
                       max_penalty: float = -1.0) -> float:
  """n-gram repetition penalty (open-r1/TRL): ``(1 - unique/total n-grams) * max_penalty``.

  Host-side. ``tokens`` is any sequence (token ids, or ``text.lower().split()`` as open-r1
  does); fewer than ``ngram_size`` tokens give 0. ``max_penalty <= 0``.
  """
  if max_penalty > 0:
    raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
  if ngram_size < 1:
    raise ValueError(f"ngram_size must be >= 1, got {ngram_size}")
  tokens = list(tokens)
  total = len(tokens) - ngram_size + 1
  if total <= 0:
    return 0.0
  unique = len({tuple(tokens[i:i + ngram_size]) for i in range(total)})
  return (1.0 - unique / total) * max_penalty
