"""DAPO's overlong filter: truncated samples leave the loss, not the advantage stage."""

import numpy as np
import pytest

from rlvr_jax.train.stages import overlong


def test_overlong_filter_zeroes_truncated_samples_only():
  in_loss = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
  out = overlong.overlong_filter(in_loss, np.array([[0, 1, 0], [1, 0, 0]]))
  np.testing.assert_array_equal(out, [[1, 0, 0], [0, 1, 1]])
  assert out.dtype == np.float32
  with pytest.raises(ValueError, match="must match"):
    overlong.overlong_filter(in_loss, np.zeros(3))
