"""Metric reduction: per-token / per-sequence diagnostics to scalars that add up over micro-batches.

An objective's metrics are a flat dict of scalars. Every metric is a sum with the *global* count
already divided out (``Σ valid·x / N``), so the metrics of the micro-batches of one batch **add
up** to the full batch's; names whose last word is ``min`` or ``max`` (``.../min``, ``..._max``)
are masked minima/maxima instead and combine by min/max. ``combine_metrics`` does exactly that
(the trainer's update step calls it).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

from rlvr_jax.types import GlobalCounts

Array = jax.Array
Metrics = dict[str, Array]
sg = jax.lax.stop_gradient

_EXTREMUM = re.compile(r"(?:^|[/_])(min|max)$")


def reduction(name: str) -> str:
  """``'min'``, ``'max'`` or ``'mean'``: how the metric ``name`` is reduced and combined."""
  match = _EXTREMUM.search(name)
  return match.group(1) if match else "mean"


def summarize(diagnostics: Mapping[str, Array], mask: Array, counts: GlobalCounts) -> Metrics:
  """Reduces per-token ``[B,T]`` (or per-sequence ``[B]``) diagnostics to scalar metrics.

  Names whose last word is ``min``/``max`` get the masked min/max (``+inf``/``-inf`` on a
  micro-batch with no valid token); they may also be scalars (a coefficient, passed through).
  All others get ``Σ valid·x / N`` with the *global* token (or non-empty sequence) count, so that
  micro-batch values add up to the full-batch mean. Invalid positions are removed by select, so
  inf/NaN there never reaches a metric.
  """
  mask = jnp.asarray(mask, jnp.float32)
  valid_seq = jnp.sum(mask, axis=-1) > 0
  out = {}
  for name, value in diagnostics.items():
    value = sg(jnp.asarray(value, jnp.float32))
    kind = reduction(name)
    if value.ndim == 0 and kind != "mean":
      out[name] = value
      continue
    if value.shape == mask.shape:
      valid, count = mask > 0, counts.num_tokens
    elif value.shape == mask.shape[:1]:
      valid, count = valid_seq, counts.num_sequences
    else:
      raise ValueError(f"diagnostic {name!r} has shape {value.shape}; expected [B,T] or [B] "
                       "(or a scalar for a min/max name)")
    if kind == "min":
      out[name] = jnp.min(jnp.where(valid, value, jnp.inf))
    elif kind == "max":
      out[name] = jnp.max(jnp.where(valid, value, -jnp.inf))
    else:
      out[name] = jnp.sum(jnp.where(valid, value, 0.0)) / jnp.maximum(count, 1.0)
  return out


def combine_metrics(per_micro_batch: Sequence[Mapping[str, Array]]) -> Metrics:
  """Combines the metrics of the micro-batches of one batch: sums, except min/max names."""
  if not per_micro_batch:
    return {}
  out = {}
  for name in per_micro_batch[0]:
    values = jnp.stack([jnp.asarray(m[name]) for m in per_micro_batch])
    kind = reduction(name)
    out[name] = (jnp.min(values) if kind == "min" else
                 jnp.max(values) if kind == "max" else jnp.sum(values))
  return out
