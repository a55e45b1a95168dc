"""Aggregation modes against numpy formulas (spec §1.4), with global counts."""

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
