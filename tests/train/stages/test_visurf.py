"""ViSurf: ground-truth injection as sample G+1, the gold completion and its arrays."""

import numpy as np
import pytest

from rlvr_jax.data import task as task_lib
from rlvr_jax.train.stages import visurf as ds


def test_inject_ground_truth():
  batch = {"tokens": np.arange(2 * 3 * 4).reshape(2, 3, 4), "rewards": np.zeros((2, 3))}
  ref = {"tokens": np.full((2, 4), -1), "rewards": np.ones(2)}
  out = ds.inject_ground_truth(batch, ref)
  assert out["tokens"].shape == (2, 4, 4)
  np.testing.assert_array_equal(out["tokens"][:, :3], batch["tokens"])
  np.testing.assert_array_equal(out["tokens"][:, 3], -1)
  np.testing.assert_array_equal(out["rewards"], [[0, 0, 0, 1]] * 2)
  np.testing.assert_array_equal(out["is_injected"], [[False, False, False, True]] * 2)
  with pytest.raises(ValueError, match="reference"):
    ds.inject_ground_truth(batch, {"tokens": np.zeros((2, 5)), "rewards": np.ones(2)})


def test_completion_arrays():
  out = ds.completion_arrays([[5, 2], [7, 8, 9, 2]], 3, pad_id=0)
  np.testing.assert_array_equal(out["tokens"], [[5, 2, 0], [7, 8, 9]])
  np.testing.assert_array_equal(out["lengths"], [2, 3])
  np.testing.assert_array_equal(out["mask"], [[1, 1, 0], [1, 1, 1]])
  np.testing.assert_array_equal(out["truncated"], [0, 1])


def test_gold_completion_prefers_the_sft_target():
  assert ds.gold_completion(task_lib.Example("12+30=", "42", "procedural/integer")) == "42"
  assert ds.gold_completion(task_lib.Example("q", "a", "math", {"sft_target": "\\boxed{a}"})) == (
      "\\boxed{a}")
