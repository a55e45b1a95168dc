"""Evaluation metrics against brute-force references."""

import itertools
import math

import numpy as np
import pytest

from rlvr_jax.eval import metrics


def _pass_at_k_comb(n, c, k):
  return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_pass_at_k_matches_binomial_form():
  cases = [(n, c, k) for n in (1, 5, 10, 16) for c in range(n + 1) for k in (1, 2, 5, n)
           if k <= n]
  n, c, k_vals = zip(*cases)
  for k in sorted(set(k_vals)):
    idx = [i for i, kk in enumerate(k_vals) if kk == k]
    got = metrics.pass_at_k(np.array(n)[idx], np.array(c)[idx], k)
    want = [_pass_at_k_comb(n[i], c[i], k) for i in idx]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_pass_at_k_stable_for_large_n_and_jax_form():
  # C(1000, 500) overflows float64; the product form does not.
  got = metrics.pass_at_k(1000, 3, 500)
  want = 1.0 - math.comb(997, 500) / math.comb(1000, 500)  # exact integers in Python
  assert float(got) == pytest.approx(want, rel=1e-12)
  n = np.array([10, 10, 10, 200])
  c = np.array([0, 3, 9, 7])
  # float32 log-gamma differences lose ~1e-4 absolute precision for n in the hundreds.
  np.testing.assert_allclose(metrics.pass_at_k_jax(n, c, 2), metrics.pass_at_k(n, c, 2),
                             atol=1e-3)
  np.testing.assert_allclose(metrics.pass_at_k_jax(n[:3], c[:3], 2),
                             metrics.pass_at_k(n[:3], c[:3], 2), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError):
    metrics.pass_at_k(3, 1, 4)


def test_mean_at_k():
  np.testing.assert_allclose(metrics.mean_at_k([[1, 0, 1, 1], [0, 0, 0, 0]]), [0.75, 0.0])


def test_maj_at_k_exact_enumeration():
  ids = np.array([[0, 1, 1, 0, 2], [3, 3, -1, 4, 4]])
  correct = np.array([[1, 0, 0, 1, 0], [0, 0, 0, 1, 1]], bool)
  # k = n: one subset; ties go to the first-seen answer.
  np.testing.assert_allclose(metrics.maj_at_k(ids, correct, 5), [1.0, 0.0])

  def brute(p, k):
    vals = []
    for s in itertools.combinations(range(5), k):
      votes = [int(ids[p, j]) for j in s if ids[p, j] >= 0]
      if not votes:
        vals.append(0.0)
        continue
      counts = {a: votes.count(a) for a in votes}
      best = max(counts.values())
      winner = next(a for a in votes if counts[a] == best)
      vals.append(float(correct[p, next(j for j in s if ids[p, j] == winner)]))
    return np.mean(vals)

  for k in (1, 2, 3):
    np.testing.assert_allclose(metrics.maj_at_k(ids, correct, k), [brute(0, k), brute(1, k)],
                               rtol=1e-12)
  # Monte Carlo path (C(5, 2) = 10 > num_samples) stays close to the exact value.
  mc = metrics.maj_at_k(ids, correct, 2, num_samples=9, seed=0)
  assert np.all((mc >= 0) & (mc <= 1))
  big = metrics.maj_at_k(ids, correct, 2, num_samples=5, seed=1)
  assert big.shape == (2,)


def test_cot_pass_at_k_with_pluggable_judge():
  prompts = ["q0", "q1"]
  comps = [["good a", "bad a", "good b", "good c"], ["bad", "good", "good", "bad"]]
  answer_correct = np.array([[1, 1, 0, 1], [1, 1, 0, 0]], bool)
  calls = []

  def judge(prompt, completion):
    calls.append((prompt, completion))
    return completion.startswith("good")

  d = metrics.cot_correct_counts(prompts, comps, answer_correct, judge, num_judgements=2,
                                 aggregate="majority")
  np.testing.assert_array_equal(d, [2, 1])
  # Only samples with a correct answer are judged, num_judgements times each.
  assert len(calls) == 2 * int(answer_correct.sum())
  np.testing.assert_allclose(metrics.cot_pass_at_k(np.array([4, 4]), d, 2),
                             [_pass_at_k_comb(4, 2, 2), _pass_at_k_comb(4, 1, 2)])
  alternating = iter([True, False] * 10)
  d_any = metrics.cot_correct_counts(["q"], [["a", "b"]], np.array([[1, 1]], bool),
                                     lambda p, c: next(alternating), num_judgements=2,
                                     aggregate="any")
  assert d_any[0] == 2


def test_summarize_with_breakdowns():
  records = [
      {"correct": [1, 0, 0, 0], "answer_ids": [0, 1, 1, 2], "task": "gsm8k",
       "metadata": {"difficulty": 1}},
      {"correct": [1, 1, 1, 1], "answer_ids": [0, 0, 0, 0], "task": "gsm8k",
       "metadata": {"difficulty": 2}},
      {"correct": [0, 0, 0, 0], "answer_ids": [-1, -1, 0, 0], "task": "math",
       "metadata": {"difficulty": 2}},
  ]
  out = metrics.summarize(records, ks=(1, 2), by=[("task",), ("task", "difficulty")])
  assert set(out) == {"all", "task=gsm8k", "task=math", "task=gsm8k/difficulty=1",
                      "task=gsm8k/difficulty=2", "task=math/difficulty=2"}
  assert out["all"]["num_problems"] == 3
  assert out["all"]["pass@1"] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
  assert out["task=gsm8k"]["pass@2"] == pytest.approx((_pass_at_k_comb(4, 1, 2) + 1.0) / 2)
  assert out["task=gsm8k/difficulty=1"]["maj@1"] == pytest.approx(0.25)
  assert out["task=math"]["mean@n"] == 0.0
  assert "cot_pass@1" not in out["all"]
  groups = metrics.group_by(records, ["difficulty"])
  assert groups == {(1,): [0], (2,): [1, 2]}


def test_model_collapse_step():
  assert metrics.model_collapse_step([0.5, 0.3, 0.009, 0.5]) == 2
  assert metrics.model_collapse_step([0.5, 0.3]) is None
