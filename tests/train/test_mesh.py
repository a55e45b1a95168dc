"""Tests for rlvr_jax.train.mesh: how a batch every process holds is split between processes."""

import numpy as np
import pytest

from rlvr_jax.train import mesh as mesh_lib


def test_process_rows_gives_each_process_its_block_in_order():
  batch = {"tokens": np.arange(24).reshape(8, 3), "rewards": np.arange(8.0)}
  parts = [mesh_lib.process_rows(batch, i, 4) for i in range(4)]
  # The blocks, concatenated in process order, are the batch: no row is used twice or dropped.
  np.testing.assert_array_equal(np.concatenate([p["tokens"] for p in parts]), batch["tokens"])
  np.testing.assert_array_equal(parts[2]["rewards"], [4.0, 5.0])


def test_process_rows_in_one_process_is_the_whole_batch():
  batch = np.arange(6)
  np.testing.assert_array_equal(mesh_lib.process_rows(batch), batch)


def test_process_rows_rejects_a_batch_that_does_not_split():
  with pytest.raises(ValueError, match="does not split"):
    mesh_lib.process_rows(np.arange(6), 0, 4)
