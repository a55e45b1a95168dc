"""DAPO dynamic sampling: the variance filter, accumulation over rounds, filler groups."""

import numpy as np
import pytest

from rlvr_jax.train.stages import dynamic_sampling as ds


def test_zero_variance_groups():
  r = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0.5, 0.5, 0.5 + 1e-9]])
  np.testing.assert_array_equal(ds.zero_variance_groups(r), [True, True, False, False])
  np.testing.assert_array_equal(ds.zero_variance_groups(r, atol=1e-6), [True, True, False, True])
  with pytest.raises(ValueError, match=r"\[P, G\]"):
    ds.zero_variance_groups(np.zeros(3))


def _round(ids, rewards):
  ids = np.asarray(ids)
  return {"prompt_id": ids, "tokens": np.repeat(ids[:, None, None], 2, 1).repeat(3, 2)}, rewards


def test_dynamic_sampling_accumulates_until_full():
  state = ds.DynamicSamplingState()
  target, max_rounds = 3, 5
  # Round 1 keeps groups 0 and 2, round 2 keeps group 4: full after two rounds.
  rounds = iter([
      _round([0, 1, 2], np.array([[1, 0], [1, 1], [0, 1]])),
      _round([3, 4, 5], np.array([[0, 0], [1, 0], [0, 0]])),
      _round([6, 7, 8], np.array([[0, 1], [1, 0], [1, 0]])),
  ])
  while not state.done(target, max_rounds):
    state = ds.filter_and_accumulate(state, *next(rounds))
  assert (state.num_kept, state.num_rounds, state.num_generated) == (3, 2, 6)
  # A round that overshoots is truncated by take_batch.
  state = ds.filter_and_accumulate(state, *next(rounds))
  assert state.num_kept == 6
  out = ds.take_batch(state, target)
  np.testing.assert_array_equal(out["prompt_id"], [0, 2, 4])  # earliest survivors first
  np.testing.assert_array_equal(out["tokens"][:, 0, 0], [0, 2, 4])
  assert out["tokens"].shape == (3, 2, 3)


def test_dynamic_sampling_round_cap():
  state = ds.DynamicSamplingState()
  for ids in ([0, 1], [2, 3]):
    batch, rewards = _round(ids, np.array([[1, 0], [0, 0]]))
    state = ds.filter_and_accumulate(state, batch, rewards)
  assert state.done(target_groups=4, max_rounds=2) and not state.full(4)
  assert not state.done(target_groups=4, max_rounds=0)  # 0 = unlimited, as verl
  with pytest.raises(RuntimeError, match="kept 2/4 groups after 2 rounds"):
    ds.take_batch(state, 4)
  np.testing.assert_array_equal(ds.take_batch(state, 4, allow_partial=True)["prompt_id"], [0, 2])


def test_dynamic_sampling_keeps_single_sample_groups():
  state = ds.filter_and_accumulate(ds.DynamicSamplingState(), {"id": np.arange(3)},
                                   np.array([[1.0], [0.0], [1.0]]))
  assert state.num_kept == 3


def test_dynamic_sampling_shape_checks():
  with pytest.raises(ValueError, match="leading"):
    ds.filter_and_accumulate(ds.DynamicSamplingState(), {"x": np.zeros(3)}, np.zeros((2, 2)))
  state = ds.filter_and_accumulate(ds.DynamicSamplingState(), {"x": np.zeros(1)},
                                   np.array([[0, 1]]))
  with pytest.raises(ValueError, match="keys"):
    ds.filter_and_accumulate(state, {"y": np.zeros(1)}, np.array([[0, 1]]))


def test_fill_groups_pads_with_masked_groups():
  kept = {"mask": np.ones((1, 2, 3)), "raw_rewards": np.array([[1.0, 0.0]])}
  filler = {"mask": np.ones((2, 2, 3)), "raw_rewards": np.ones((2, 2))}
  out = ds.fill_groups(kept, filler, 3)
  assert out["mask"].shape == (3, 2, 3)
  np.testing.assert_array_equal(out["mask"][1:], 0.0)
  np.testing.assert_array_equal(out["raw_rewards"], [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
  assert filler["mask"].sum() == 12  # the filler itself is not modified
