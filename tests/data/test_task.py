"""The task protocol's helpers: the positioned training stream, distinct held-out prompts."""

import numpy as np
import pytest

from rlvr_jax.data import procedural
from rlvr_jax.data import task as task_lib


class _Finite:
  name = "finite"

  def __init__(self, n=3):
    self.n = n

  def examples(self, split, seed=0):
    rng = np.random.default_rng(seed)
    return iter([task_lib.Example(f"{split}{i}", str(i), "exact")
                 for i in rng.permutation(self.n)])


def test_training_stream_is_positioned_and_cycles_finite_sources():
  task = procedural.Arithmetic(max_value=9)
  full = [e.prompt for e in procedural.take(task, "train", 20, seed=5)]
  resumed = task_lib.training_stream(task, 5, 7)
  assert [next(resumed).prompt for _ in range(13)] == full[7:]
  epochs = [x.prompt for _, x in zip(range(9), task_lib.training_stream(_Finite(), 0))]
  assert sorted(epochs[:3]) == sorted(epochs[3:6]) == ["train0", "train1", "train2"]
  assert epochs[:3] != epochs[3:6] or epochs[3:6] != epochs[6:9]  # a fresh shuffle per epoch
  assert [x.prompt for _, x in zip(range(5),
                                   task_lib.training_stream(_Finite(), 0, 4))] == epochs[4:9]


def test_distinct_examples_are_distinct_and_never_in_training():
  task = procedural.Arithmetic(max_value=20)
  heldout = task_lib.distinct_examples(task, "test", 30, seed=0)
  assert len({e.prompt for e in heldout}) == 30
  train = {e.prompt for e in procedural.take(task, "train", 2000, seed=0)}
  assert not train & {e.prompt for e in heldout}
  with pytest.raises(ValueError, match="only 3 distinct"):
    task_lib.distinct_examples(_Finite(), "test", 4, seed=0)


class _Listed:
  """A task source over fixed lists per split (empty lists allowed)."""

  name = "listed"

  def __init__(self, **splits):
    self.splits = splits
    self.calls = 0

  def examples(self, split, seed=0):
    self.calls += 1
    return iter(self.splits[split][seed % 2:] + self.splits[split][:seed % 2])


def test_training_stream_repeats_with_fresh_seeds():
  a, b = (task_lib.Example(p, "1", "exact") for p in "ab")
  stream = task_lib.training_stream(_Listed(train=[a, b]), seed=0)
  assert [next(stream).prompt for _ in range(5)] == ["a", "b", "b", "a", "a"]


def test_training_stream_raises_instead_of_spinning_on_an_empty_split():
  source = _Listed(train=[])
  stream = task_lib.training_stream(source, seed=3)
  with pytest.raises(task_lib.EmptySplitError, 
                     match="task 'listed' split 'train' yielded no examples"):
    next(stream)
  assert source.calls == 1
