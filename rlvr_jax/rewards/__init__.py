"""Verifiable rewards: verifiers (math, code), shaping and likelihood rewards.

Submodules are imported on first attribute access, so ``import rlvr_jax.rewards`` stays cheap
(sympy, for instance, loads only when the math verifier is used):

* :mod:`rlvr_jax.rewards.math`: ``verify``, ``verify_batch``, ``extract_answer``,
  ``is_equivalent``: the rule-based math verifier.
* :mod:`rlvr_jax.rewards.workers`: ``WorkerPool``, ``Outcome``: a process pool with a hard,
  killing per-item timeout, for any host-side verifier.
* :mod:`rlvr_jax.rewards.registry` and :mod:`rlvr_jax.rewards.verifiers`: verifiers by name, and
  the standard ones (exact, answer tag, boxed, GSM8K, math).
* :mod:`rlvr_jax.rewards.judge` and its companions (``judge_parsers``, ``judge_defenses``,
  ``judge_hostile``, ``judge_rewards``, ``judge_group``): LLM judges, their defences against
  judge hacking, and the rubric rewards built on them (``docs/judges.md``).
"""

import importlib

_SUBMODULES = ("math", "workers", "sandbox", "code", "functions", "format", "shaping", "combine",
               "rubric", "pseudo_labels", "trust", "noisy", "likelihood", "registry",
               "verifiers", "checklist", "meta_reasoning", "tiered", "process", "judge",
               "judge_parsers", "judge_defenses", "judge_hostile", "judge_rewards", "judge_group")


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
