"""Combining several rewards into one: weighting, missing values, gating, decoupled normalisation.

Rewards arrive stacked as ``[K, ...]`` (``K`` reward components, e.g. correctness, format,
length), with NaN marking a missing value (a reward function that does not apply to a sample,
returned None, or failed).

* :func:`weighted_sum`: ``R = sum_k w_k r_k`` with a missing-value policy:

  - ``"zero"`` (TRL's ``nansum``): a missing component contributes 0;
  - ``"renormalize"``: ``R = sum_{k present} w_k r_k * (sum_k w_k / sum_{k present} w_k)``, i.e.
    the weighted mean over present components rescaled to the full weight;
  - ``"propagate"``: any missing component makes ``R`` NaN.

  A sample with every component missing gets NaN under all policies and ``valid = False``; drop
  it (or give it a reward) explicitly.
* :func:`gate_by_correctness`: a bonus that only counts for correct answers,
  ``R = r_o + lam * r_o * bonus`` (the "conciseness depends on the outcome" template of
  ``specs/rewards.md`` 7.1; CRF's exact form was not checked [UNVERIFIED]).
* :func:`decoupled_group_normalize`: z-score each component within its group *before* weighting,
  so a component with a small spread is not drowned by one with a large spread once the sum is
  normalised. This changes what GRPO optimises relative to normalising the sum; it is offered as
  an option, not a default.
"""

from __future__ import annotations

import functools
from typing import Tuple

import jax
import jax.numpy as jnp

Array = jax.Array

_POLICIES = ("zero", "renormalize", "propagate")


@functools.partial(jax.jit, static_argnames=("missing",))
def weighted_sum(rewards: Array, weights: Array, *, missing: str = "zero") -> Tuple[Array, Array]:
  """Weighted sum over the leading axis with a missing-value policy.

  Args:
    rewards: ``[K, ...]`` float, NaN = missing.
    weights: ``[K]`` float.
    missing: ``"zero"``, ``"renormalize"`` or ``"propagate"`` (see the module docstring).

  Returns:
    ``(total [...], valid [...] bool)``; ``valid`` is False where every component is missing
    (and, for ``"propagate"``, where any is), and ``total`` is NaN there.
  """
  if missing not in _POLICIES:
    raise ValueError(f"missing must be one of {_POLICIES}, got {missing!r}")
  r = jnp.asarray(rewards, jnp.float32)
  w = jnp.asarray(weights, jnp.float32)
  if w.ndim != 1 or w.shape[0] != r.shape[0]:
    raise ValueError(f"weights must be [K] with K = rewards.shape[0]; got {w.shape}, {r.shape}")
  w = w.reshape((-1,) + (1,) * (r.ndim - 1))
  present = ~jnp.isnan(r)
  contrib = jnp.where(present, r * w, 0.0).sum(0)
  any_present = present.any(0)
  if missing == "zero":
    total, valid = contrib, any_present
  elif missing == "renormalize":
    w_present = jnp.where(present, w, 0.0).sum(0)
    scale = jnp.sum(w) / jnp.where(w_present != 0, w_present, 1.0)
    total, valid = contrib * scale, any_present
  else:
    valid = present.all(0)
    total = contrib
  return jnp.where(valid, total, jnp.nan), valid


@jax.jit
def gate_by_correctness(outcome: Array, bonus: Array, *, lam: float = 1.0) -> Array:
  """``R = r_o + lam * r_o * bonus``: the bonus (in ``[0, 1]``) pays only for correct answers."""
  o = jnp.asarray(outcome, jnp.float32)
  return o + lam * o * jnp.asarray(bonus, jnp.float32)


@functools.partial(jax.jit, static_argnames=("ddof",))
def decoupled_group_normalize(rewards: Array, weights: Array, *, eps: float = 1e-6,
                              ddof: int = 0) -> Array:
  """``A = sum_k w_k (r_k - mean_g r_k) / (std_g r_k + eps)``, ``[K, P, G] -> [P, G]``.

  Each component is normalised within each prompt's group before the weighted sum; a component
  constant within a group contributes 0 there. NaN components count as missing (excluded from
  the group statistics and contributing 0).
  """
  r = jnp.asarray(rewards, jnp.float32)
  w = jnp.asarray(weights, jnp.float32)
  if r.ndim != 3 or w.shape != (r.shape[0],):
    raise ValueError(f"need rewards [K, P, G] and weights [K]; got {r.shape}, {w.shape}")
  present = ~jnp.isnan(r)
  n = present.sum(-1, keepdims=True)
  x = jnp.where(present, r, 0.0)
  mean = x.sum(-1, keepdims=True) / jnp.maximum(n, 1)
  var = (jnp.where(present, (r - mean) ** 2, 0.0)).sum(-1, keepdims=True) / jnp.maximum(
      n - ddof, 1)
  z = jnp.where(present, (x - mean) / (jnp.sqrt(var) + eps), 0.0)
  return (w[:, None, None] * z).sum(0)
