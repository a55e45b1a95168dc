"""The task protocol: what a task source hands the trainer and the evaluator.

A task source yields :class:`Example` records. Each carries its prompt (plain text or chat
messages), its gold answer, and the *name* of the verifier that scores a completion against that
gold. Verifiers are looked up by name in a registry rather than stored as callables, so examples
stay picklable (verifiers run in worker processes) and serialisable (JSONL files, checkpoints of
the data-iterator position).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, List, Mapping, Protocol, Sequence, Union

ChatMessages = List[Dict[str, str]]
Prompt = Union[str, ChatMessages]

# A verifier scores one completion against one example's gold answer; 1.0 means correct.
Verifier = Callable[[str, "Example"], float]


@dataclasses.dataclass(frozen=True)
class Example:
  """One task instance.

  Attributes:
    prompt: plain text, or chat messages ``[{"role": ..., "content": ...}, ...]`` to be rendered
      with the tokenizer's chat template.
    answer: the gold answer, as the verifier expects it (e.g. ``"42"``, ``"\\frac{1}{2}"``).
    verifier: name of a verifier in the registry (see :func:`register_verifier`).
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


_VERIFIERS: Dict[str, Verifier] = {}


def register_verifier(name: str, fn: Verifier) -> Verifier:
  """Registers ``fn`` under ``name``; re-registering the same name replaces it."""
  _VERIFIERS[name] = fn
  return fn


def get_verifier(name: str) -> Verifier:
  """The verifier registered under ``name``; a clear error lists the known ones."""
  try:
    return _VERIFIERS[name]
  except KeyError:
    raise KeyError(
        f"No verifier named {name!r}; registered: {sorted(_VERIFIERS)}") from None


def registered_verifiers() -> Sequence[str]:
  """The names of all registered verifiers, sorted."""
  return sorted(_VERIFIERS)
