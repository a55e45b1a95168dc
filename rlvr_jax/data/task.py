"""The task protocol: what a task source hands the trainer and the evaluator.

A task source yields :class:`Example` records. Each carries its prompt (plain text or chat
messages), its gold answer, and the *name* of the verifier that scores a completion against that
gold. Verifiers are looked up by name in :mod:`rlvr_jax.rewards.registry` rather than stored as
callables, so examples stay picklable and serialisable.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, Dict, Iterator, List, Mapping, Protocol, Union

ChatMessages = List[Dict[str, str]]
Prompt = Union[str, ChatMessages]

@dataclasses.dataclass(frozen=True)
class Example:
  """One task instance.

  Attributes:
    prompt: plain text, or chat messages ``[{"role": ..., "content": ...}, ...]`` to be rendered
      with the tokenizer's chat template.
    answer: the gold answer, as the verifier expects it (e.g. ``"42"``, ``"\\frac{1}{2}"``).
    verifier: name of a verifier in :mod:`rlvr_jax.rewards.registry`.
    metadata: free-form, JSON-serialisable (source id, difficulty, test cases, ...).
  """

  prompt: Prompt
  answer: str
  verifier: str
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class TaskSource(Protocol):
  """A deterministic source of examples.

  ``examples(split, seed)`` must yield the same sequence for the same arguments, so that a resumed
  run can skip exactly the examples it has already consumed.
  """

  name: str

  def examples(self, split: str, seed: int = 0) -> Iterator[Example]:
    """Yields the examples of ``split`` in a fixed order for this ``seed``."""
    ...


def distinct_examples(source: TaskSource, split: str, num: int, seed: int, *,
                      max_draws_per_example: int = 100) -> List[Example]:
  """The first ``num`` examples of ``source.examples(split, seed)`` with distinct prompts.

  Held-out evaluation and the warm-up's probe use it, so that a repeated prompt is not counted
  twice.

  Raises:
    ValueError: the split has fewer than ``num`` distinct prompts (a finite source ran out, or
      ``max_draws_per_example * num`` draws of an infinite one found no more).
  """
  seen, out = set(), []
  if num <= 0:
    return out
  draws = itertools.islice(source.examples(split, seed), max_draws_per_example * num)
  for example in draws:
    key = json.dumps(example.prompt, sort_keys=True)
    if key not in seen:
      seen.add(key)
      out.append(example)
      if len(out) == num:
        return out
  raise ValueError(f"Task {source.name!r}: split {split!r} has only {len(out)} distinct prompts; "
                   f"asked for {num}.")


class EmptySplitError(ValueError):
  """A task source yielded no examples for a split that must have some."""


def training_stream(source: TaskSource, seed: int, position: int = 0,
                    split: str = "train") -> Iterator[Example]:
  """An endless stream of ``split``, positioned after ``position`` consumed examples.

  A finite source repeats in epochs, epoch ``e`` drawn with seed ``seed + e`` (a fresh shuffle),
  so the stream is a pure function of ``(seed, position)`` and a resumed run continues with the
  same examples.

  Raises:
    EmptySplitError: an epoch yielded no example (an empty or all-filtered split), instead of
      cycling over empty epochs at full CPU forever.
  """

  def epochs():
    for epoch in itertools.count():
      empty = True
      for example in source.examples(split, seed + epoch):
        empty = False
        yield example
      if empty:
        raise EmptySplitError(
            f"task {getattr(source, 'name', type(source).__name__)!r} split {split!r} yielded "
            f"no examples (seed {seed + epoch}); check the task's files or filters.")

  return itertools.islice(epochs(), position, None)
