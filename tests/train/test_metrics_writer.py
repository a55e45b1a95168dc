"""MetricsWriter: JSONL records, TensorBoard event files (own reader + tensorboard's), progress."""

import io
import json
import os
import struct

import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.train import metrics_writer as mw


def test_crc32c_check_value():
  # The standard CRC-32C check value (RFC 3720, appendix B.4).
  assert mw.crc32c(b"123456789") == 0xE3069283
  assert mw.crc32c(b"") == 0
  assert mw.crc32c(bytes(32)) == 0x8A9136AA


def test_jsonl_and_tensorboard(tmp_path):
  run = str(tmp_path / "run")
  with mw.MetricsWriter(run) as w:
    out = w.write(1, {"reward": np.float32(0.25), "loss": jnp.asarray(-1.5), "n": 3})
    assert out == {"reward": 0.25, "loss": -1.5, "n": 3.0}
    w.write(2, {"reward": 0.5, "kl": float("nan")})
    with pytest.raises(TypeError, match="'bad' must be a scalar"):
      w.write(3, {"bad": np.zeros(3)})
  records = mw.read_metrics(run)
  assert [r["step"] for r in records] == [1, 2]
  assert records[0]["reward"] == 0.25 and records[0]["n"] == 3.0
  assert np.isnan(records[1]["kl"])
  scalars = mw.read_tensorboard_scalars(os.path.join(run, mw.TENSORBOARD_DIR))
  assert scalars["reward"] == [(1, 0.25), (2, 0.5)]
  assert scalars["loss"] == [(1, -1.5)]


def test_event_file_bytes_by_hand(tmp_path):
  """A one-scalar event, encoded from the protobuf wire format by hand."""
  w = mw.TensorBoardWriter(str(tmp_path))
  w.scalars(7, {"a": 1.0}, wall_time=2.0)
  w.close()
  records = list(mw.read_tfrecords(w.path))
  assert len(records) == 2
  expected = (b"\x09" + struct.pack("<d", 2.0)       # wall_time, field 1, fixed64
              + b"\x10\x07"                           # step = 7, field 2, varint
              + b"\x2a\x0a"                           # summary, field 5, 10 bytes
              + b"\x0a\x08"                           # value, field 1, 8 bytes
              + b"\x0a\x01a"                          # tag "a"
              + b"\x15" + struct.pack("<f", 1.0))     # simple_value, field 2, fixed32
  assert records[1] == expected
  assert b"brain.Event:2" in records[0]


def test_read_by_tensorboard(tmp_path):
  loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
  w = mw.TensorBoardWriter(str(tmp_path))
  w.scalars(3, {"reward/mean": 0.75, "completions/mean_length": 12.0})
  w.close()
  events = list(loader.LegacyEventFileLoader(w.path).Load())
  assert events[0].file_version == "brain.Event:2"
  values = {v.tag: v.simple_value for v in events[1].summary.value}
  assert events[1].step == 3
  assert values == {"reward/mean": 0.75, "completions/mean_length": 12.0}


def test_truncate_after_for_resume(tmp_path):
  run = str(tmp_path)
  with mw.MetricsWriter(run, tensorboard=False) as w:
    for step in range(1, 6):
      w.write(step, {"reward": step})
  # The killed run had logged up to 5, the checkpoint is at 3: resume rewrites steps 4, 5.
  with mw.MetricsWriter(run, tensorboard=False) as w:
    w.truncate_after(3)
    w.write(4, {"reward": 40})
  assert [(r["step"], r["reward"]) for r in mw.read_metrics(run)] == [
      (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_torn_last_line_and_corrupt_middle(tmp_path):
  path = tmp_path / mw.METRICS_FILE
  path.write_text('{"step": 1}\n{"step": 2, "rew')
  assert mw.read_metrics(str(tmp_path)) == [{"step": 1}]
  path.write_text('{"step": 1}\n{"ste\n{"step": 3}\n')
  with pytest.raises(ValueError, match=":2:"):
    mw.read_metrics(str(tmp_path))


def test_disabled_writer_writes_nothing(tmp_path):
  run = str(tmp_path / "off")
  with mw.MetricsWriter(run, enabled=False) as w:
    w.write(1, {"x": 1})
    w.write_config({"a": 1})
  assert not os.path.exists(run)


def test_write_config(tmp_path):
  with mw.MetricsWriter(str(tmp_path), tensorboard=False) as w:
    w.write_config({"lr": 1e-3, "shape": (1, 2)})
  assert json.loads((tmp_path / mw.CONFIG_FILE).read_text()) == {"lr": 1e-3, "shape": [1, 2]}


def test_format_progress():
  assert mw.format_duration(3723) == "1h02m03s"
  assert mw.format_duration(245) == "4m05s"
  assert mw.format_duration(7.2) == "7s"
  assert mw.format_duration(float("nan")) == "?"
  line = mw.format_progress(25, 100, elapsed_s=30.0, steps_done=15, metrics={"reward": 0.5},
                            width=8)
  # 15 steps in 30 s -> 2 s/step; 75 steps left -> 150 s.
  assert line == "[##------] 25/100  25% | 2.00s/step | ETA 2m30s | reward=0.5"
  assert "?s/step | ETA ?" in mw.format_progress(0, 10, 0.0, 0)


def test_progress_bar_non_tty():
  stream = io.StringIO()
  bar = mw.ProgressBar(4, keys=("reward", "missing"), stream=stream, every=2)
  for step in range(1, 5):
    bar.update(step, {"reward": step / 4})
  lines = stream.getvalue().splitlines()
  assert len(lines) == 2
  assert lines[0].startswith("[") and " 2/4 " in lines[0] and "reward=0.5" in lines[0]
  assert " 4/4 100%" in lines[1] and "ETA 0s" in lines[1]


def _group_of_two_prompts(tokenizer):
  """A group batch of 2 prompts x 2 samples (the last slot padding), as the loop builds it."""
  prompts = ["1+2=", "3+0="]
  completions = [["3", "4"], ["3", "0"]]
  width = 6
  prompt_tokens = np.zeros((2, 2, width), np.int32)
  prompt_mask = np.zeros((2, 2, width), bool)
  tokens = np.zeros((2, 2, 4), np.int32)
  lengths = np.zeros((2, 2), np.int32)
  for p, prompt in enumerate(prompts):
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    prompt_tokens[p, :, width - len(ids):] = ids  # left-padded
    prompt_mask[p, :, width - len(ids):] = True
    for w, text in enumerate(completions[p]):
      ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
      tokens[p, w, :len(ids)] = ids
      lengths[p, w] = len(ids)
  return dict(prompt_tokens=prompt_tokens, prompt_mask=prompt_mask, tokens=tokens,
              lengths=lengths, raw_rewards=np.array([[1.0, 0.0], [1.0, 0.0]], np.float32),
              truncated=np.zeros((2, 2), np.float32), example_id=np.array([[0, 0], [1, 1]]),
              valid=np.array([[True, True], [True, False]]))


def test_completion_records_jsonl_tensorboard_text_and_resume(tmp_path):
  from rlvr_jax.data import char_tokenizer  # pylint: disable=g-import-not-at-top
  from rlvr_jax.data import task as task_lib  # pylint: disable=g-import-not-at-top
  tokenizer = char_tokenizer.build()
  examples = [task_lib.Example(prompt="1+2=", answer="3", verifier="exact"),
              task_lib.Example(prompt="3+0=", answer="3", verifier="exact")]
  records = mw.completion_records(_group_of_two_prompts(tokenizer), examples, tokenizer, num=8)
  assert [(r["prompt"], r["completion"], r["reward"], r["answer"]) for r in records] == [
      ("1+2=", "3", 1.0, "3"), ("1+2=", "4", 0.0, "3"), ("3+0=", "3", 1.0, "3")]  # no padding
  assert records[0]["length"] == 2 and records[0]["truncated"] is False
  assert len(mw.completion_records(_group_of_two_prompts(tokenizer), examples, tokenizer,
                                   num=2)) == 2

  run = str(tmp_path)
  with mw.MetricsWriter(run) as w:
    w.write_completions(10, records)
    w.write_completions(20, records[:1])
  logged = [json.loads(l) for l in open(os.path.join(run, mw.COMPLETIONS_FILE))]
  assert [r["step"] for r in logged] == [10, 10, 10, 20]
  assert logged[1]["completion"] == "4"
  # TensorBoard: one text summary per call, a Markdown table with a row per sample.
  loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
  tb_dir = os.path.join(run, mw.TENSORBOARD_DIR)
  events = list(loader.LegacyEventFileLoader(
      os.path.join(tb_dir, os.listdir(tb_dir)[0])).Load())[1:]
  assert [e.step for e in events] == [10, 20]
  value = events[0].summary.value[0]
  assert value.tag == "completions" and value.metadata.plugin_data.plugin_name == "text"
  table = value.tensor.string_val[0].decode()
  assert table.splitlines()[0] == "| prompt | completion | reward | answer |"
  assert "| 1+2= | 4 | 0 | 3 |" in table.splitlines()
  # A resume from step 10 drops the samples logged after it.
  with mw.MetricsWriter(run, tensorboard=False) as w:
    w.truncate_after(10)
  assert [json.loads(l)["step"] for l in open(os.path.join(run, mw.COMPLETIONS_FILE))] == [10] * 3


def test_zero_learning_rate_warning():
  import optax  # pylint: disable=g-import-not-at-top
  warm_up = optax.linear_schedule(0.0, 1e-5, transition_steps=10)
  assert "learning rate of RL step 1 is exactly 0" in mw.zero_learning_rate_warning(warm_up)
  assert mw.zero_learning_rate_warning(optax.constant_schedule(1e-6)) is None
  assert mw.zero_learning_rate_warning(1e-6) is None
