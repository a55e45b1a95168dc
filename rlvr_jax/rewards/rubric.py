"""Rubric and checklist reward aggregation.

A judge (an LLM, a classifier, a rule) scores each response on ``K`` rubric items; these pure
functions turn the ``[P, G, K]`` score tensor into one reward per response. The judge itself is
host-side and not part of this module.

* ``mode="weighted"`` (RLBFF-style principles, Rubric Anchors template; arXiv 2509.21319,
  2508.12790): ``R = V * sum_k w_k phi(s_k) / sum_k w_k`` with a veto
  ``V = prod_{k critical} 1[s_k >= tau]`` and an optional saturating
  ``phi(s) = (1 - exp(-kappa s)) / (1 - exp(-kappa))`` (identity when ``kappa`` is None). The
  papers' exact aggregation (saturation, pairwise interactions) was not available; this is the
  template of ``specs/rewards.md`` section 8.2 [UNVERIFIED].
* ``mode="openrs"`` (OpenRS pairwise meta-rubrics, arXiv 2602.14069; code
  Qwen-Applications/OpenRS @4c7f22b ``parse_pair_score``): signed scores; if any critical item is
  non-zero the result is the sum of the critical scores alone, otherwise
  ``sum_k w_k s_k / (sum_k w_k + 1e-6)``; results with ``|R| < min_score`` become 0.
* :func:`checklist_score` (CM2, arXiv 2602.12268): ``s = sum_k w_k * result_k * mask_k``.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array

# OpenRS importance levels (core / important / highlight); a "critical flaw" item is a veto.
OPENRS_WEIGHTS = {"core": 5.0, "important": 2.0, "highlight": 1.0}


@functools.partial(jax.jit, static_argnames=("kappa",))
def saturate(s: Array, kappa: float) -> Array:
  """Diminishing returns ``phi(s) = (1 - exp(-kappa s)) / (1 - exp(-kappa))``, ``phi(1) = 1``."""
  if kappa <= 0:
    raise ValueError(f"kappa must be > 0, got {kappa}")
  return -jnp.expm1(-kappa * s) / -jnp.expm1(-kappa)


@functools.partial(jax.jit, static_argnames=("mode", "kappa"))
def rubric_aggregate(scores: Array,
                     weights: Array,
                     is_veto: Array,
                     *,
                     mode: str = "weighted",
                     item_mask: Optional[Array] = None,
                     veto_threshold: float = 0.5,
                     kappa: Optional[float] = None,
                     min_score: float = 0.0,
                     eps: float = 1e-6) -> Array:
  """Aggregates per-item judge scores into one reward per response.

  Args:
    scores: ``[P, G, K]``; in ``[0, 1]`` for ``"weighted"``, signed for ``"openrs"``.
    weights: ``[P, K]`` non-negative item weights.
    is_veto: ``[P, K]`` bool, critical items.
    mode: ``"weighted"`` or ``"openrs"`` (see the module docstring).
    item_mask: ``[P, K]`` bool, valid items (padding excluded); default all valid.
    veto_threshold: ``tau``; a critical item scoring below it zeroes the reward (weighted mode).
    kappa: saturation strength for the weighted mode; None for a plain weighted mean.
    min_score: OpenRS dead zone: ``|R| < min_score`` gives 0.
    eps: denominator guard of the OpenRS weighted mean (``1e-6`` as in its code).

  Returns:
    ``[P, G]`` float32 rewards.
  """
  s = jnp.asarray(scores, jnp.float32)
  w = jnp.asarray(weights, jnp.float32)
  veto = jnp.asarray(is_veto, bool)
  if s.ndim != 3 or w.shape != (s.shape[0], s.shape[2]) or veto.shape != w.shape:
    raise ValueError(f"need scores [P,G,K], weights and is_veto [P,K]; got {s.shape}, "
                     f"{w.shape}, {veto.shape}")
  valid = (jnp.ones(w.shape, bool) if item_mask is None else jnp.asarray(item_mask, bool))
  w = w * valid
  veto = veto & valid
  if mode == "weighted":
    phi = s if kappa is None else saturate(s, kappa)
    mean = (phi * w[:, None, :]).sum(-1) / jnp.maximum(w.sum(-1), 1e-30)[:, None]
    passed = jnp.all(jnp.where(veto[:, None, :], s >= veto_threshold, True), axis=-1)
    return jnp.where(passed, mean, 0.0)
  if mode == "openrs":
    crit = veto[:, None, :]
    crit_sum = jnp.where(crit, s, 0.0).sum(-1)
    any_crit = jnp.any(crit & (s != 0), axis=-1)
    mean = (s * w[:, None, :]).sum(-1) / (w.sum(-1)[:, None] + eps)
    r = jnp.where(any_crit, crit_sum, mean)
    return jnp.where(jnp.abs(r) < min_score, 0.0, r)
  raise ValueError(f"mode must be 'weighted' or 'openrs', got {mode!r}")


@functools.partial(jax.jit, static_argnames=("normalize",))
def checklist_score(results: Array, weights: Array, mask: Optional[Array] = None, *,
                    normalize: bool = False) -> Array:
  """CM2 checklist score ``s = sum_k w_k * result_k * mask_k`` over the last axis.

  CM2 labels weights that sum to 1 per turn; with ``normalize=True`` the sum is divided by
  ``sum_k w_k mask_k`` so that arbitrary weights also give a score in ``[0, 1]``.
  """
  r = jnp.asarray(results, jnp.float32)
  w = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), r.shape)
  m = jnp.ones_like(r) if mask is None else jnp.broadcast_to(jnp.asarray(mask, jnp.float32),
                                                              r.shape)
  total = (w * r * m).sum(-1)
  if normalize:
    total = total / jnp.maximum((w * m).sum(-1), 1e-30)
  return total


@jax.jit
def bidirectional_verdict(score_fwd: Array, score_bwd: Array, margin: float = 0.0) -> Array:
  """OpenRS position-debiased pairwise verdict for response A against B.

  ``score_fwd`` judges (A, B) and ``score_bwd`` judges (B, A), both signed towards the first
  response. Returns ``+1`` (A better) iff ``score_fwd > margin`` and ``score_bwd <= -margin``,
  ``-1`` (A worse) for the mirror image (``score_bwd > margin`` and ``score_fwd <= -margin``),
  else ``0`` (tie).
  """
  f = jnp.asarray(score_fwd, jnp.float32)
  b = jnp.asarray(score_bwd, jnp.float32)
  good = (f > margin) & (b <= -margin)
  bad = (b > margin) & (f <= -margin)
  return jnp.where(good, 1.0, jnp.where(bad, -1.0, 0.0))
