"""reasoning-gym tasks from a config: ``task.kind="gym"``, and a task file of reasoning-gym rows
(``verifier: reasoning_gym``) read back and scored by the run's scorer in worker processes."""

import pytest

from experiments.configs import base
from rlvr_jax.data import jsonl
from rlvr_jax.train import builders

pytest.importorskip("reasoning_gym")


def _gym_config():
  config = base.get_config()
  config.task.kind, config.task.name = "gym", "basic_arithmetic"
  config.task.kwargs = {"size": 4, "config": {"min_terms": 2, "max_terms": 2}}
  config.reward.num_workers = 1  # the verifier must be registered inside the worker too
  return config


def _score(config, examples):
  completions = [f"<answer>{e.answer}</answer>" for e in examples] + ["<answer>no</answer>"]
  with builders.build_scorer(config) as scorer:
    return list(scorer(completions, examples + examples[:1]).rewards)


def test_gym_task_kind_and_task_file_round_trip(tmp_path):
  config = _gym_config()
  examples = list(builders.build_task(config).examples("test", 0))
  assert len(examples) == 4 and all(e.verifier == "reasoning_gym" for e in examples)
  assert "<answer>" in examples[0].prompt[0]["content"]  # reasoning-gym's system prompt
  assert _score(config, examples) == [1.0] * 4 + [0.0]

  path = str(tmp_path / "test.jsonl")
  jsonl.write_jsonl(path, examples)
  files = base.get_config()
  files.task = {"kind": "files", "files": {"test": path}}
  files.reward.num_workers = 1
  read = list(builders.build_task(files).examples("test", 0))
  assert sorted(e.answer for e in read) == sorted(e.answer for e in examples)  # (reordered)
  assert _score(files, read) == [1.0] * 4 + [0.0]


def test_smollm2_recipe_task_uses_its_verifier_and_system_prompt():
  from experiments.configs import smollm2_arithmetic  # pylint: disable=g-import-not-at-top
  config = smollm2_arithmetic.get_config()
  config.task.kwargs.size = 3
  examples = list(builders.build_task(config).examples("test", 0))
  assert all(e.verifier == "gsm8k_flexible" for e in examples)
  assert examples[0].prompt[0] == {"role": "system", "content": smollm2_arithmetic.SYSTEM_PROMPT}
  completions = [f"The answer is {e.answer}." for e in examples]
  with builders.build_scorer(config) as scorer:
    assert list(scorer(completions, examples).rewards) == [1.0] * 3
