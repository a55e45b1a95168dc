"""SSL (Sweet Spot Learning, arXiv 2601.22491), EXPERIMENTAL: progressively amplified tiered rewards.

SSL replaces a binary reward by tiers ("zones") of a verifier-computed quality: distance
zones for spatial tasks (a Gaussian of the click-to-target distance), quartile zones for
matching tasks (fraction of matched cells), per-step proximities aggregated over the
trajectory, bucketed into ``K`` zones (``K = 4`` works best in the paper) whose rewards grow
faster towards the sweet spot, and added with a weight ``alpha``. Only the abstract and
third-party summaries of the paper were available, so the exact zone boundaries, tier values,
aggregation and how ``alpha`` enters are this module's reading, not the paper's formulas:

* :func:`tiered_reward`: ``z(q) = #{j : q >= b_j}`` for ascending boundaries ``b``, reward
  ``v_{z(q)}`` with non-decreasing tier values, so a better quality never earns less (the
  order preservation the paper proves) and quality differences inside a zone earn nothing
  (the noise filtering it argues for).
* :func:`amplified_tier_values`: ``v_z = (g^z - 1) / (g^(K-1) - 1)`` (``g > 1``; linear
  ``z / (K-1)`` at ``g = 1``), ``v_0 = 0``, ``v_{K-1} = 1``, increments growing by ``g``.
* :func:`quantile_boundaries`: ``b_j = j / K`` (quartiles for ``K = 4``).
* :func:`gaussian_proximity`: ``q = exp(-d^2 / (2 sigma^2))``.
* :func:`trajectory_proximity`: the mean of per-step proximities over a turn mask.
* :func:`sweet_spot_reward`: ``R = outcome + alpha * v_{z(q)}``. With tier values in
  ``[0, 1]``, a binary outcome and ``alpha < 1``, every success outranks every failure, so a
  policy cannot trade the verified outcome for partial progress.

No training-time schedule of the tiers is implemented (none could be confirmed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def amplified_tier_values(num_tiers: int = 4, growth: float = 2.0) -> np.ndarray:
  """Tier rewards ``v_z = (g^z - 1) / (g^(K-1) - 1)`` for ``z = 0..K-1`` (EXPERIMENTAL default).

  ``growth = 1`` gives evenly spaced tiers; larger values amplify the top tiers.
  """
  if num_tiers < 2:
    raise ValueError(f"num_tiers must be >= 2, got {num_tiers}")
  if not growth >= 1.0:
    raise ValueError(f"growth must be >= 1, got {growth}")
  z = np.arange(num_tiers, dtype=np.float64)
  if growth == 1.0:
    return (z / (num_tiers - 1)).astype(np.float32)
  return ((growth**z - 1.0) / (growth**(num_tiers - 1) - 1.0)).astype(np.float32)


def quantile_boundaries(num_tiers: int = 4) -> np.ndarray:
  """Evenly spaced zone boundaries ``j / K``, ``j = 1..K-1``, for a quality in ``[0, 1]``."""
  if num_tiers < 2:
    raise ValueError(f"num_tiers must be >= 2, got {num_tiers}")
  return (np.arange(1, num_tiers, dtype=np.float64) / num_tiers).astype(np.float32)


def _check_tiers(boundaries, tier_values):
  b = np.asarray(boundaries, np.float64)
  v = np.asarray(tier_values, np.float64)
  if b.ndim != 1 or v.ndim != 1 or v.shape[0] != b.shape[0] + 1:
    raise ValueError(f"need K-1 boundaries and K tier values; got {b.shape}, {v.shape}")
  if not (np.all(np.isfinite(b)) and np.all(np.isfinite(v))):
    raise ValueError("boundaries and tier values must be finite")
  if np.any(np.diff(b) <= 0):
    raise ValueError(f"boundaries must be strictly increasing, got {b}")
  if np.any(np.diff(v) < 0):
    raise ValueError(f"tier values must be non-decreasing (order preservation), got {v}")


@jax.jit
def _tiered(q: Array, b: Array, v: Array) -> Array:
  z = (q[..., None] >= b).sum(-1)
  return jnp.where(jnp.isnan(q), jnp.nan, v[z])


def tiered_reward(quality: Array, boundaries, tier_values) -> Array:
  """``v_{z(q)}`` with ``z(q) = #{j : q >= b_j}`` (EXPERIMENTAL; see the module docstring).

  Args:
    quality: any shape, a verifier-computed quality (higher is better).
    boundaries: ``[K-1]`` strictly increasing zone boundaries (host values, checked here).
    tier_values: ``[K]`` non-decreasing tier rewards.

  Returns:
    float32 rewards of ``quality``'s shape; NaN where the quality is NaN (a failed measurement
    is never read as a tier).
  """
  _check_tiers(boundaries, tier_values)
  return _tiered(jnp.asarray(quality, jnp.float32), jnp.asarray(boundaries, jnp.float32),
                 jnp.asarray(tier_values, jnp.float32))


@jax.jit
def gaussian_proximity(distance: Array, sigma: Array) -> Array:
  """Spatial proximity ``exp(-d^2 / (2 sigma^2))`` in ``(0, 1]`` (distance zones)."""
  d = jnp.asarray(distance, jnp.float32)
  s = jnp.asarray(sigma, jnp.float32)
  return jnp.exp(-0.5 * (d / s)**2)


@jax.jit
def trajectory_proximity(step_proximity: Array, turn_mask: Array) -> Array:
  """Mean per-step proximity over the real steps, ``[B, K] -> [B]``; 0 for an episode without
  steps. Padding may hold anything (NaN included)."""
  p = jnp.asarray(step_proximity, jnp.float32)
  m = jnp.asarray(turn_mask, bool)
  if p.ndim != 2 or m.shape != p.shape:
    raise ValueError(f"need step_proximity and turn_mask [B,K]; got {p.shape}, {m.shape}")
  n = m.sum(-1)
  return jnp.where(m, p, 0.0).sum(-1) / jnp.maximum(n, 1)


def sweet_spot_reward(outcome: Array, quality: Array, boundaries, tier_values, *,
                      alpha: float = 0.5) -> Array:
  """``R = outcome + alpha * v_{z(q)}`` (EXPERIMENTAL reading of SSL's ``alpha``-weighted tiers).

  Args:
    outcome: the verified reward (binary or any scale), same shape as ``quality``.
    quality: verifier-computed quality or proximity.
    boundaries, tier_values: as in :func:`tiered_reward`.
    alpha: tier weight, ``>= 0``; ``alpha = 0`` is the plain outcome.

  Returns:
    float32 rewards; NaN where the outcome or the quality is NaN.
  """
  if not alpha >= 0:
    raise ValueError(f"alpha must be >= 0, got {alpha}")
  o = jnp.asarray(outcome, jnp.float32)
  t = tiered_reward(quality, boundaries, tier_values)
  if o.shape != t.shape:
    raise ValueError(f"outcome {o.shape} and quality {t.shape} must have one shape")
  return o + alpha * t
