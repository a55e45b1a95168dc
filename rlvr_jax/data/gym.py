"""reasoning-gym adapter: procedural reasoning tasks (``pip install reasoning-gym``, the ``gym`` extra).

``reasoning_gym`` is imported only when a source is iterated or an example is scored, so this
module imports without it; using it without the package raises an ImportError naming the install.

* :class:`ReasoningGymSource` is a :class:`~rlvr_jax.data.task.TaskSource` over one generator
  (``"basic_arithmetic"``, ``"countdown"``, ``"gsm_symbolic"``, ...; see
  ``reasoning_gym.factory.DATASETS``) or a weighted mix (reasoning-gym's ``composite``).
* Verifier ``"reasoning_gym"`` (registered on import): takes the last ``<answer>...</answer>``
  of the completion (``reasoning_gym.utils.extract_answer``) and scores it with the generator's
  own ``score_answer`` (``reasoning_gym.get_score_answer_fn``). Scores are in ``[0, 1]`` and can
  be partial (e.g. 0.01 for a malformed countdown expression). A scorer that raises (some do on
  malformed answers, e.g. ``prime_factorization``) scores 0.

**Splits.** reasoning-gym generates from a seed. Split ``s`` with seed ``k`` uses the generator
seed ``hash(s, k)`` (SHA-256, stable across processes), so ``"train"`` and ``"test"`` are
different draws; for generators with a small instance space the same question can occur in both.
Use :class:`rlvr_jax.data.procedural` tasks when exact split disjointness matters.
"""

from __future__ import annotations

import hashlib
import numbers
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import registry

VERIFIER = "reasoning_gym"
_MISSING = ("reasoning-gym is not installed: pip install reasoning-gym "
            "(or pip install -e '.[gym]').")


def _import_reasoning_gym():
  try:
    import reasoning_gym  # pylint: disable=g-import-not-at-top
    import reasoning_gym.utils  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise ImportError(_MISSING) from None
  return reasoning_gym


def split_seed(split: str, seed: int) -> int:
  """The generator seed of ``(split, seed)``: 31 bits of SHA-256, stable across processes."""
  digest = hashlib.sha256(f"{split}:{seed}".encode("utf-8")).digest()
  return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def entry_to_example(entry: Mapping[str, Any], *, chat: bool = True,
                     system_prompt: Optional[str] = None,
                     verifier: str = VERIFIER) -> task_lib.Example:
  """One reasoning-gym entry ``{"question", "answer", "metadata"}`` as an Example.

  The whole entry is kept in ``metadata["entry"]`` because the generator's scorer needs it; its
  ``source_dataset`` names the scorer. ``system_prompt`` (chat) or preamble (text) should ask for
  ``<answer>`` tags, as ``reasoning_gym.utils.SYSTEM_PROMPTS["default"]`` does; with another
  ``verifier`` (any registered name, e.g. ``"gsm8k_flexible"`` for the last number of the
  completion), it should ask for that verifier's format instead.
  """
  question = entry["question"]
  if chat:
    prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
    prompt.append({"role": "user", "content": question})
  else:
    prompt = f"{system_prompt}\n{question}" if system_prompt else question
  metadata = {"source_dataset": entry["metadata"]["source_dataset"],
              "entry": {"question": question, "answer": entry["answer"],
                        "metadata": dict(entry["metadata"])}}
  return task_lib.Example(prompt=prompt, answer=str(entry["answer"]), verifier=verifier,
                          metadata=metadata)


DatasetSpec = Tuple[str, float, Mapping[str, Any]]


class ReasoningGymSource:
  """Examples from a reasoning-gym generator (or a weighted mix), deterministic per split/seed."""

  def __init__(self, dataset: Union[str, Sequence[DatasetSpec]], *, size: int = 1000,
               config: Optional[Mapping[str, Any]] = None, chat: bool = True,
               system_prompt: Optional[str] = "default", verifier: str = VERIFIER):
    """Describes the source; nothing is generated until :meth:`examples`.

    Args:
      dataset: a generator name, or ``[(name, weight, config), ...]`` for a composite mix.
      size: examples per split (reasoning-gym datasets have a fixed size).
      config: generator options for a single ``dataset`` (e.g. ``{"min_terms": 2}``).
      chat: chat-message prompts (True) or plain text.
      system_prompt: a key of ``reasoning_gym.utils.SYSTEM_PROMPTS``, a literal prompt, or None.
      verifier: the examples' verifier: ``"reasoning_gym"`` (the generator's own scorer on the
        last ``<answer>`` tag), or another registered verifier of the gold answer string.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
      # An empty source would leave the trainer nothing to draw from.
      raise ValueError(f"size must be an integer >= 1, got {size!r}.")
    self.name = dataset if isinstance(dataset, str) else "composite"
    self._dataset = dataset
    self._size = int(size)
    self._config = dict(config or {})
    self._chat = chat
    self._system_prompt = system_prompt
    self._verifier = verifier

  def _system(self, rg) -> Optional[str]:
    if self._system_prompt is None:
      return None
    return rg.utils.SYSTEM_PROMPTS.get(self._system_prompt, self._system_prompt)

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """``size`` examples generated with seed :func:`split_seed` ``(split, seed)``."""
    rg = _import_reasoning_gym()
    gen_seed = split_seed(split, seed)
    if isinstance(self._dataset, str):
      data = rg.create_dataset(self._dataset, size=self._size, seed=gen_seed, **self._config)
    else:
      from reasoning_gym.composite import DatasetSpec as RgSpec  # pylint: disable=g-import-not-at-top
      specs = [RgSpec(name=n, weight=w, config=dict(c)) for n, w, c in self._dataset]
      data = rg.create_dataset("composite", size=self._size, seed=gen_seed, datasets=specs)
    system = self._system(rg)
    for i in range(self._size):
      yield entry_to_example(data[i], chat=self._chat, system_prompt=system,
                             verifier=self._verifier)


def reasoning_gym_verifier(completion: str, example: task_lib.Example) -> float:
  """The generator's ``score_answer`` on the last ``<answer>`` of ``completion``; errors → 0."""
  rg = _import_reasoning_gym()
  answer = rg.utils.extract_answer(completion, tag_name="answer")
  try:
    score_fn = rg.get_score_answer_fn(example.metadata["source_dataset"])
    return float(score_fn(answer, dict(example.metadata["entry"])))
  except Exception:  # pylint: disable=broad-except
    # A scorer that chokes on a malformed answer must not take the trainer down.
    return 0.0


registry.register_verifier(VERIFIER, reasoning_gym_verifier)
