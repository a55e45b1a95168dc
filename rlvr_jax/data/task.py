"""The task protocol: what a task source hands the trainer and the evaluator.

A task source yields :class:`Example` records. Each carries its prompt (plain text or chat
messages), its gold answer, and the *name* of the verifier that scores a completion against that
gold. Verifiers are looked up by name in :mod:`rlvr_jax.rewards.registry` rather than stored as
callables, so examples stay picklable and serialisable.
"""

from __future__ import annotations

import dataclasses
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
