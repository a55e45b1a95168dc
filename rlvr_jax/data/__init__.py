"""Task sources and the task protocol.

Importing the package registers the standard verifiers (:mod:`rlvr_jax.data.verifiers`) and the
procedural tasks' verifiers. The TFDS and reasoning-gym adapters (:mod:`rlvr_jax.data.tfds`,
:mod:`rlvr_jax.data.gym`) import their optional dependencies only when used.
"""

from rlvr_jax.data import task
from rlvr_jax.data import verifiers
from rlvr_jax.data import templates
from rlvr_jax.data import jsonl
from rlvr_jax.data import procedural
from rlvr_jax.data.task import Example, TaskSource, get_verifier, register_verifier

__all__ = [
    "task", "verifiers", "templates", "jsonl", "procedural",
    "Example", "TaskSource", "get_verifier", "register_verifier",
]
