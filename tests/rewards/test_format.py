"""Format rewards: tags, tag counts, one final answer."""

import pytest

from rlvr_jax.rewards import format as fmt


@pytest.mark.parametrize("text,strict,want", [
    ("<think>x</think><answer>1</answer>", False, 1.0),
    ("<think>x</think>\n<answer>1</answer>\n", True, 1.0),
    ("pre <think>x</think><answer>1</answer>", True, 0.0),
    ("pre <think>x</think><answer>1</answer>", False, 1.0),
    ("<answer>1</answer><think>x</think>", False, 0.0),          # wrong order
    ("<think>x<answer>1</answer></think>", False, 0.0),          # nested
    ("<think>x</think><answer>1</answer><answer>2</answer>", False, 0.0),  # two answers
    ("<think>x</think><answer>1", False, 0.0),                   # unclosed
    ("</think>x<think><answer>1</answer>", False, 0.0),          # close before open
])
def test_tag_format_reward(text, strict, want):
  assert fmt.tag_format_reward(text, strict=strict) == want


def test_tag_count_reward():
  assert fmt.tag_count_reward("<think>x</think><answer>1</answer>") == 1.0
  assert fmt.tag_count_reward("<think>x</think>") == 0.5
  assert fmt.tag_count_reward("<think><think></think>") == 0.25


@pytest.mark.parametrize("text,tag,want", [
    ("so \\boxed{\\frac{1}{2}}", None, 1.0),
    ("\\boxed{1} or \\boxed{2}", None, 0.0),
    ("\\boxed{1", None, 0.0),
    ("no box", None, 0.0),
    ("\\fbox{3}", None, 1.0),
    ("<answer>\\boxed{3}</answer>", "answer", 1.0),
    ("<answer>3</answer>", "answer", 1.0),
    ("\\boxed{3} <answer>3</answer>", "answer", 0.0),
    ("<answer>3</answer><answer>4</answer>", "answer", 0.0),
])
def test_single_answer_reward(text, tag, want):
  assert fmt.single_answer_reward(text, answer_tag=tag) == want


def test_batch():
  assert fmt.batch(fmt.tag_format_reward, ["<think></think><answer></answer>", "x"]) == [1.0, 0.0]
