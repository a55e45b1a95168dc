"""DAPO's overlong filtering (arXiv 2503.14476 §3.4): truncated samples leave the loss.

A sequence cut at ``max_new_tokens`` has no final answer to judge, so it is removed from the loss
and, through the global counts, from the normaliser; the advantage stage still sees it (its group
statistics are unchanged, as in verl). Config (``config.rl.stages.overlong_filter``): no keys.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from rlvr_jax.train.stages import base

DEFAULTS: Dict[str, Any] = {}


def overlong_filter(in_loss: np.ndarray, truncated: np.ndarray) -> np.ndarray:
  """``in_loss`` (any shape) with truncated samples (``truncated`` of the same shape) zeroed."""
  in_loss = np.asarray(in_loss)
  truncated = np.asarray(truncated).astype(bool)
  if in_loss.shape != truncated.shape:
    raise ValueError(f"in_loss {in_loss.shape} and truncated {truncated.shape} must match.")
  return np.where(truncated, np.zeros_like(in_loss), in_loss)


class OverlongFilter(base.Stage):
  """Zeroes ``in_loss`` of truncated samples."""

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    del settings, run

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    del ctx
    in_loss = overlong_filter(group["in_loss"], group["truncated"])
    live = group["valid"] & (group["mask"].sum(axis=2) > 0)
    dropped = float(((group["in_loss"] > 0) & (in_loss == 0) & live).sum())
    return dict(group, in_loss=in_loss), {"overlong_filter/dropped": dropped}
