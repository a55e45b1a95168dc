"""Scaf-GRPO: hinted groups, cumulative hint prompts, minimal-level selection and replacement."""

import numpy as np
import pytest

from rlvr_jax.data import task as task_lib
from rlvr_jax.train.stages import scaf as ds


def test_scaf_hint_groups_respects_warmup():
  r = np.array([[0, 0], [0, 1], [0, 0]])
  np.testing.assert_array_equal(ds.scaf_hint_groups(r, step=50), [False] * 3)
  np.testing.assert_array_equal(ds.scaf_hint_groups(r, step=51), [True, False, True])
  np.testing.assert_array_equal(ds.scaf_hint_groups(r, step=1, warmup_steps=0), [True, False, True])


def test_scaf_hint_prompts():
  hints = {"knowledge": ["K1.", "K2."], "solution": ["S1.", "S2.", "S3.", "S4.", "S5."]}
  prompts = ds.scaf_hint_prompts("2+2?", hints)
  assert [p.level for p in prompts] == list(range(1, 9))
  assert [p.tier for p in prompts] == ["knowledge"] * 4 + ["solution"] * 4
  assert prompts[0].prompt == [
      {"role": "system", "content": ds.SCAF_SYSTEM_PROMPT},
      {"role": "user", "content": "Question: 2+2?\nKnowledge Hints: K1."}]
  assert prompts[1].prompt[1]["content"] == "Question: 2+2?\nKnowledge Hints: K1. K2."
  assert prompts[3].prompt[1]["content"] == "Question: 2+2?\nKnowledge Hints: K1. K2."
  assert prompts[7].prompt[1]["content"] == "Question: 2+2?\nSolution Hints: S1. S2. S3. S4."
  assert ds.scaf_hint_prompts("q", hints, system=None)[0].prompt[0]["role"] == "user"
  with pytest.raises(KeyError, match="solution"):
    ds.scaf_hint_prompts("q", {"knowledge": ["a"]})


def test_scaf_select_and_replace():
  levels = np.array([1, 2, 3, 4, 5, 6, 7, 8, 3])
  rewards = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1])
  assert ds.scaf_select(levels, rewards) == 2  # lowest level 3; first of the ties
  assert ds.scaf_select(levels, np.zeros(9)) == -1
  group = {"prompt_tokens": np.zeros((4, 5), np.int32), "tokens": np.zeros((4, 3), np.int32),
           "reward": np.zeros(4)}
  hinted = {"prompt_tokens": np.arange(5, dtype=np.int32), "tokens": np.array([7, 8, 9]),
            "reward": np.array(1.0)}
  out = ds.scaf_replace(group, hinted)
  np.testing.assert_array_equal(out["prompt_tokens"][0], np.arange(5))
  np.testing.assert_array_equal(out["prompt_tokens"][1:], 0)
  np.testing.assert_array_equal(out["reward"], [1, 0, 0, 0])
  assert out["tokens"].dtype == np.int32
  np.testing.assert_array_equal(group["reward"], 0)  # input untouched
  with pytest.raises(ValueError, match="prompt bucket"):
    ds.scaf_replace(group, {**hinted, "prompt_tokens": np.arange(6)})


def test_scaf_hinted_examples_text_and_chat():
  hints = {"knowledge": ["K1.", "K2."], "solution": ["S1."]}
  text = task_lib.Example("3+4=", "7", "procedural/integer", {"key": "3+4"})
  out = ds.scaf_hinted_examples(text, hints, parts_per_tier=2)
  assert [level for level, _ in out] == [1, 2, 3, 4]
  assert [e.prompt for _, e in out] == [
      "Knowledge Hints: K1.\n3+4=", "Knowledge Hints: K1. K2.\n3+4=",
      "Solution Hints: S1.\n3+4=", "Solution Hints: S1.\n3+4="]
  assert all(e.answer == "7" and e.metadata == {"key": "3+4"} for _, e in out)
  chat = task_lib.Example([{"role": "system", "content": "Box it."},
                           {"role": "user", "content": "What is 3+4?"}], "7", "math")
  level, hinted = ds.scaf_hinted_examples(chat, hints, parts_per_tier=2)[1]
  assert level == 2
  assert hinted.prompt == [{"role": "system", "content": "Box it."},
                           {"role": "user",
                            "content": "Question: What is 3+4?\nKnowledge Hints: K1. K2."}]
  assert chat.prompt[1]["content"] == "What is 3+4?"  # the original is not modified


def test_example_hints_prefer_metadata_then_procedural():
  given = task_lib.Example("q", "a", "math", {"hints": {"knowledge": ["k"]}})
  assert ds.example_hints(given) == {"knowledge": ["k"]}
  assert ds.example_hints(task_lib.Example("q", "a", "math")) is None
  assert ds.example_hints(task_lib.Example("1+2=", "3", "procedural/integer")) == {
      "knowledge": ["1 characters."], "solution": ["Starts 3."]}
