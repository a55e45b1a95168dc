"""Trust-GRPO (SophiaVL-R1, arXiv 2505.17018): trust-weighted, annealed thinking rewards.

A thinking reward model scores the reasoning ``t_i in [0, 1]`` of each of a group's responses;
Trust-GRPO adds it to the rule-based outcome reward ``o_i`` only as far as it agrees with the
outcomes, and anneals it away over training:

    t_i      = 0                          if o_i < query_threshold      (the RM is not queried)
    factor   = 0                          if all o >= hi or all o <= lo  (no contrast to judge)
    mu_c     = mean(t_i | o_i >= correct_threshold),  mu_w = mean(t_i | o_i < correct_threshold)
               (0 when the set is empty)
    gamma    = 1                          if mu_c >= mu_w or no response is correct
               exp(gamma_scale * (mu_c - mu_w))  otherwise
    R_i      = o_i + alpha * gamma * exp(-step / T) * factor * t_i

Defaults follow the official code (kxfan2002/SophiaVL-R1 @a818494, ``custom.py``): ``alpha =
0.3``, ``T = 500``, thresholds 0.2 / 0.5 / 0.9 / 0.1. That code multiplies the reward by
``exp(mu_c - mu_w)`` but *logs* ``exp(2 (mu_c - mu_w))``; ``gamma_scale = 1`` follows the
multiplication. The paper's own equation was not checked here [UNVERIFIED].
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp

Array = jax.Array


@jax.jit
def trust_weight(outcome: Array,
                 think: Array,
                 *,
                 correct_threshold: float = 0.5,
                 gamma_scale: float = 1.0) -> Array:
  """Per-group trust ``gamma`` ``[P]`` from outcomes and (already gated) thinking rewards."""
  o = jnp.asarray(outcome, jnp.float32)
  t = jnp.asarray(think, jnp.float32)
  correct = o >= correct_threshold
  n_c = correct.sum(-1)
  n_w = (~correct).sum(-1)
  mu_c = jnp.where(n_c > 0, (t * correct).sum(-1) / jnp.maximum(n_c, 1), 0.0)
  mu_w = jnp.where(n_w > 0, (t * ~correct).sum(-1) / jnp.maximum(n_w, 1), 0.0)
  gamma = jnp.where(mu_c >= mu_w, 1.0, jnp.exp(gamma_scale * (mu_c - mu_w)))
  return jnp.where(n_c == 0, 1.0, gamma)


@jax.jit
def trust_grpo_reward(outcome: Array,
                      think: Array,
                      step,
                      *,
                      alpha: float = 0.3,
                      anneal_steps: float = 500.0,
                      query_threshold: float = 0.2,
                      correct_threshold: float = 0.5,
                      all_high: float = 0.9,
                      all_low: float = 0.1,
                      gamma_scale: float = 1.0) -> Tuple[Array, Array]:
  """Trust-GRPO reward (see the module docstring for the formula).

  Args:
    outcome: ``[P, G]`` rule-based outcome rewards ``o``.
    think: ``[P, G]`` thinking-RM scores ``t`` in ``[0, 1]``.
    step: the training step (scalar) for the annealing ``exp(-step / anneal_steps)``.
    alpha, anneal_steps, query_threshold, correct_threshold, all_high, all_low, gamma_scale:
      see the module docstring.

  Returns:
    ``(rewards [P, G], gamma [P])``; ``gamma`` is reported before the saturation factor.
  """
  o = jnp.asarray(outcome, jnp.float32)
  t = jnp.asarray(think, jnp.float32)
  if o.ndim != 2 or o.shape != t.shape:
    raise ValueError(f"outcome and think must both be [P, G]; got {o.shape}, {t.shape}")
  t = jnp.where(o >= query_threshold, t, 0.0)
  saturated = jnp.all(o >= all_high, axis=-1) | jnp.all(o <= all_low, axis=-1)
  gamma = trust_weight(o, t, correct_threshold=correct_threshold, gamma_scale=gamma_scale)
  anneal = jnp.exp(-jnp.asarray(step, jnp.float32) / anneal_steps)
  coef = alpha * gamma * anneal * jnp.where(saturated, 0.0, 1.0)
  return o + coef[:, None] * t, gamma
