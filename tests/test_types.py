"""Tests for rlvr_jax.types: the global normalisers and the rollout mask."""

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import types


def test_global_counts_counts_tokens_nonempty_sequences_and_distinct_groups():
  mask = np.ones((6, 3), np.float32)
  mask[1] = 0  # An empty completion: no tokens, not a sequence.
  mask[4, 2] = 0
  counts = types.global_counts(jnp.asarray(mask), jnp.array([3, 3, 0, 0, 7, 7]))
  assert float(counts.num_tokens) == 14.0
  assert float(counts.num_sequences) == 5.0
  assert float(counts.num_groups) == 3.0


def test_global_counts_is_jittable_and_matches_eager():
  mask = jnp.asarray(np.random.default_rng(0).integers(0, 2, (8, 5)), jnp.float32)
  ids = jnp.array([5, 5, 1, 1, 9, 9, 2, 2])
  eager = types.global_counts(mask, ids)
  jitted = jax.jit(types.global_counts)(mask, ids)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
    assert float(a) == float(b)
  assert float(eager.num_groups) == 4.0


def test_rollout_mask_covers_exactly_the_first_length_tokens():
  rollout = types.Rollout(
      prompt_tokens=jnp.zeros((2, 3), jnp.int32), prompt_mask=jnp.ones((2, 3), bool),
      tokens=jnp.zeros((2, 4), jnp.int32), logprobs=jnp.zeros((2, 4)),
      lengths=jnp.array([0, 3]), truncated=jnp.array([False, False]))
  np.testing.assert_array_equal(rollout.mask, [[0, 0, 0, 0], [1, 1, 1, 0]])
