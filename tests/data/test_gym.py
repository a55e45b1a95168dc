"""reasoning-gym adapter: real package when installed, plus a fake module so CI always runs it."""

import sys
import types

import pytest

from rlvr_jax.rewards import registry
from rlvr_jax.data import gym
from rlvr_jax.data import task as task_lib


def test_split_seed_stable_and_distinct():
  assert gym.split_seed("train", 0) == gym.split_seed("train", 0)
  assert len({gym.split_seed(s, k) for s in ("train", "test") for k in range(5)}) == 10
  assert 0 <= gym.split_seed("test", 123) < 2**31


def test_with_reasoning_gym_installed():
  pytest.importorskip("reasoning_gym")
  src = gym.ReasoningGymSource("basic_arithmetic", size=6, config={"min_terms": 2, "max_terms": 2})
  train = list(src.examples("train", seed=0))
  assert len(train) == 6
  assert train == list(src.examples("train", seed=0))
  assert [e.prompt for e in train] != [e.prompt for e in src.examples("test", seed=0)]
  verify = registry.get_verifier("reasoning_gym")
  for ex in train:
    assert ex.prompt[0]["role"] == "system" and "<answer>" in ex.prompt[0]["content"]
    assert verify(f"thinking... <answer>{ex.answer}</answer>", ex) == 1.0
    assert verify("<answer>definitely wrong</answer>", ex) == 0.0
    assert verify("no tags", ex) == 0.0
  mix = gym.ReasoningGymSource([("basic_arithmetic", 1.0, {}), ("countdown", 1.0, {})],
                               size=8, chat=False, system_prompt=None)
  mixed = list(mix.examples("train", seed=1))
  assert {e.metadata["source_dataset"] for e in mixed} <= {"basic_arithmetic", "countdown"}
  assert all(isinstance(e.prompt, str) for e in mixed)
  for ex in mixed:
    assert verify(f"<answer>{ex.answer}</answer>", ex) == 1.0


def _fake_reasoning_gym(monkeypatch):
  """A stand-in with reasoning-gym's interface: create_dataset, get_score_answer_fn, utils."""
  calls = {}
  rg = types.ModuleType("reasoning_gym")
  utils = types.ModuleType("reasoning_gym.utils")
  utils.SYSTEM_PROMPTS = {"default": "Answer in <answer></answer>."}

  def extract_answer(completion, tag_name="answer"):
    start, end = completion.rfind(f"<{tag_name}>"), completion.rfind(f"</{tag_name}>")
    return completion[start + len(tag_name) + 2:end].strip() if 0 <= start < end else None

  utils.extract_answer = extract_answer

  def create_dataset(name, size, seed, **config):
    calls["create"] = (name, size, seed, config)
    return [{"question": f"q{seed % 97}-{i}", "answer": str(i),
             "metadata": {"source_dataset": name, "source_index": i}} for i in range(size)]

  def get_score_answer_fn(name):
    def score(answer, entry):
      if answer == "boom":
        raise ValueError("scorer failure")
      return 1.0 if answer == entry["answer"] else 0.0
    return score

  rg.create_dataset = create_dataset
  rg.get_score_answer_fn = get_score_answer_fn
  rg.utils = utils
  monkeypatch.setitem(sys.modules, "reasoning_gym", rg)
  monkeypatch.setitem(sys.modules, "reasoning_gym.utils", utils)
  return calls


def test_with_fake_module(monkeypatch):
  calls = _fake_reasoning_gym(monkeypatch)
  src = gym.ReasoningGymSource("fake_task", size=3, config={"level": 2})
  exs = list(src.examples("test", seed=4))
  assert calls["create"] == ("fake_task", 3, gym.split_seed("test", 4), {"level": 2})
  assert exs[1].prompt == [{"role": "system", "content": "Answer in <answer></answer>."},
                           {"role": "user", "content": f"q{gym.split_seed('test', 4) % 97}-1"}]
  assert exs[1].answer == "1" and exs[1].metadata["source_dataset"] == "fake_task"
  verify = registry.get_verifier("reasoning_gym")
  assert verify("<answer> 1 </answer>", exs[1]) == 1.0
  assert verify("<answer>2</answer>", exs[1]) == 0.0
  assert verify("<answer>boom</answer>", exs[1]) == 0.0  # a raising scorer scores 0
  literal = gym.ReasoningGymSource("fake_task", size=1, system_prompt="Be terse.", chat=False)
  assert next(literal.examples("train")).prompt.startswith("Be terse.\n")


def test_missing_package_message(block_import):
  block_import("reasoning_gym")
  with pytest.raises(ImportError, match="pip install reasoning-gym"):
    next(gym.ReasoningGymSource("x").examples("train"))


@pytest.mark.parametrize("size", [0, -1, 2.5])
def test_size_must_be_positive(size):
  with pytest.raises(ValueError, match="size"):
    gym.ReasoningGymSource("fake_task", size=size)
