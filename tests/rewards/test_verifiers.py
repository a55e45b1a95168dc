"""Standard verifiers: registry names and hand-written cases."""

import pytest

from rlvr_jax.rewards import registry
from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import verifiers


def _ex(answer, verifier="exact"):
  return task_lib.Example(prompt="q", answer=answer, verifier=verifier)


def test_registered_names():
  names = registry.registered_verifiers()
  for n in ("exact", "answer_tag", "boxed", "gsm8k", "gsm8k_flexible", "math"):
    assert n in names


@pytest.mark.parametrize("completion,answer,expected", [
    ("  42 \n", "42", 1.0),
    ("x  y", "x y", 1.0),
    ("42.", "42", 0.0),
    ("The answer is 42", "42", 0.0),
])
def test_exact(completion, answer, expected):
  assert registry.get_verifier("exact")(completion, _ex(answer)) == expected


def test_answer_tag_uses_last_tag():
  v = registry.get_verifier("answer_tag")
  assert v("<answer>1</answer> then <answer> 7 </answer>", _ex("7")) == 1.0
  assert v("<answer>7</answer> then <answer>1</answer>", _ex("7")) == 0.0
  assert v("no tag 7", _ex("7")) == 0.0


def test_boxed_balanced_braces():
  assert verifiers.extract_boxed(r"so \boxed{1} or \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
  assert verifiers.extract_boxed(r"\boxed{unclosed") is None
  assert verifiers.extract_boxed("none") is None
  v = registry.get_verifier("boxed")
  assert v(r"\boxed{ \frac{1}{2} }", _ex(r"\frac{1}{2}")) == 1.0
  assert v(r"\boxed{0.5}", _ex(r"\frac{1}{2}")) == 0.0  # no symbolic equivalence here


def test_gsm8k_strict_and_flexible():
  strict = registry.get_verifier("gsm8k")
  flex = registry.get_verifier("gsm8k_flexible")
  gold = _ex("Natalia sold 48/2 = 24 clips.\n#### 1,072")
  assert verifiers.gsm8k_gold(gold.answer) == "1072"
  assert strict("... so #### 5 wait no\n#### 1,072", gold) == 1.0
  assert strict("the answer is 1072", gold) == 0.0
  assert flex("the answer is 1072", gold) == 1.0
  # A sentence period or comma after the number is punctuation, not a decimal point (verl keeps
  # it and scores these 0).
  assert flex("the answer is $1,072.", gold) == 1.0
  assert flex("The answer is 2.", _ex("2")) == 1.0
  assert flex("It is 2, I think.", _ex("2")) == 1.0
  assert flex("The answer is 2.5.", _ex("2.5")) == 1.0
  assert flex("The answer is 2.5.", _ex("2")) == 0.0
  assert flex("The answer is -2.", _ex("-2")) == 1.0
  assert flex("Nothing here. Really.", _ex("2")) == 0.0
  assert strict("#### -3", _ex("-3")) == 1.0
  # Only the last 300 characters are searched.
  assert strict("#### 7" + " " * 400, _ex("7")) == 0.0
  assert verifiers.extract_gsm8k("#### 7" + " " * 400, tail_chars=0) == "7"


def test_math_delegates_to_rewards_math():
  pytest.importorskip("rlvr_jax.rewards.math")
  v = registry.get_verifier("math")
  assert v(r"so the result is \boxed{\frac{1}{2}}", _ex(r"\frac{1}{2}", "math")) == 1.0
  assert v(r"\boxed{0.5}", _ex(r"\frac{1}{2}", "math")) == 1.0
  assert v(r"\boxed{3}", _ex(r"\frac{1}{2}", "math")) == 0.0


def test_math_with_a_gsm8k_layout_gold_warns_and_reads_the_number():
  pytest.importorskip("rlvr_jax.rewards.math")
  v = registry.get_verifier("math")
  verifiers._WARNED_GSM8K_GOLD.clear()  # pylint: disable=protected-access
  gold = _ex("3 + 5 = 8 apples.\n#### 8", "math")
  with pytest.warns(RuntimeWarning, match="GSM8K layout"):
    assert v(r"so \boxed{8}", gold) == 1.0
  assert v(r"so \boxed{9}", gold) == 0.0
  assert v(r"\boxed{1072}", _ex("#### 1,072", "math")) == 1.0


def _score_in_child(queue, completion, answer):
  ex = task_lib.Example(prompt="q", answer=answer, verifier="math")
  queue.put(registry.get_verifier("math")(completion, ex))


def test_math_in_a_worker_process_scores_in_process():
  """Inside a child process the verifier must not start its own pool (it still scores)."""
  pytest.importorskip("rlvr_jax.rewards.math")
  import multiprocessing  # pylint: disable=g-import-not-at-top
  ctx = multiprocessing.get_context("fork")
  queue = ctx.Queue()
  proc = ctx.Process(target=_score_in_child, args=(queue, r"\boxed{2/4}", r"\frac{1}{2}"))
  proc.start()
  assert queue.get(timeout=60) == 1.0
  proc.join(timeout=60)
