"""Task sources and the task protocol.

Importing the package registers the standard verifiers (:mod:`rlvr_jax.rewards.verifiers`) and
the procedural tasks' verifiers in :mod:`rlvr_jax.rewards.registry`. The TFDS and reasoning-gym adapters (:mod:`rlvr_jax.data.tfds`,
:mod:`rlvr_jax.data.gym`) import their optional dependencies only when used.
"""

from rlvr_jax.data import task
from rlvr_jax.data import templates
from rlvr_jax.data import jsonl
from rlvr_jax.data import procedural
from rlvr_jax.data.task import Example, TaskSource
from rlvr_jax.rewards import verifiers  # registers the standard verifiers
from rlvr_jax.rewards.registry import get_verifier, register_verifier

__all__ = [
    "task", "templates", "jsonl", "procedural",
    "Example", "TaskSource", "get_verifier", "register_verifier",
]
