"""Evaluation driver: metrics from a scripted sampler against hand-computed pass@k / maj@k."""

import json
import math

import jax
import numpy as np
import pytest

from rlvr_jax.rewards import registry
from rlvr_jax.data import task as task_lib
from rlvr_jax.eval import driver


def _examples():
  # Problem p has gold str(p); the scripted sampler answers correctly in its first c_p samples.
  return [task_lib.Example(prompt=f"q{p}", answer=str(p), verifier="answer_tag",
                           metadata={"level": p % 2}) for p in range(5)]


CORRECT_COUNTS = {"q0": 0, "q1": 1, "q2": 2, "q3": 4, "q4": 3}


class ScriptedSampler:
  """``n`` completions per prompt: ``c_p`` correct ones, then wrong answers "x" (or no tag)."""

  def __init__(self):
    self.calls = []

  def __call__(self, examples, rng, n):
    self.calls.append(([e.prompt for e in examples], n))
    out = []
    for e in examples:
      c = CORRECT_COUNTS[e.prompt]
      for j in range(n):
        if j < c:
          out.append(f"reasoning <answer>{e.answer}</answer>")
        elif j % 2:
          out.append("<answer> x </answer>")
        else:
          out.append("no final answer")
    return out


def _pass_at_k(n, c, k):
  return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_metrics_match_formulas():
  sampler = ScriptedSampler()
  result = driver.evaluate_examples(sampler, _examples(), jax.random.key(0), num_samples=4,
                                    ks=(1, 2, 4), batch_size=2, by=[("level",)])
  # 5 prompts in batches of 2: three calls, the last padded with a repeat of its example.
  assert [len(p) for p, _ in sampler.calls] == [2, 2, 2]
  assert sampler.calls[-1][0] == ["q4", "q4"]
  counts = [0, 1, 2, 4, 3]
  for k in (1, 2, 4):
    expected = np.mean([_pass_at_k(4, c, k) for c in counts])
    assert result.metrics[f"pass@{k}"] == pytest.approx(expected)
  assert result.metrics["mean@4"] == pytest.approx(np.mean([c / 4 for c in counts]))
  assert result.metrics["mean_score"] == pytest.approx(result.metrics["mean@4"])
  assert result.metrics["num_problems"] == 5
  # maj@4 (all four samples vote; "no final answer" does not vote):
  # q0: votes {x:2} -> wrong; q1: {p:1, x:2} -> wrong; q2: {p:2, x:1} -> right;
  # q3: {p:4} -> right; q4: {p:3, x:1} -> right.
  assert result.metrics["maj@4"] == pytest.approx(3 / 5)
  # maj@1 is the expected correctness of one random vote that exists: a sample without an
  # answer scores 0, so maj@1 equals pass@1 here.
  assert result.metrics["maj@1"] == pytest.approx(result.metrics["pass@1"])
  assert set(result.groups) == {"all", "level=0", "level=1"}
  assert result.groups["level=1"]["num_problems"] == 2
  rec = result.records[3]
  assert rec["correct"] == [True] * 4 and rec["final_answers"] == ["3"] * 4
  assert rec["answer_ids"] == [0, 0, 0, 0]
  assert result.records[0]["final_answers"] == [None, "x", None, "x"]
  assert result.records[0]["answer_ids"] == [-1, 0, -1, 0]


def test_partial_scores_and_threshold():
  exs = [task_lib.Example(prompt="q1", answer="1", verifier="answer_tag")]
  result = driver.evaluate_examples(
      ScriptedSampler(), exs, jax.random.key(1), num_samples=2, batch_size=1,
      score_fn=lambda texts, examples: np.array([0.5, 0.25]), correct_threshold=0.5)
  assert result.records[0]["correct"] == [True, False]
  assert result.metrics["mean_score"] == pytest.approx(0.375)
  assert result.metrics["pass@1"] == pytest.approx(0.5)


def test_validation():
  with pytest.raises(ValueError, match="num_samples"):
    driver.evaluate_examples(ScriptedSampler(), _examples(), jax.random.key(0), num_samples=2,
                             ks=(4,))
  with pytest.raises(ValueError, match="texts"):
    driver.evaluate_examples(lambda e, r, n: ["a"], _examples(), jax.random.key(0),
                             num_samples=2)


def test_score_with_registry_survives_exceptions():
  def boom(completion, example):
    raise RuntimeError("verifier bug")
  registry.register_verifier("test/boom", boom)
  exs = [task_lib.Example("q", "1", "exact"), task_lib.Example("q", "1", "test/boom")]
  np.testing.assert_array_equal(driver.score_with_registry(["1", "1"], exs), [1.0, 0.0])


def test_extract_final_answer():
  assert driver.extract_final_answer("so #### 1,234", "gsm8k") == "1234"
  assert driver.extract_final_answer(r"\boxed{ x +  1 }", "boxed") == "x + 1"
  assert driver.extract_final_answer("  42 ", "exact") == "42"
  assert driver.extract_final_answer("nothing", "answer_tag") is None
  assert driver.extract_final_answer("free text", "unregistered-verifier") == "free text"
  driver.register_answer_extractor("test/first-word", lambda c: c.split()[0])
  assert driver.extract_final_answer("alpha beta", "test/first-word") == "alpha"


def test_write_results(tmp_path):
  result = driver.evaluate_examples(ScriptedSampler(), _examples()[:2], jax.random.key(0),
                                    num_samples=2, batch_size=2)
  paths = driver.write_results(str(tmp_path), result, extra={"checkpoint": "x"})
  saved = json.loads(open(paths["metrics"]).read())
  assert saved["metrics"] == result.metrics and saved["checkpoint"] == "x"
  lines = open(paths["samples"]).read().splitlines()
  assert [json.loads(l)["prompt"] for l in lines] == ["q0", "q1"]
