"""Aggregation (stage N): per-token or per-sequence losses -> one scalar.

Every normaliser is taken from ``rlvr_jax.types.GlobalCounts`` of the *whole* batch, never from the
(micro-)batch at hand, so that summing the losses of micro-batches gives exactly the loss of the
full batch (and the same gradient) under gradient accumulation. Numerators are plain masked sums.

Token-level aggregators take ``loss`` ``[B, T]``; sequence-level ones take ``loss`` ``[B]`` (one
value per sequence, e.g. GMPO, PACS) or one value per group stored on one sequence of the group
(REAL). All of them have the signature ``(loss, mask, counts) -> scalar`` so that presets can swap
them; extra numerics are keyword-only and bound with ``functools.partial``.

References (the modes and their names): verl ``agg_loss`` (``token-mean``, ``seq-mean-token-mean``,
``seq-mean-token-sum``, ``seq-mean-token-sum-norm``); Dr. GRPO, arXiv 2503.20783 (constant
normaliser); DAPO, arXiv 2503.14476 (token-level loss); GRPO, arXiv 2402.03300 (sequence mean of
token means).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax.types import GlobalCounts

Array = jax.Array


def _check_token_level(loss: Array, mask: Array) -> None:
  if loss.ndim != 2 or loss.shape != mask.shape:
    raise ValueError(
        f"token-level aggregation needs loss and mask of the same shape [B, T]; got loss "
        f"{loss.shape}, mask {mask.shape}")


def _check_sequence_level(loss: Array, mask: Array) -> None:
  if loss.ndim != 1 or mask.ndim != 2 or loss.shape[0] != mask.shape[0]:
    raise ValueError(
        f"sequence-level aggregation needs loss [B] and mask [B, T]; got loss {loss.shape}, "
        f"mask {mask.shape}")


def _masked(loss: Array, mask: Array) -> Array:
  # ``m·l`` by select, not multiply: a masked position may hold inf/NaN (log-probs of padding,
  # huge ratios) and ``inf * 0`` is NaN; the select also gives it an exactly zero gradient.
  return jnp.where(mask > 0, loss * mask, 0.0)


def _safe(count: Array) -> Array:
  # A batch with no valid token (or sequence) has a zero numerator too; dividing by 1 keeps it 0.
  return jnp.maximum(jnp.asarray(count, jnp.float32), 1.0)


def token_mean(loss: Array, mask: Array, counts: GlobalCounts) -> Array:
  """``Σ_{i,t} m·l / N_tok`` with ``N_tok`` the global token count (DAPO, arXiv 2503.14476).

  verl ``loss_agg_mode='token-mean'``; TRL ``loss_type='dapo'`` (and ``'cispo'``).
  """
  _check_token_level(loss, mask)
  return jnp.sum(_masked(loss, mask)) / _safe(counts.num_tokens)


def seq_mean_token_mean(loss: Array, mask: Array, counts: GlobalCounts) -> Array:
  """``(1/N_seq) Σ_i [Σ_t m·l / T_i]`` (GRPO, arXiv 2402.03300 eq. 3; GSPO, arXiv 2507.18071).

  ``T_i`` is the sequence's own token count (local to the sequence, so micro-batch safe); empty
  sequences contribute 0 and are not in ``N_seq`` (``counts.num_sequences``). verl
  ``seq-mean-token-mean``; TRL ``loss_type='grpo'``.
  """
  _check_token_level(loss, mask)
  per_sequence = (jnp.sum(_masked(loss, mask), axis=-1)
                  / jnp.maximum(jnp.sum(mask, axis=-1), 1.0))
  return jnp.sum(per_sequence) / _safe(counts.num_sequences)


def seq_mean_token_sum(loss: Array, mask: Array, counts: GlobalCounts) -> Array:
  """``(1/N_seq) Σ_i Σ_t m·l`` (verl ``seq-mean-token-sum``; sequence-level REINFORCE/RLOO)."""
  _check_token_level(loss, mask)
  return jnp.sum(_masked(loss, mask)) / _safe(counts.num_sequences)


def sum_over_constant(loss: Array, mask: Array, counts: GlobalCounts, *, constant: float,
                      per_sequence: bool = True) -> Array:
  """Dr. GRPO's constant normaliser (arXiv 2503.20783, "Modification 2").

  ``per_sequence=True``: ``(1/N_seq) Σ_i Σ_t m·l / C`` (oat / understand-r1-zero, with
  ``C = generate_max_length`` = 3000; TRL ``loss_type='dr_grpo'``, ``C = max_completion_length``;
  verl 0.9.1 ``loss_agg_mode='seq-mean-token-sum-norm'`` with ``loss_scale_factor = C``, which
  averages the per-sequence token sums over the global batch before dividing by ``C``).
  ``per_sequence=False``: ``Σ_{i,t} m·l / C``, without the sequence mean (the form of verl's
  ``seq-mean-token-sum-norm`` before 0.9, e.g. at commit b178a3c: ``sum(seq_losses) / C``).
  The two differ by the factor ``1/N_seq``.
  """
  _check_token_level(loss, mask)
  if constant <= 0:
    raise ValueError(f"constant must be positive, got {constant}")
  total = jnp.sum(_masked(loss, mask)) / constant
  return total / _safe(counts.num_sequences) if per_sequence else total


def sequence_mean(loss: Array, mask: Array, counts: GlobalCounts) -> Array:
  """``(1/N_seq) Σ_i l_i`` over non-empty sequences, for per-sequence losses ``[B]``.

  Used by GMPO (arXiv 2507.20673), PACS (arXiv 2509.02522) and the LaSeR MSE (arXiv 2510.14943).
  """
  _check_sequence_level(loss, mask)
  nonempty = jnp.sum(mask, axis=-1) > 0
  return jnp.sum(_masked(loss, nonempty.astype(loss.dtype))) / _safe(counts.num_sequences)


def group_sum(loss: Array, mask: Array, counts: GlobalCounts) -> Array:
  """``(1/N_groups) Σ_groups l_g`` for group-level losses stored as ``[B]`` (REAL, arXiv 2602.05630).

  The group surrogate writes each group's loss on one sequence of the group and 0 elsewhere, so a
  plain sum over ``B`` is the sum over groups. Dividing by *all* groups (also those skipped for
  lacking one class) follows the official REAL code (``per_question_loss.sum() / num_questions``).
  """
  _check_sequence_level(loss, mask)
  return jnp.sum(loss) / _safe(counts.num_groups)
