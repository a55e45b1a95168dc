"""Aggregation modes against numpy formulas (spec §1.4), with global counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.objectives import aggregation
from rlvr_jax.types import GlobalCounts, global_counts

LENGTHS = np.array([3, 0, 5, 1, 4, 2])
T = 5
MASK = (np.arange(T)[None] < LENGTHS[:, None]).astype(np.float32)
LOSS = np.arange(30, dtype=np.float32).reshape(6, T) / 7.0 - 1.0
GROUPS = np.array([0, 0, 0, 1, 1, 1], np.int32)
COUNTS = global_counts(jnp.asarray(MASK), jnp.asarray(GROUPS))


def test_counts():
  assert float(COUNTS.num_tokens) == 15 and float(COUNTS.num_sequences) == 5
  assert float(COUNTS.num_groups) == 2


def test_token_level_modes_match_numpy():
  m, l = MASK, LOSS
  nonempty = LENGTHS > 0
  np.testing.assert_allclose(aggregation.token_mean(l, m, COUNTS), (l * m).sum() / 15, rtol=1e-6)
  per_seq = (l * m).sum(-1)[nonempty] / LENGTHS[nonempty]
  np.testing.assert_allclose(aggregation.seq_mean_token_mean(l, m, COUNTS), per_seq.mean(),
                             rtol=1e-6)
  np.testing.assert_allclose(aggregation.seq_mean_token_sum(l, m, COUNTS), (l * m).sum() / 5,
                             rtol=1e-6)
  np.testing.assert_allclose(
      aggregation.sum_over_constant(l, m, COUNTS, constant=8.0), (l * m).sum() / 8 / 5, rtol=1e-6)
  np.testing.assert_allclose(
      aggregation.sum_over_constant(l, m, COUNTS, constant=8.0, per_sequence=False),
      (l * m).sum() / 8, rtol=1e-6)


def test_sequence_level_modes():
  seq = np.array([1.0, 100.0, 2.0, 3.0, 4.0, 5.0], np.float32)  # the empty sequence is ignored
  np.testing.assert_allclose(aggregation.sequence_mean(seq, MASK, COUNTS), 15 / 5, rtol=1e-6)
  np.testing.assert_allclose(aggregation.group_sum(seq, MASK, COUNTS), seq.sum() / 2, rtol=1e-6)


@pytest.mark.parametrize("fn", [aggregation.token_mean, aggregation.seq_mean_token_mean,
                                aggregation.seq_mean_token_sum,
                                lambda l, m, c: aggregation.sum_over_constant(l, m, c,
                                                                              constant=3.0)])
def test_micro_batches_with_global_counts_add_up(fn):
  full = fn(LOSS, MASK, COUNTS)
  parts = sum(fn(LOSS[i:i + 2], MASK[i:i + 2], COUNTS) for i in range(0, 6, 2))
  np.testing.assert_allclose(parts, full, rtol=1e-6)


def test_empty_batch_is_zero_and_shapes_are_checked():
  zero = GlobalCounts(jnp.float32(0), jnp.float32(0), jnp.float32(0))
  assert float(aggregation.token_mean(LOSS, np.zeros_like(MASK), zero)) == 0.0
  assert float(aggregation.seq_mean_token_mean(LOSS, np.zeros_like(MASK), zero)) == 0.0
  with pytest.raises(ValueError):
    aggregation.token_mean(LOSS[:, :2], MASK, COUNTS)
  with pytest.raises(ValueError):
    aggregation.sequence_mean(LOSS, MASK, COUNTS)
  with pytest.raises(ValueError):
    aggregation.sum_over_constant(LOSS, MASK, COUNTS, constant=0.0)


def verl_091_agg_loss(loss_mat, loss_mask, mode, loss_scale_factor=None):
  """numpy transcription of verl 0.9.1 ``core_algos.agg_loss`` (dp_size 1, local batch)."""
  if mode == "token-mean":
    return (loss_mat * loss_mask).sum() / loss_mask.sum()
  seq_mask = (loss_mask.sum(-1) > 0).astype(np.float32)
  if mode in ("seq-mean-token-sum", "seq-mean-token-sum-norm"):
    seq_losses = (loss_mat * loss_mask).sum(-1)
    loss = (seq_losses * seq_mask).sum() / seq_mask.sum()
    if mode == "seq-mean-token-sum-norm":
      loss /= loss_mask.shape[-1] if loss_scale_factor is None else loss_scale_factor
    return loss
  assert mode == "seq-mean-token-mean"
  seq_losses = (loss_mat * loss_mask).sum(-1) / (loss_mask.sum(-1) + 1e-8)
  return (seq_losses * seq_mask).sum() / seq_mask.sum()


def test_modes_equal_verl_091_agg_loss():
  m, l = MASK, LOSS
  np.testing.assert_allclose(aggregation.token_mean(l, m, COUNTS),
                             verl_091_agg_loss(l, m, "token-mean"), rtol=1e-6)
  np.testing.assert_allclose(aggregation.seq_mean_token_mean(l, m, COUNTS),
                             verl_091_agg_loss(l, m, "seq-mean-token-mean"), rtol=1e-6)
  np.testing.assert_allclose(aggregation.seq_mean_token_sum(l, m, COUNTS),
                             verl_091_agg_loss(l, m, "seq-mean-token-sum"), rtol=1e-6)
  # Dr. GRPO: verl 0.9.1's seq-mean-token-sum-norm is the per-sequence form (sequence mean of
  # token sums, then / C), not Σ/C.
  np.testing.assert_allclose(
      aggregation.sum_over_constant(l, m, COUNTS, constant=8.0, per_sequence=True),
      verl_091_agg_loss(l, m, "seq-mean-token-sum-norm", loss_scale_factor=8.0), rtol=1e-6)
  assert not np.isclose(
      aggregation.sum_over_constant(l, m, COUNTS, constant=8.0, per_sequence=False),
      verl_091_agg_loss(l, m, "seq-mean-token-sum-norm", loss_scale_factor=8.0))


AGGREGATIONS = {
    "token_mean": aggregation.token_mean,
    "seq_mean_token_mean": aggregation.seq_mean_token_mean,
    "seq_mean_token_sum": aggregation.seq_mean_token_sum,
    "sum_over_constant": lambda l, m, c: aggregation.sum_over_constant(l, m, c, constant=3.0),
    "sum_over_constant_total": lambda l, m, c: aggregation.sum_over_constant(
        l, m, c, constant=3.0, per_sequence=False),
}


@pytest.mark.parametrize("name", sorted(AGGREGATIONS))
def test_inf_and_nan_on_masked_positions_change_nothing(name):
  fn = AGGREGATIONS[name]
  dirty = LOSS.copy()
  padding = MASK == 0
  dirty[padding] = np.resize(np.array([np.nan, np.inf, -np.inf], np.float32), padding.sum())
  value, grad = jax.value_and_grad(lambda l: fn(l, MASK, COUNTS))(jnp.asarray(dirty))
  np.testing.assert_allclose(value, fn(LOSS, MASK, COUNTS), rtol=1e-6)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(np.asarray(grad)[padding], 0.0)
  # The gradient on valid tokens is the mask weight over the normaliser (a linear map).
  clean_grad = jax.grad(lambda l: fn(l, MASK, COUNTS))(jnp.asarray(LOSS))
  np.testing.assert_allclose(grad, clean_grad, rtol=1e-6)


def test_sequence_mean_ignores_nan_on_empty_sequences():
  seq = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0], np.float32)  # row 1 is empty
  value, grad = jax.value_and_grad(lambda l: aggregation.sequence_mean(l, MASK, COUNTS))(
      jnp.asarray(seq))
  np.testing.assert_allclose(value, 15 / 5, rtol=1e-6)
  np.testing.assert_allclose(grad, [0.2, 0.0, 0.2, 0.2, 0.2, 0.2], rtol=1e-6)
