"""PPR's ReNorm (arXiv 2509.25598), EXPERIMENTAL: process rewards calibrated by the outcome.

PPR scores each step of an agent trajectory with a principle-based process reward model and
"calibrates outcome and process rewards" with Reward Normalization (ReNorm). The paper's text
was not available here (abstract and summaries only); this module implements the reading

    r_t = clip(p_t, 0, 1) + o - 1,        p_t in [0, 1] step score,  o in [0, 1] outcome,

so every step of a successful trajectory (``o = 1``) earns ``p_t >= 0`` and every step of a
failed one (``o = 0``) earns ``p_t - 1 <= 0``: a process reward model can rank steps within
an outcome class but can never lift a failed trajectory above a successful one, which is the
stated purpose (local step quality must not outweigh the contribution to the final outcome).
Clipping ``p`` keeps a mis-scaled process score from breaking that bound. Treat the formula as
unverified until checked against the paper.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


@jax.jit
def renorm_step_rewards(process: Array, outcome: Array, turn_mask: Array) -> Array:
  """ReNorm step rewards ``r_t = clip(p_t, 0, 1) + clip(o, 0, 1) - 1`` (EXPERIMENTAL).

  Args:
    process: ``[B, K]`` per-step process scores in ``[0, 1]``.
    outcome: ``[B]`` outcome in ``[0, 1]`` (binary or graded).
    turn_mask: ``[B, K]`` bool, real steps.

  Returns:
    ``[B, K]`` float32 in ``[-1, 1]``, 0 on padding. A NaN score of a real step, or a NaN
    outcome, gives NaN there (padding may hold NaN).
  """
  p = jnp.asarray(process, jnp.float32)
  o = jnp.asarray(outcome, jnp.float32)
  m = jnp.asarray(turn_mask, bool)
  if p.ndim != 2 or m.shape != p.shape or o.shape != p.shape[:1]:
    raise ValueError(f"need process, turn_mask [B,K] and outcome [B]; got {p.shape}, "
                     f"{m.shape}, {o.shape}")
  r = jnp.clip(p, 0.0, 1.0) + jnp.clip(o, 0.0, 1.0)[:, None] - 1.0
  return jnp.where(m, r, 0.0)


@jax.jit
def renorm_sequence_reward(process: Array, outcome: Array, turn_mask: Array) -> Array:
  """Mean ReNorm step reward over the real steps, ``[B]`` (a per-sequence form for outcome
  estimators such as GRPO); an episode without steps gets ``o - 1``."""
  m = jnp.asarray(turn_mask, bool)
  r = renorm_step_rewards(process, outcome, turn_mask)
  n = m.sum(-1)
  o = jnp.clip(jnp.asarray(outcome, jnp.float32), 0.0, 1.0)
  return jnp.where(n > 0, r.sum(-1) / jnp.maximum(n, 1), o - 1.0)
