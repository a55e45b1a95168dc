"""TFDS adapter: locally prepared GSM8K / MATH (Hendrycks) datasets as a task source.

``tensorflow_datasets`` is imported only when a source reads data (``pip install
tensorflow-datasets``, the ``tfds`` extra). Nothing is downloaded: the dataset must already be
prepared on disk, either

* under ``data_dir`` for a registered builder name (e.g. TFDS's ``"gsm8k"``, prepared once on a
  machine with network with ``tfds.builder("gsm8k", data_dir=...).download_and_prepare()``), or
* in a prepared dataset directory (``<data_dir>/<name>/<version>``), read with
  ``tfds.builder_from_directory`` without needing the builder's code. Hendrycks MATH is not in
  the TFDS catalogue; prepare it with your own builder (features ``problem``, ``solution``,
  optional ``level``, ``type``) and point ``directory`` at the result.

Records are read with ``builder.as_data_source`` (random access, no TensorFlow) when the
dataset was prepared in the ``array_record`` format; the default ``tfrecord`` format is read
with ``builder.as_dataset`` and ``tfds.as_numpy``, which needs TensorFlow.

Record formats (``fmt``):

* ``"gsm8k"``: ``question``; ``answer`` (rationale ending in ``#### n``) and/or ``short_answer``.
  Verifier ``"gsm8k"``, prompt asks for a final ``#### n`` line.
* ``"math"``: ``problem``; ``solution`` whose last ``\\boxed{}`` (or ``\\fbox{}``) is the gold.
  Verifier ``"math"``, prompt asks for ``\\boxed{}``. ``level``/``type`` go to metadata.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional

import numpy as np

from rlvr_jax.data import jsonl
from rlvr_jax.data import task as task_lib
from rlvr_jax.data import templates
from rlvr_jax.rewards import verifiers

_MISSING = ("tensorflow-datasets is not installed: pip install tensorflow-datasets "
            "(or pip install -e '.[tfds]').")


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(_MISSING) from None
  return tfds


def _text(value: Any) -> str:
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode("utf-8")
  if isinstance(value, np.ndarray) and value.shape == ():
    return _text(value.item())
  return str(value)


def gsm8k_example(record: Mapping[str, Any], *, chat: bool = True,
                  system: Optional[str] = None) -> task_lib.Example:
  """A GSM8K record as an Example (gold: ``short_answer``, else the number after ``####``)."""
  question = _text(record["question"])
  solution = _text(record["answer"]) if "answer" in record else ""
  if "short_answer" in record:
    gold = verifiers.gsm8k_gold(_text(record["short_answer"]))
  elif "####" in solution:
    gold = verifiers.gsm8k_gold(solution)
  else:
    raise ValueError(f"GSM8K record without a gold answer: {question[:80]!r}.")
  return task_lib.Example(
      prompt=templates.build_prompt(question, "gsm8k", chat=chat, system=system),
      answer=gold, verifier="gsm8k", metadata={"solution": solution})


def math_example(record: Mapping[str, Any], *, chat: bool = True,
                 system: Optional[str] = None) -> task_lib.Example:
  """A Hendrycks MATH record as an Example (gold: the solution's last ``\\boxed{}``)."""
  problem = _text(record["problem"])
  solution = _text(record["solution"])
  gold = verifiers.extract_boxed(solution.replace("\\fbox{", "\\boxed{"))
  if gold is None:
    raise ValueError(f"MATH record whose solution has no \\boxed{{}} answer: {problem[:80]!r}.")
  metadata = {"solution": solution}
  for key in ("level", "type"):
    if key in record:
      metadata[key] = _text(record[key])
  return task_lib.Example(
      prompt=templates.build_prompt(problem, "math", chat=chat, system=system),
      answer=gold.strip(), verifier="math", metadata=metadata)


CONVERTERS: Dict[str, Callable[..., task_lib.Example]] = {
    "gsm8k": gsm8k_example,
    "math": math_example,
}


def read_records(*, name: Optional[str] = None, data_dir: Optional[str] = None,
                 directory: Optional[str] = None, split: str) -> List[Dict[str, Any]]:
  """All records of a prepared TFDS split, as dicts of numpy/bytes values, in stored order.

  Exactly one of ``name`` (with optional ``data_dir``) or ``directory`` must be given.
  """
  if (name is None) == (directory is None):
    raise ValueError("Give exactly one of name= (a registered builder) or directory= "
                     "(a prepared dataset directory).")
  tfds = _import_tfds()
  builder = (tfds.builder_from_directory(directory) if directory is not None
             else tfds.builder(name, data_dir=data_dir))
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"TFDS dataset {name or directory!r} is not prepared under {builder.data_dir!r}; "
        "prepare it once where the sources are reachable (download_and_prepare); this adapter "
        "never downloads.")
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:
    # tfrecord-format datasets have no random-access source: read through tf.data.
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    return [dict(r) for r in tfds.as_numpy(dataset)]
  return [dict(source[i]) for i in range(len(source))]


class TfdsSource:
  """A :class:`~rlvr_jax.data.task.TaskSource` over a locally prepared TFDS dataset.

  ``examples(split, seed)`` converts every record with the ``fmt`` converter and yields them in a
  permutation drawn from ``numpy.random.default_rng(seed)`` (``shuffle=False``: stored order).
  A split is read once and cached.
  """

  def __init__(self, fmt: str, *, name: Optional[str] = None, data_dir: Optional[str] = None,
               directory: Optional[str] = None, chat: bool = True,
               system: Optional[str] = None, shuffle: bool = True,
               read_fn: Optional[Callable[[str], Iterable[Mapping[str, Any]]]] = None):
    """Describes the source; nothing is read until :meth:`examples`.

    Args:
      fmt: record format, a key of :data:`CONVERTERS` (``"gsm8k"`` or ``"math"``).
      name: registered TFDS builder name (e.g. ``"gsm8k"``), read from ``data_dir``.
      data_dir: TFDS data directory for ``name`` (default: TFDS's own default).
      directory: a prepared dataset directory (alternative to ``name``).
      chat: chat-message prompts (True) or plain text.
      system: optional system message / preamble.
      shuffle: permute examples by seed.
      read_fn: ``split -> records``, replacing the TFDS reader (tests, other storage).
    """
    if fmt not in CONVERTERS:
      raise ValueError(f"Unknown record format {fmt!r}; known: {sorted(CONVERTERS)}.")
    if read_fn is None and (name is None) == (directory is None):
      raise ValueError("Give exactly one of name= or directory= (or a read_fn).")
    self.name = name or directory or fmt
    self._fmt = fmt
    self._name, self._data_dir, self._directory = name, data_dir, directory
    self._chat, self._system, self._shuffle = chat, system, shuffle
    self._read_fn = read_fn
    self._cache: Dict[str, List[task_lib.Example]] = {}

  def load(self, split: str) -> List[task_lib.Example]:
    """The split's examples in stored order.

    Raises:
      TaskFileError: the split has no records, or a record cannot be converted (naming the
        dataset, the split and the 1-based record number).
    """
    if split not in self._cache:
      if self._read_fn is not None:
        records = list(self._read_fn(split))
      else:
        records = read_records(name=self._name, data_dir=self._data_dir,
                               directory=self._directory, split=split)
      if not records:
        raise jsonl.TaskFileError(f"TFDS dataset {self.name!r} split {split!r}: no records.")
      convert = CONVERTERS[self._fmt]
      examples = []
      for i, record in enumerate(records, start=1):
        try:
          examples.append(convert(record, chat=self._chat, system=self._system))
        except (ValueError, KeyError, UnicodeDecodeError) as e:
          # A bad record names its place, as a task file's line does.
          raise jsonl.TaskFileError(f"TFDS dataset {self.name!r} split {split!r} record {i}: "
                                    f"{type(e).__name__}: {e}") from None
      self._cache[split] = examples
    return self._cache[split]

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """The split's examples in the ``seed`` permutation (stored order without shuffling)."""
    return jsonl.in_seed_order(self.load(split), seed, self._shuffle)
