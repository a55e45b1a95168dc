"""Evaluation: pass@k, mean@k, maj@k, CoT-pass@k and per-task / per-difficulty breakdowns.

The metrics live in :mod:`rlvr_jax.eval.metrics` and are re-exported here; they import only
numpy and jax.
"""

from rlvr_jax.eval.metrics import cot_correct_counts
from rlvr_jax.eval.metrics import cot_pass_at_k
from rlvr_jax.eval.metrics import group_by
from rlvr_jax.eval.metrics import maj_at_k
from rlvr_jax.eval.metrics import mean_at_k
from rlvr_jax.eval.metrics import model_collapse_step
from rlvr_jax.eval.metrics import pass_at_k
from rlvr_jax.eval.metrics import pass_at_k_jax
from rlvr_jax.eval.metrics import summarize

__all__ = [
    "cot_correct_counts", "cot_pass_at_k", "group_by", "maj_at_k", "mean_at_k",
    "model_collapse_step", "pass_at_k", "pass_at_k_jax", "summarize",
]
