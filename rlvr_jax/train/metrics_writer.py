"""Per-step metrics: a JSONL log, TensorBoard event files and a console progress bar.

No TensorFlow and no tensorboardX: the TensorBoard event file is written here directly. It is a
TFRecord file (each record: ``uint64 length``, ``uint32 masked_crc32c(length)``, the bytes,
``uint32 masked_crc32c(bytes)``, little-endian) whose records are serialised ``tensorflow.Event``
protocol buffers. Only the fields needed for scalars are encoded::

  Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
  Summary { repeated Value value = 1; }
  Value   { string tag = 1; float simple_value = 2; TensorProto tensor = 8;
            SummaryMetadata metadata = 9; }

Text (the completions table) is a ``Value`` with a ``DT_STRING`` scalar ``tensor``
(``{dtype = 1: 7, string_val = 8}``) and ``metadata { plugin_data = 1 { plugin_name = 1:
"text" } }``, which TensorBoard's Text tab renders as Markdown.

TensorBoard reads these files as usual (``tensorboard --logdir <run_dir>/tensorboard``).

Layout of a run directory::

  <run_dir>/metrics.jsonl                          one JSON object per step: {"step", "time", ...}
  <run_dir>/tensorboard/events.out.tfevents.*      scalars for TensorBoard
  <run_dir>/config.json                            resolved config (write_config)
  <run_dir>/completions.jsonl                      sampled completions with their rewards, every
                                                   ``config.log_completions_every`` steps
                                                   (write_completions; TensorBoard text too)

On resumption from a checkpoint at step ``s``, :meth:`MetricsWriter.truncate_after` drops JSONL
records of steps after ``s`` that the killed run had already logged, so the log holds exactly one
record per step; TensorBoard discards the orphaned points of a new event file itself.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import sys
import time
from typing import Any, Dict, IO, Iterator, List, Mapping, Optional, Sequence, Tuple

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CONFIG_FILE = "config.json"
COMPLETIONS_FILE = "completions.jsonl"

# --- CRC32C (Castagnoli), as the TFRecord format requires ----------------------------------------


def _crc32c_table() -> List[int]:
  poly = 0x82F63B78  # reflected Castagnoli polynomial
  table = []
  for i in range(256):
    crc = i
    for _ in range(8):
      crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of ``data`` (check value: ``crc32c(b"123456789") == 0xE3069283``)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC: ``((c >> 15) | (c << 17)) + 0xa282ead8`` modulo 2**32."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- Minimal protobuf encoding of Event/Summary ---------------------------------------------------


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # int64 negatives are ten-byte varints
  out = bytearray()
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _scalar_event(step: int, wall_time: float, values: Mapping[str, float]) -> bytes:
  summary = b"".join(
      _field_bytes(1, _field_bytes(1, tag.encode("utf-8")) + _varint(2 << 3 | 5)
                   + struct.pack("<f", value))
      for tag, value in values.items())
  return (_varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0)
          + _varint(step) + _field_bytes(5, summary))


def _version_event(wall_time: float) -> bytes:
  return _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _field_bytes(3, b"brain.Event:2")


def _text_event(step: int, wall_time: float, tag: str, text: str) -> bytes:
  tensor = _varint(1 << 3 | 0) + _varint(7) + _field_bytes(8, text.encode("utf-8"))  # DT_STRING
  metadata = _field_bytes(1, _field_bytes(1, b"text"))
  value = (_field_bytes(1, tag.encode("utf-8")) + _field_bytes(8, tensor)
           + _field_bytes(9, metadata))
  return (_varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0)
          + _varint(step) + _field_bytes(5, _field_bytes(1, value)))


def _record(data: bytes) -> bytes:
  header = struct.pack("<Q", len(data))
  return (header + struct.pack("<I", masked_crc32c(header)) + data
          + struct.pack("<I", masked_crc32c(data)))


class TensorBoardWriter:
  """Appends scalar summaries to a new TensorBoard event file in ``logdir``."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    now = time.time()
    # TensorBoard loads files whose name contains "tfevents", in name order.
    name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}"
    self.path = os.path.join(logdir, name)
    self._file = open(self.path, "ab")
    self._file.write(_record(_version_event(now)))
    self._file.flush()

  def scalars(self, step: int, values: Mapping[str, float],
              wall_time: Optional[float] = None) -> None:
    """Writes one Event holding all ``values`` (tag → float) at ``step``."""
    event = _scalar_event(int(step), time.time() if wall_time is None else wall_time, values)
    self._file.write(_record(event))

  def text(self, step: int, tag: str, text: str, wall_time: Optional[float] = None) -> None:
    """Writes a Markdown ``text`` summary (TensorBoard's Text tab) under ``tag`` at ``step``."""
    event = _text_event(int(step), time.time() if wall_time is None else wall_time, tag, text)
    self._file.write(_record(event))

  def flush(self) -> None:
    """Pushes buffered events to the file."""
    self._file.flush()

  def close(self) -> None:
    """Closes the event file."""
    self._file.close()


def _read_varint(buf: bytes, pos: int) -> Tuple[int, int]:
  value, shift = 0, 0
  while True:
    byte = buf[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return value, pos


def _parse_fields(buf: bytes) -> Iterator[Tuple[int, int, Any]]:
  pos = 0
  while pos < len(buf):
    key, pos = _read_varint(buf, pos)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, pos = _read_varint(buf, pos)
    elif wire == 1:
      value, pos = buf[pos:pos + 8], pos + 8
    elif wire == 2:
      size, pos = _read_varint(buf, pos)
      value, pos = buf[pos:pos + size], pos + size
    elif wire == 5:
      value, pos = buf[pos:pos + 4], pos + 4
    else:
      raise ValueError(f"Unsupported protobuf wire type {wire}.")
    yield number, wire, value


def read_tfrecords(path: str) -> Iterator[bytes]:
  """Records of a TFRecord file, checking both CRCs; a torn final record ends the iteration."""
  with open(path, "rb") as f:
    data = f.read()
  pos = 0
  while pos + 12 <= len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
    if header_crc != masked_crc32c(header):
      raise ValueError(f"{path}: corrupt record header at byte {pos}.")
    end = pos + 12 + length + 4
    if end > len(data):
      return  # the writer was killed mid-record
    payload = data[pos + 12:pos + 12 + length]
    (crc,) = struct.unpack("<I", data[end - 4:end])
    if crc != masked_crc32c(payload):
      raise ValueError(f"{path}: corrupt record payload at byte {pos}.")
    yield payload
    pos = end


def read_tensorboard_scalars(path: str) -> Dict[str, List[Tuple[int, float]]]:
  """Scalars of one event file, or of every event file in a directory: tag → [(step, value)]."""
  if os.path.isdir(path):
    files = sorted(os.path.join(path, n) for n in os.listdir(path) if "tfevents" in n)
  else:
    files = [path]
  out: Dict[str, List[Tuple[int, float]]] = {}
  for file in files:
    for record in read_tfrecords(file):
      step, values = 0, []
      for number, _, value in _parse_fields(record):
        if number == 2:
          step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5:
          for _, _, item in _parse_fields(value):
            tag, scalar = None, None
            for n, _, v in _parse_fields(item):
              if n == 1:
                tag = v.decode("utf-8")
              elif n == 2:
                (scalar,) = struct.unpack("<f", v)
            if tag is not None and scalar is not None:
              values.append((tag, scalar))
      for tag, scalar in values:
        out.setdefault(tag, []).append((step, scalar))
  return out


# --- The writer the train loop uses ---------------------------------------------------------------


def _to_float(name: str, value: Any) -> float:
  try:
    return float(value)  # Python, numpy and 0-d jax scalars
  except (TypeError, ValueError):
    raise TypeError(f"Metric {name!r} must be a scalar, got {type(value).__name__} "
                    f"of shape {getattr(value, 'shape', '?')}.") from None


class MetricsWriter:
  """Writes each step's scalar metrics to ``metrics.jsonl`` and TensorBoard.

  Only one process should write (pass ``enabled=jax.process_index() == 0`` on multi-host runs);
  a disabled writer accepts and ignores every call, so the loop needs no branches.
  """

  def __init__(self, run_dir: str, *, jsonl: bool = True, tensorboard: bool = True,
               enabled: bool = True):
    self.run_dir = run_dir
    self.enabled = enabled
    self._jsonl: Optional[IO[str]] = None
    self._tb: Optional[TensorBoardWriter] = None
    if not enabled:
      return
    os.makedirs(run_dir, exist_ok=True)
    if jsonl:
      self._jsonl = open(os.path.join(run_dir, METRICS_FILE), "a", encoding="utf-8")
    if tensorboard:
      self._tb = TensorBoardWriter(os.path.join(run_dir, TENSORBOARD_DIR))

  def write(self, step: int, metrics: Mapping[str, Any]) -> Dict[str, float]:
    """Logs scalar ``metrics`` at ``step``; returns them as floats.

    Values may be Python, numpy or 0-d JAX scalars (fetching a JAX value blocks on it). JSON
    gets ``NaN``/``Infinity`` literals for non-finite values, as Python's ``json`` reads back.

    Raises:
      TypeError: a value is not a scalar.
    """
    values = {name: _to_float(name, v) for name, v in metrics.items()}
    if not self.enabled:
      return values
    now = time.time()
    if self._jsonl is not None:
      record = {"step": int(step), "time": now, **values}
      self._jsonl.write(json.dumps(record) + "\n")
      self._jsonl.flush()
    if self._tb is not None:
      self._tb.scalars(step, values, wall_time=now)
      self._tb.flush()
    return values

  def write_completions(self, step: int, records: Sequence[Mapping[str, Any]]) -> None:
    """Appends ``records`` (:func:`completion_records`) to ``completions.jsonl`` with their
    ``step``, and writes them to TensorBoard as a Markdown table (tag ``completions``)."""
    if not self.enabled or not records:
      return
    with open(os.path.join(self.run_dir, COMPLETIONS_FILE), "a", encoding="utf-8") as f:
      for record in records:
        f.write(json.dumps({"step": int(step), **record}) + "\n")
    if self._tb is not None:
      self._tb.text(step, "completions", completions_markdown(records))
      self._tb.flush()

  def write_config(self, config: Any) -> None:
    """Writes the resolved config as ``config.json`` (via ``checkpoint.to_jsonable`` rules)."""
    if not self.enabled:
      return
    from rlvr_jax.train.checkpoint import to_jsonable  # pylint: disable=g-import-not-at-top
    with open(os.path.join(self.run_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
      json.dump(to_jsonable(config), f, indent=2, sort_keys=True)

  def truncate_after(self, step: int) -> None:
    """Drops JSONL records (metrics and completions) with ``record["step"] > step`` (call after
    restoring ``step``)."""
    if not self.enabled or self._jsonl is None:
      return
    path = os.path.join(self.run_dir, METRICS_FILE)
    self._jsonl.close()
    kept = [r for r in read_metrics(self.run_dir) if r["step"] <= step]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      for r in kept:
        f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)  # atomic: a crash here leaves either the old or the new log
    self._jsonl = open(path, "a", encoding="utf-8")
    completions = os.path.join(self.run_dir, COMPLETIONS_FILE)
    if os.path.exists(completions):  # the killed run's samples after ``step`` go too
      with open(completions, encoding="utf-8") as f:
        lines = [l for l in f.read().split("\n") if l.strip()]
      kept_lines = []
      for line in lines:
        try:
          if json.loads(line)["step"] <= step:
            kept_lines.append(line)
        except ValueError:  # a torn last line
          continue
      with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(l + "\n" for l in kept_lines))
      os.replace(tmp, completions)

  def close(self) -> None:
    """Closes the JSONL and event files (idempotent)."""
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> "MetricsWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_metrics(run_dir: str) -> List[Dict[str, Any]]:
  """The records of ``<run_dir>/metrics.jsonl`` (or of that file path) in file order.

  A torn last line (the writer was killed mid-write) is skipped; a malformed line elsewhere raises
  ValueError naming file and line.
  """
  path = run_dir if os.path.isfile(run_dir) else os.path.join(run_dir, METRICS_FILE)
  with open(path, "r", encoding="utf-8") as f:
    lines = f.read().split("\n")
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i == len(lines) - 1:
        break
      raise ValueError(f"{path}:{i + 1}: malformed metrics record.") from None
  return records


# --- Console progress -----------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
  """``"1h02m03s"``, ``"4m05s"`` or ``"7s"``; ``"?"`` when unknown."""
  if seconds is None or not math.isfinite(seconds) or seconds < 0:
    return "?"
  s = int(round(seconds))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  if h:
    return f"{h}h{m:02d}m{sec:02d}s"
  if m:
    return f"{m}m{sec:02d}s"
  return f"{sec}s"


def format_progress(step: int, total: int, elapsed_s: float, steps_done: int,
                    metrics: Optional[Mapping[str, float]] = None, width: int = 24) -> str:
  """One progress line: ``[#####-----] 12/100  12% | 1.5s/step | ETA 2m12s | reward=0.531``.

  The rate is measured over the ``steps_done`` steps of this process (``elapsed_s`` seconds), so
  a resumed run's ETA is not skewed by steps done before the restart.
  """
  frac = min(max(step / total, 0.0), 1.0) if total > 0 else 1.0
  filled = int(round(frac * width))
  rate = elapsed_s / steps_done if steps_done > 0 else float("nan")
  eta = rate * max(total - step, 0)
  parts = [f"[{'#' * filled}{'-' * (width - filled)}] {step}/{total} {frac * 100:3.0f}%",
           f"{rate:.2f}s/step" if steps_done > 0 else "?s/step",
           f"ETA {format_duration(eta)}"]
  if metrics:
    parts.append(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
  return " | ".join(parts)


class ProgressBar:
  """Console progress with ETA; redraws in place on a terminal, prints lines otherwise."""

  def __init__(self, total: int, *, initial: int = 0, keys: Sequence[str] = ("reward",),
               stream: Optional[IO[str]] = None, every: int = 1, width: int = 24):
    """``keys``: metrics shown after the bar; ``every``: on a non-terminal, print every N steps."""
    self.total = total
    self.keys = tuple(keys)
    self.stream = sys.stderr if stream is None else stream
    self.every = max(1, every)
    self.width = width
    self._initial = initial
    self._start = time.monotonic()
    self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

  def update(self, step: int, metrics: Optional[Mapping[str, Any]] = None) -> str:
    """Shows progress after ``step`` completed steps; returns the line."""
    shown = {k: float(metrics[k]) for k in self.keys if metrics and k in metrics}
    line = format_progress(step, self.total, time.monotonic() - self._start,
                           step - self._initial, shown, self.width)
    if self._tty:
      self.stream.write("\r\033[K" + line + ("\n" if step >= self.total else ""))
      self.stream.flush()
    elif step % self.every == 0 or step >= self.total:
      self.stream.write(line + "\n")
      self.stream.flush()
    return line


# --- Sampled completions ----------------------------------------------------------------------------


def completion_records(group: Mapping[str, Any], examples: Sequence[Any], tokenizer, *,
                       num: int) -> List[Dict[str, Any]]:
  """Up to ``num`` of a step's samples as JSON records, prompt-major (whole groups first).

  Each record: ``prompt`` (the prompt as the model saw it: its tokens decoded with special tokens,
  so a chat template's system prompt shows), ``completion`` (decoded up to its length, special
  tokens dropped), ``reward`` (the verifier's score), ``answer`` (the gold), ``truncated`` and
  ``length``. ``group`` is the step's group batch (``rlvr_jax.train.stages.base``'s table);
  padding slots (``valid`` False) are skipped.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  tokens, lengths = np.asarray(group["tokens"]), np.asarray(group["lengths"])
  prompts, prompt_mask = np.asarray(group["prompt_tokens"]), np.asarray(group["prompt_mask"])
  valid = np.asarray(group.get("valid", np.ones(lengths.shape, bool)), bool)
  rows = [(p, w) for p in range(lengths.shape[0]) for w in range(lengths.shape[1])
          if valid[p, w]][:max(int(num), 0)]
  records = []
  for p, w in rows:
    example = examples[int(group["example_id"][p, w])]
    records.append({
        "prompt": tokenizer.decode(prompts[p, w][prompt_mask[p, w]].tolist()),
        "completion": tokenizer.decode(tokens[p, w, :lengths[p, w]].tolist(),
                                       skip_special_tokens=True),
        "reward": float(group["raw_rewards"][p, w]),
        "answer": str(example.answer),
        "truncated": bool(group["truncated"][p, w]),
        "length": int(lengths[p, w]),
    })
  return records


def _cell(text: str, limit: int = 400) -> str:
  text = text if len(text) <= limit else text[:limit] + "…"
  return text.replace("|", "\\|").replace("\n", "<br>")


def completions_markdown(records: Sequence[Mapping[str, Any]]) -> str:
  """A Markdown table of :func:`completion_records` (prompt, completion, reward, gold), long cells
  cut at 400 characters, for TensorBoard's Text tab."""
  lines = ["| prompt | completion | reward | answer |", "|---|---|---|---|"]
  for r in records:
    lines.append(f"| {_cell(r['prompt'])} | {_cell(r['completion'])} | {r['reward']:.3g} | "
                 f"{_cell(r['answer'])} |")
  return "\n".join(lines)


def zero_learning_rate_warning(schedule: Any) -> Optional[str]:
  """The warning to print when the first update's learning rate ``schedule(0)`` is exactly 0
  (a linear warm-up from 0): that update leaves the policy unchanged, which explains a first
  step that changes nothing. None otherwise (or when ``schedule`` is a constant float)."""
  first = float(schedule(0)) if callable(schedule) else float(schedule)
  if first != 0.0:
    return None
  return ("warning: the learning rate of RL step 1 is exactly 0 (the optimizer's warm-up starts "
          "at 0; see config.optimizer.warmup_steps): step 1's update leaves the policy unchanged, "
          "and a short run learns less than its step count suggests.")
