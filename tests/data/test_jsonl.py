"""JSONL / Parquet task files: round trip, schema errors naming file and line, determinism."""

import json

import pytest

from rlvr_jax.data import jsonl
from rlvr_jax.data import task as task_lib


def _write(path, lines):
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return str(path)


def test_round_trip(tmp_path):
  exs = [
      task_lib.Example("What is 2+3?", "5", "exact", {"id": 1}),
      task_lib.Example([{"role": "user", "content": "½?"}], r"\frac{1}{2}", "math", {}),
  ]
  path = str(tmp_path / "t.jsonl")
  jsonl.write_jsonl(path, exs)
  assert jsonl.read_jsonl(path) == exs
  assert jsonl.read_task_file(path) == exs


def test_defaults_and_field_map(tmp_path):
  path = _write(tmp_path / "g.jsonl", [
      json.dumps({"question": "q1", "answer": 72}),
      "",
      json.dumps({"question": "q2", "answer": "8", "verifier": "exact"}),
  ])
  exs = jsonl.read_jsonl(path, default_verifier="gsm8k", field_map={"question": "prompt"})
  assert [(e.prompt, e.answer, e.verifier) for e in exs] == [
      ("q1", "72", "gsm8k"), ("q2", "8", "exact")]


@pytest.mark.parametrize("line,message", [
    ('{"prompt": "q", "answer": "1", "verifier": "exact"', "invalid JSON"),
    ('["q", "1"]', "expected a JSON object"),
    ('{"answer": "1", "verifier": "exact"}', "missing required field 'prompt'"),
    ('{"prompt": "q", "verifier": "exact"}', "missing required field 'answer'"),
    ('{"prompt": "q", "answer": 0.5, "verifier": "exact"}', "'answer' must be a string"),
    ('{"prompt": "q", "answer": true, "verifier": "exact"}', "'answer' must be a string"),
    ('{"prompt": "q", "answer": "1"}', "no default_verifier"),
    ('{"prompt": "q", "answer": "1", "verifier": "nope"}', "unknown verifier 'nope'"),
    ('{"prompt": "q", "answr": "1", "verifier": "exact"}', "unknown field"),
    ('{"prompt": [], "answer": "1", "verifier": "exact"}', "'prompt' must be"),
    ('{"prompt": [{"role": "user"}], "answer": "1", "verifier": "exact"}', "message 0"),
    ('{"prompt": "q", "answer": "1", "verifier": "exact", "metadata": 3}', "'metadata'"),
])
def test_errors_name_file_and_line(tmp_path, line, message):
  good = json.dumps({"prompt": "q", "answer": "1", "verifier": "exact"})
  path = _write(tmp_path / "bad.jsonl", [good, good, line])
  with pytest.raises(jsonl.TaskFileError) as info:
    jsonl.read_jsonl(path)
  assert f"{path}:3:" in str(info.value)
  assert message in str(info.value)


def test_unchecked_verifier(tmp_path):
  path = _write(tmp_path / "u.jsonl", ['{"prompt": "q", "answer": "1", "verifier": "later"}'])
  assert jsonl.read_jsonl(path, check_verifier=False)[0].verifier == "later"


def test_unknown_extension(tmp_path):
  with pytest.raises(ValueError, match="extension"):
    jsonl.read_task_file(str(tmp_path / "x.csv"))


def test_file_task_source_deterministic(tmp_path):
  exs = [task_lib.Example(f"q{i}", str(i), "exact") for i in range(20)]
  path = str(tmp_path / "train.jsonl")
  jsonl.write_jsonl(path, exs)
  src = jsonl.FileTaskSource({"train": path})
  a = list(src.examples("train", seed=3))
  assert a == list(src.examples("train", seed=3))
  assert a != list(src.examples("train", seed=4))
  assert sorted(a, key=lambda e: int(e.answer)) == exs
  assert list(jsonl.FileTaskSource({"train": path}, shuffle=False).examples("train")) == exs
  with pytest.raises(ValueError, match="Unknown split"):
    next(src.examples("test"))


def test_parquet(tmp_path):
  pa = pytest.importorskip("pyarrow")
  pq = pytest.importorskip("pyarrow.parquet")
  table = pa.table({
      "prompt": ["q1", "q2"],
      "answer": ["1", "2"],
      "verifier": ["exact", "bogus"],
  })
  path = str(tmp_path / "t.parquet")
  pq.write_table(table, path)
  with pytest.raises(jsonl.TaskFileError, match=r"t\.parquet:row 2: unknown verifier"):
    jsonl.read_task_file(path)
  good = pa.table({"prompt": [[{"role": "user", "content": "hi"}]], "answer": ["1"],
                   "verifier": ["exact"], "metadata": [{"id": 3}]})
  pq.write_table(good, path)
  (ex,) = jsonl.read_parquet(path)
  assert ex == task_lib.Example([{"role": "user", "content": "hi"}], "1", "exact", {"id": 3})


def test_parquet_without_pyarrow(tmp_path, block_import):
  block_import("pyarrow")
  with pytest.raises(ImportError, match="pip install pyarrow"):
    jsonl.read_parquet(str(tmp_path / "t.parquet"))


GOOD = json.dumps({"prompt": "q", "answer": "1", "verifier": "exact"})


@pytest.mark.parametrize("bad,message", [
    (b'{"prompt": "q\xff", "answer": "1", "verifier": "exact"}', "not valid UTF-8"),
    (b'{"prompt": "q", "answer": ' + b"7" * 5000 + b', "verifier": "exact"}', "invalid JSON"),
    (b'{"prompt": "q", "answer": "1", "metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "nested too deeply"),
    (b'{"prompt": "q\\ud800", "answer": "1", "verifier": "exact"}', "surrogate"),
    (b'{"prompt": "q", "answer": "1", "verifier": "exact"} trailing', "invalid JSON"),
])
def test_every_decoding_failure_names_file_and_line(tmp_path, bad, message):
  path = tmp_path / "bad.jsonl"
  path.write_bytes((GOOD + "\n" + GOOD + "\n").encode() + bad + b"\n" + GOOD.encode() + b"\n")
  with pytest.raises(jsonl.TaskFileError) as info:
    jsonl.read_task_file(str(path))
  assert f"{path}:3:" in str(info.value)
  assert message in str(info.value)


def test_utf8_byte_order_mark_is_accepted(tmp_path):
  path = tmp_path / "bom.jsonl"
  path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n")
  assert [e.prompt for e in jsonl.read_jsonl(str(path))] == ["q"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_task_file_is_an_error(tmp_path, content):
  path = tmp_path / "empty.jsonl"
  path.write_text(content, encoding="utf-8")
  with pytest.raises(jsonl.TaskFileError, match=f"{path}: no records"):
    jsonl.read_task_file(str(path))


def test_parquet_failures_name_the_file(tmp_path):
  pa = pytest.importorskip("pyarrow")
  pq = pytest.importorskip("pyarrow.parquet")
  corrupt = tmp_path / "corrupt.parquet"
  corrupt.write_bytes(b"not a parquet file at all")
  with pytest.raises(jsonl.TaskFileError, match=f"{corrupt}: cannot read"):
    jsonl.read_task_file(str(corrupt))
  empty = tmp_path / "empty.parquet"
  pq.write_table(pa.table({"prompt": pa.array([], pa.string()),
                           "answer": pa.array([], pa.string())}), str(empty))
  with pytest.raises(jsonl.TaskFileError, match=f"{empty}: no records"):
    jsonl.read_task_file(str(empty))
