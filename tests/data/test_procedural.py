"""Tests of the procedural tasks: determinism, disjoint splits, exact verifiers, the tokenizer."""

import re

import pytest

from rlvr_jax.rewards import registry
from rlvr_jax.data import char_tokenizer
from rlvr_jax.data import procedural
from rlvr_jax.data import task as task_lib


def test_same_seed_same_stream_and_different_seed_different_stream():
  task = procedural.Arithmetic(max_value=99)
  a = procedural.take(task, "train", 50, seed=3)
  b = procedural.take(task, "train", 50, seed=3)
  c = procedural.take(task, "train", 50, seed=4)
  assert a == b
  assert [e.prompt for e in a] != [e.prompt for e in c]


@pytest.mark.parametrize("task", [procedural.Arithmetic(max_value=20, ops=("+", "*")),
                                  procedural.Countdown(num_numbers=3, max_number=6)])
def test_train_and_test_splits_never_overlap_across_seeds(task):
  train = {e.metadata["key"] for s in range(3) for e in procedural.take(task, "train", 300, s)}
  test = {e.metadata["key"] for s in range(3) for e in procedural.take(task, "test", 100, s)}
  assert train and test
  assert not train & test


def test_heldout_fraction_is_respected():
  task = procedural.Arithmetic(max_value=99, heldout_fraction=0.2)
  keys = [f"{a}+{b}" for a in range(100) for b in range(100)]
  frac = sum(procedural._in_heldout(k, 0.2, task.name) for k in keys) / len(keys)
  assert 0.18 < frac < 0.22


def test_arithmetic_examples_are_correct():
  for example in procedural.take(procedural.Arithmetic(ops=("+", "-", "*")), "train", 100):
    a, op, b = re.fullmatch(r"(\d+)([-+*])(\d+)", example.metadata["key"]).groups()
    expected = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    assert example.answer == str(expected)
    assert example.prompt == example.metadata["key"] + "="


def test_integer_verifier():
  example = task_lib.Example(prompt="12+35=", answer="47", verifier="procedural/integer")
  verify = registry.get_verifier("procedural/integer")
  assert verify("47", example) == 1.0
  assert verify(" 47\n", example) == 1.0
  assert verify("reasoning... <answer>47</answer>", example) == 1.0
  assert verify("so #### 47", example) == 1.0
  for wrong in ("48", "047", "+47", "47.0", "4 7", "", "47 48"):
    assert verify(wrong, example) == 0.0, wrong


def test_countdown_verifier():
  example = task_lib.Example(prompt="2,3,7->13:", answer="13", verifier="procedural/countdown",
                             metadata={"numbers": [2, 3, 7]})
  verify = registry.get_verifier("procedural/countdown")
  assert verify("2*3+7", example) == 1.0
  assert verify("(7-3)*2+5", example) == 0.0      # 5 is not available
  assert verify("7+3+3", example) == 0.0          # 3 used twice
  assert verify("7*2-1", example) == 0.0          # 1 not available
  assert verify("(7+2)/3*3", example) == 0.0      # 3 twice
  assert verify("2*3+7 = 13", example) == 0.0     # not an expression
  assert verify("__import__('os')", example) == 0.0
  assert verify("7/0+2", example) == 0.0
  fraction = task_lib.Example(prompt="", answer="1", verifier="procedural/countdown",
                              metadata={"numbers": [3, 6, 2]})
  assert verify("6/3/2", fraction) == 1.0         # exact rational arithmetic


def test_countdown_instances_are_solvable_by_their_solution():
  verify = registry.get_verifier("procedural/countdown")
  for example in procedural.take(procedural.Countdown(), "train", 30):
    assert verify(example.metadata["solution"], example) == 1.0


def test_unknown_split_and_task_raise():
  with pytest.raises(ValueError):
    next(procedural.Arithmetic().examples("validation"))
  with pytest.raises(KeyError):
    procedural.get("sudoku")


def test_char_tokenizer_round_trip_and_specials():
  tok = char_tokenizer.build()
  ids = tok("12+35=", add_special_tokens=False)["input_ids"]
  assert len(ids) == 6
  assert tok.decode(ids) == "12+35="
  assert tok.decode(ids + [tok.eos_token_id, tok.pad_token_id], skip_special_tokens=True) == "12+35="
  assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2]
  chat = tok.apply_chat_template([{"role": "user", "content": "1+2="}], tokenize=False,
                                 add_generation_prompt=True)
  assert chat == "1+2="


def test_char_tokenizer_save_and_reload(tmp_path):
  import transformers
  tok = char_tokenizer.build()
  tok.save_pretrained(tmp_path)
  again = transformers.AutoTokenizer.from_pretrained(tmp_path)
  text = "7,3->10:(3+7)"
  assert again(text)["input_ids"] == tok(text)["input_ids"]
  assert again.eos_token_id == tok.eos_token_id


def test_scaf_hints_of_procedural_tasks():
  arithmetic = task_lib.Example("12+30=", "42", "procedural/integer")
  assert procedural.scaf_hints(arithmetic) == {"knowledge": ["2 characters."],
                                               "solution": ["Starts 4.", "Starts 42."]}
  countdown = task_lib.Example("1 2 3:6", "6", "procedural/countdown", {"solution": "1+2+3"})
  assert procedural.scaf_hints(countdown)["solution"] == [
      "Begin with 1+", "Begin with 1+2", "Begin with 1+2+", "Begin with 1+2+3"]
  assert procedural.scaf_hints(task_lib.Example("q", "a", "math")) is None
