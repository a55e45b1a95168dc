"""The verifier registry: verifiers are looked up by name.

An :class:`rlvr_jax.data.task.Example` carries the *name* of the verifier that scores a completion
against its gold answer, not a callable, so examples stay picklable (verifiers run in worker
processes) and serialisable (JSONL files, checkpoints of the data-iterator position). Modules that
define verifiers register them on import: :mod:`rlvr_jax.rewards.verifiers` (the standard ones),
:mod:`rlvr_jax.data.procedural` and :mod:`rlvr_jax.data.gym` (their tasks' own), and a user's
module named in ``config.reward.verifier_modules``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Sequence

# A verifier scores one completion against one example's gold answer; 1.0 means correct.
Verifier = Callable[[str, Any], float]

_VERIFIERS: Dict[str, Verifier] = {}


def register_verifier(name: str, fn: Verifier) -> Verifier:
  """Registers ``fn(completion, example) -> float`` under ``name``; re-registering replaces it."""
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
