"""Task files: JSONL and Parquet records → :class:`~rlvr_jax.data.task.Example`, with schema checks.

One record per line (JSONL) or per row (Parquet)::

  {"prompt": "What is 2+3?", "answer": "5", "verifier": "exact", "metadata": {"id": 7}}
  {"prompt": [{"role": "user", "content": "..."}], "answer": "\\\\frac{1}{2}", "verifier": "math"}

* ``prompt`` (required): a string, or a non-empty list of ``{"role": str, "content": str}``.
* ``answer`` (required): a string; an integer is accepted and converted with ``str`` (GSM8K-style
  files often store numbers); floats and booleans are rejected (``0.1 + 0.2`` has no canonical
  string form).
* ``verifier``: a registered verifier name; may be omitted when the reader is given
  ``default_verifier``.
* ``metadata``: optional JSON object.

Any other key is an error, so a misspelt field fails loudly instead of vanishing. ``field_map``
renames source columns first (``{"question": "prompt"}``). Every error is a
:class:`TaskFileError` that names the file and the 1-based line (JSONL) or row (Parquet): schema
violations, bytes that are not UTF-8, malformed JSON, integers past Python's 4,300-digit
conversion limit, nesting too deep to parse, lone surrogates in the text; a Parquet file that
pyarrow cannot read names the file. A file without any record is an error too: an empty task
is a mistake, and a trainer cycling over it would never get a batch.

Parquet goes through ``pyarrow``, imported only when a Parquet file is read; without it the reader
raises an ImportError that says how to install it.
"""

from __future__ import annotations

import codecs
import itertools
import json
import os
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import registry as _registry
from rlvr_jax.rewards import verifiers as _verifiers  # pylint: disable=unused-import  (registers)
# Registers "reasoning_gym" (reasoning_gym itself is imported only when an example is scored), so
# a task file written from a reasoning-gym source reads back.
from rlvr_jax.data import gym as _gym  # pylint: disable=unused-import,g-bad-import-order

_ALLOWED = ("prompt", "answer", "verifier", "metadata")


class TaskFileError(ValueError):
  """A record in a task file violates the schema; the message names file and line."""


def _check_unicode(text: str, where: str, field: str) -> None:
  """JSON's ``\\ud800`` escapes decode to lone surrogates, which are not text: the tokenizer
  would fail on them far from the file, so the record is rejected here."""
  try:
    text.encode("utf-8")
  except UnicodeEncodeError as e:
    raise TaskFileError(f"{where}: {field} contains a lone surrogate "
                        f"({text[e.start]!r} at character {e.start}), which is not valid "
                        "Unicode text.") from None


def parse_record(record: Any, *, where: str, default_verifier: Optional[str] = None,
                 field_map: Optional[Mapping[str, str]] = None,
                 check_verifier: bool = True) -> task_lib.Example:
  """Validates one decoded record and builds its Example.

  Args:
    record: the decoded JSON object (or Parquet row as a dict).
    where: ``"path:line"`` used in error messages.
    default_verifier: verifier for records without a ``verifier`` field.
    field_map: source key → schema key renames applied before validation.
    check_verifier: require the verifier name to be registered.

  Raises:
    TaskFileError: naming ``where`` and the offending field.
  """
  if not isinstance(record, dict):
    raise TaskFileError(f"{where}: expected a JSON object, got {type(record).__name__}.")
  if field_map:
    record = {field_map.get(k, k): v for k, v in record.items()}
  unknown = sorted(set(record) - set(_ALLOWED))
  if unknown:
    raise TaskFileError(f"{where}: unknown field(s) {unknown}; allowed: {list(_ALLOWED)} "
                        "(use field_map to rename source columns).")
  if "prompt" not in record:
    raise TaskFileError(f"{where}: missing required field 'prompt'.")
  prompt = record["prompt"]
  if isinstance(prompt, str):
    pass
  elif isinstance(prompt, (list, np.ndarray)) and len(prompt) > 0:
    prompt = list(prompt)
    for i, m in enumerate(prompt):
      if not (isinstance(m, dict) and set(m) == {"role", "content"}
              and isinstance(m["role"], str) and isinstance(m["content"], str)):
        raise TaskFileError(f"{where}: prompt message {i} must be {{'role': str, 'content': str}},"
                            f" got {m!r}.")
      prompt[i] = dict(m)
  else:
    raise TaskFileError(f"{where}: 'prompt' must be a string or a non-empty list of chat "
                        f"messages, got {type(prompt).__name__}.")
  for i, text in enumerate([prompt] if isinstance(prompt, str) else
                           [m["content"] for m in prompt]):
    _check_unicode(text, where, "prompt" if isinstance(prompt, str) else f"prompt message {i}")
  if "answer" not in record:
    raise TaskFileError(f"{where}: missing required field 'answer'.")
  answer = record["answer"]
  if isinstance(answer, (bool, np.bool_)) or not isinstance(answer, (str, int, np.integer)):
    raise TaskFileError(f"{where}: 'answer' must be a string (or an integer), got "
                        f"{type(answer).__name__}: {answer!r}.")
  answer = str(answer)
  _check_unicode(answer, where, "answer")
  verifier = record.get("verifier", default_verifier)
  if verifier is None:
    raise TaskFileError(f"{where}: missing 'verifier' and no default_verifier was given.")
  if not isinstance(verifier, str):
    raise TaskFileError(f"{where}: 'verifier' must be a string, got {verifier!r}.")
  if check_verifier and verifier not in _registry.registered_verifiers():
    raise TaskFileError(f"{where}: unknown verifier {verifier!r}; registered: "
                        f"{list(_registry.registered_verifiers())}.")
  metadata = record.get("metadata")
  if metadata is None:
    metadata = {}
  if not isinstance(metadata, dict):
    raise TaskFileError(f"{where}: 'metadata' must be an object, got {type(metadata).__name__}.")
  return task_lib.Example(prompt=prompt, answer=answer, verifier=verifier, metadata=metadata)


def _decode_line(raw: bytes, where: str) -> Any:
  """One JSONL line's bytes → the decoded JSON value; every failure is a :class:`TaskFileError`.

  Covered: bytes that are not UTF-8, malformed JSON, integers longer than Python's
  int-conversion limit (4,300 digits by default), nesting too deep for the parser's recursion.
  """
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise TaskFileError(f"{where}: not valid UTF-8 (byte {e.start + 1} of the line: "
                        f"{raw[e.start:e.start + 1]!r}).") from None
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise TaskFileError(f"{where}: invalid JSON ({e.msg} at column {e.colno}).") from None
  except ValueError as e:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
    raise TaskFileError(f"{where}: invalid JSON ({e}).") from None
  except RecursionError:
    raise TaskFileError(f"{where}: invalid JSON (nested too deeply to parse).") from None


def _require_records(examples: List[task_lib.Example], path: str) -> List[task_lib.Example]:
  if not examples:
    raise TaskFileError(f"{path}: no records (the file is empty or has only blank lines); a "
                        "task file needs at least one example.")
  return examples


def read_jsonl(path: str, **kwargs) -> List[task_lib.Example]:
  """All examples of a JSONL file; blank lines are skipped. ``kwargs`` go to :func:`parse_record`.

  The file is UTF-8 (a leading byte-order mark is allowed).

  Raises:
    TaskFileError: naming the file and line, for any line that is not UTF-8, not JSON (including
      over-long integers and too deep nesting) or not a valid record; naming the file when it
      holds no record at all.
  """
  examples = []
  with open(path, "rb") as f:
    for lineno, raw in enumerate(f, start=1):
      if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
      if not raw.strip():
        continue
      where = f"{path}:{lineno}"
      examples.append(parse_record(_decode_line(raw, where), where=where, **kwargs))
  return _require_records(examples, path)


def _import_pyarrow_parquet():
  try:
    import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("Reading Parquet task files needs pyarrow: pip install pyarrow "
                      "(or convert the file to JSONL).") from None
  return pq


def read_parquet(path: str, **kwargs) -> List[task_lib.Example]:
  """All examples of a Parquet file (rows numbered from 1 in errors); needs ``pyarrow``."""
  pq = _import_pyarrow_parquet()
  try:
    rows = pq.read_table(path).to_pylist()
  except (FileNotFoundError, IsADirectoryError, PermissionError):
    raise  # the OS error names the path
  except Exception as e:  # pylint: disable=broad-except  (pyarrow's ArrowInvalid and friends)
    raise TaskFileError(f"{path}: cannot read as Parquet ({type(e).__name__}: {e}).") from None
  return _require_records([parse_record(row, where=f"{path}:row {i}", **kwargs)
                           for i, row in enumerate(rows, start=1)], path)


def read_task_file(path: str, **kwargs) -> List[task_lib.Example]:
  """Reads ``.jsonl``/``.json`` lines or ``.parquet`` by extension."""
  ext = os.path.splitext(path)[1].lower()
  if ext in (".jsonl", ".json", ".ndjson"):
    return read_jsonl(path, **kwargs)
  if ext in (".parquet", ".pq"):
    return read_parquet(path, **kwargs)
  raise ValueError(f"{path}: unknown task-file extension {ext!r} (use .jsonl or .parquet).")


def example_to_record(example: task_lib.Example) -> Dict[str, Any]:
  """The schema record of ``example`` (inverse of :func:`parse_record`)."""
  return {"prompt": example.prompt, "answer": example.answer, "verifier": example.verifier,
          "metadata": dict(example.metadata)}


def write_jsonl(path: str, examples: Iterable[task_lib.Example]) -> None:
  """Writes ``examples`` as a task JSONL file (UTF-8, one record per line)."""
  with open(path, "w", encoding="utf-8") as f:
    for ex in examples:
      f.write(json.dumps(example_to_record(ex), ensure_ascii=False) + "\n")


def in_seed_order(data: Sequence[task_lib.Example], seed: int, shuffle: bool
                  ) -> Iterator[task_lib.Example]:
  """``data`` in the ``seed`` permutation, or in stored order when ``shuffle`` is False: the
  deterministic one-pass order every finite task source yields."""
  order = np.random.default_rng(seed).permutation(len(data)) if shuffle else np.arange(len(data))
  for i in order:
    yield data[int(i)]


class FileTaskSource:
  """A :class:`~rlvr_jax.data.task.TaskSource` over task files, one file per split.

  ``examples(split, seed)`` yields the split's examples in a permutation drawn from
  ``numpy.random.default_rng(seed)`` (``shuffle=False``: file order), so the sequence is a pure
  function of ``(split, seed)``, as a resumed run needs. Files are read once and cached.
  """

  def __init__(self, files: Mapping[str, str], *, name: str = "file", shuffle: bool = True,
               **parse_kwargs):
    """``files``: split name → path; ``parse_kwargs`` go to :func:`parse_record`."""
    self.name = name
    self._files = dict(files)
    self._shuffle = shuffle
    self._parse_kwargs = parse_kwargs
    self._cache: Dict[str, List[task_lib.Example]] = {}

  @property
  def splits(self) -> Sequence[str]:
    """The split names this source has files for."""
    return tuple(self._files)

  def load(self, split: str) -> List[task_lib.Example]:
    """The split's examples in file order."""
    if split not in self._files:
      raise ValueError(f"Unknown split {split!r}; this source has {list(self._files)}.")
    if split not in self._cache:
      self._cache[split] = read_task_file(self._files[split], **self._parse_kwargs)
    return self._cache[split]

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """The split's examples in the ``seed`` permutation (file order without shuffling)."""
    return in_seed_order(self.load(split), seed, self._shuffle)
