"""TFDS adapter.

Two ways, both without network: (1) with ``tensorflow-datasets`` installed, a tiny GSM8K-style and
a tiny MATH-style dataset are *built locally* in a temporary directory (array_record format, no
TensorFlow needed) and read back by name and by directory; (2) always, a fake
``tensorflow_datasets`` module checks the call sequence, including the tfrecord fallback.
"""

import functools
import sys
import types

import numpy as np
import pytest

from rlvr_jax.rewards import registry
from rlvr_jax.data import task as task_lib
from rlvr_jax.data import templates
from rlvr_jax.data import tfds as tfds_adapter

GSM8K_RECORDS = [
    {"question": f"Tom has {i} apples and buys 2. How many?", "answer": f"{i}+2={i + 2}\n#### {i + 2}"}
    for i in range(5)
]
MATH_RECORDS = [
    {"problem": "Compute $1/2 + 1/4$.", "solution": r"We get $\boxed{\frac{3}{4}}$.",
     "level": "Level 1", "type": "Algebra"},
    {"problem": "What is $2^{10}$?", "solution": r"It is $\fbox{1024}$.", "level": "Level 2",
     "type": "Prealgebra"},
]


def test_gsm8k_converter():
  ex = tfds_adapter.gsm8k_example(
      {"question": b"Q?", "answer": b"so 1,000 + 2\n#### 1,002"}, chat=False)
  assert ex.answer == "1002" and ex.verifier == "gsm8k"
  assert ex.prompt == "Q?\n\n" + templates.GSM8K_INSTRUCTION
  assert ex.metadata == {"solution": "so 1,000 + 2\n#### 1,002"}
  short = tfds_adapter.gsm8k_example({"question": "Q", "answer": "x", "short_answer": "7"})
  assert short.answer == "7" and short.prompt[-1]["role"] == "user"
  with pytest.raises(ValueError, match="gold"):
    tfds_adapter.gsm8k_example({"question": "Q", "answer": "no marker"})
  # The gold passes the verifier the prompt asks for.
  assert registry.get_verifier("gsm8k")("... #### 1002", ex) == 1.0


def test_math_converter():
  a, b = (tfds_adapter.math_example(r) for r in MATH_RECORDS)
  assert a.answer == r"\frac{3}{4}" and a.verifier == "math"
  assert a.metadata["level"] == "Level 1" and a.metadata["type"] == "Algebra"
  assert a.prompt[-1]["content"].endswith(templates.MATH_INSTRUCTION)
  assert b.answer == "1024"  # \fbox is accepted like \boxed
  with pytest.raises(ValueError, match="boxed"):
    tfds_adapter.math_example({"problem": "p", "solution": "no box"})


def test_source_with_read_fn():
  src = tfds_adapter.TfdsSource("gsm8k", read_fn=lambda split: GSM8K_RECORDS[:3])
  got = list(src.examples("train", seed=1))
  assert got == list(src.examples("train", seed=1))
  assert sorted(e.answer for e in got) == ["2", "3", "4"]
  with pytest.raises(ValueError, match="format"):
    tfds_adapter.TfdsSource("csv", name="x")
  with pytest.raises(ValueError, match="exactly one"):
    tfds_adapter.TfdsSource("gsm8k")


@functools.lru_cache(maxsize=None)
def _builders():
  """Two tiny builder classes, defined once per process (TFDS registers classes by name)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  # TFDS resolves a builder's code path through importlib_resources, which tensorflow-datasets
  # 4.9.10 uses without declaring it; defining builders needs it, reading prepared data does not.
  pytest.importorskip("importlib_resources")

  class RlvrTinyGsm8k(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
          {"question": tfds.features.Text(), "answer": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(GSM8K_RECORDS[:3]),
              "test": self._generate_examples(GSM8K_RECORDS[3:])}

    def _generate_examples(self, records):
      for i, r in enumerate(records):
        yield str(i), r

  class RlvrTinyMath(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
          {k: tfds.features.Text() for k in ("problem", "solution", "level", "type")}))

    def _split_generators(self, dl_manager):
      return {"test": self._generate_examples(MATH_RECORDS)}

    def _generate_examples(self, records):
      for i, r in enumerate(records):
        yield str(i), r

  return RlvrTinyGsm8k, RlvrTinyMath


def test_locally_built_tfds_datasets(tmp_path):
  gsm8k_cls, math_cls = _builders()
  data_dir = str(tmp_path / "tfds")
  gsm8k_cls(data_dir=data_dir, file_format="array_record").download_and_prepare()
  math_cls(data_dir=data_dir, file_format="array_record").download_and_prepare()

  by_name = tfds_adapter.TfdsSource("gsm8k", name="rlvr_tiny_gsm8k", data_dir=data_dir,
                                    shuffle=False)
  assert sorted(e.answer for e in by_name.examples("train")) == ["2", "3", "4"]
  assert sorted(e.answer for e in by_name.examples("test")) == ["5", "6"]

  math_dir = str(tmp_path / "tfds" / "rlvr_tiny_math" / "1.0.0")
  by_dir = tfds_adapter.TfdsSource("math", directory=math_dir)
  answers = sorted(e.answer for e in by_dir.examples("test", seed=0))
  assert answers == ["1024", r"\frac{3}{4}"]

  with pytest.raises(FileNotFoundError, match="not prepared"):
    tfds_adapter.read_records(name="rlvr_tiny_gsm8k", data_dir=str(tmp_path / "empty"),
                              split="train")


class _FakeBuilder:
  def __init__(self, records, random_access, prepared=True):
    self._records, self._random_access, self._prepared = records, random_access, prepared
    self.data_dir = "/fake"

  def is_prepared(self):
    return self._prepared

  def as_data_source(self, split):
    if not self._random_access:
      raise NotImplementedError("tfrecord")
    return self._records[split]

  def as_dataset(self, split, shuffle_files):
    assert shuffle_files is False
    return ("dataset", split)


def _install_fake_tfds(monkeypatch, builder):
  calls = []
  fake = types.ModuleType("tensorflow_datasets")
  fake.builder = lambda name, data_dir=None: calls.append(("builder", name, data_dir)) or builder
  fake.builder_from_directory = lambda d: calls.append(("dir", d)) or builder
  fake.as_numpy = lambda ds: calls.append(("as_numpy", ds)) or iter(
      builder._records[ds[1]])  # pylint: disable=protected-access
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
  return calls


@pytest.mark.parametrize("random_access", [True, False])
def test_fake_tfds_call_sequence(monkeypatch, random_access):
  records = {"train": [{k: np.bytes_(v.encode()) for k, v in r.items()} for r in GSM8K_RECORDS]}
  calls = _install_fake_tfds(monkeypatch, _FakeBuilder(records, random_access))
  src = tfds_adapter.TfdsSource("gsm8k", name="gsm8k", data_dir="/data", shuffle=False)
  assert [e.answer for e in src.examples("train")] == ["2", "3", "4", "5", "6"]
  assert calls[0] == ("builder", "gsm8k", "/data")
  assert (("as_numpy", ("dataset", "train")) in calls) == (not random_access)
  tfds_adapter.read_records(directory="/prepared/gsm8k/1.0.0", split="train")
  assert ("dir", "/prepared/gsm8k/1.0.0") in calls


def test_fake_tfds_unprepared(monkeypatch):
  _install_fake_tfds(monkeypatch, _FakeBuilder({}, True, prepared=False))
  with pytest.raises(FileNotFoundError, match="never downloads"):
    tfds_adapter.read_records(name="gsm8k", split="train")


def test_missing_package_message(block_import):
  block_import("tensorflow_datasets")
  with pytest.raises(ImportError, match="pip install tensorflow-datasets"):
    tfds_adapter.read_records(name="gsm8k", split="train")


def test_empty_split_and_bad_records_name_dataset_split_and_record():
  from rlvr_jax.data import jsonl
  empty = tfds_adapter.TfdsSource("gsm8k", name="my_gsm8k", read_fn=lambda split: [])
  with pytest.raises(jsonl.TaskFileError, match="'my_gsm8k' split 'train': no records"):
    empty.load("train")
  bad = GSM8K_RECORDS[:2] + [{"question": "Q", "answer": "no marker"}]
  src = tfds_adapter.TfdsSource("gsm8k", name="my_gsm8k", read_fn=lambda split: bad)
  with pytest.raises(jsonl.TaskFileError, match="'my_gsm8k' split 'test' record 3: .*gold"):
    src.load("test")
