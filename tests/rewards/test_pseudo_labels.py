"""Majority-vote pseudo-labels (TTRL) and cross-referenced labels (Co-Reward)."""

import collections

import numpy as np

from rlvr_jax.rewards import pseudo_labels as pl


def test_canonicalize_with_and_without_equivalence():
  answers = [["1/2", "0.5", None, "1/2 ", "3"], ["a", "b", "b", "a", None]]
  plain = pl.canonicalize_answers(answers)
  np.testing.assert_array_equal(plain, [[0, 1, -1, 0, 2], [0, 1, 1, 0, -1]])
  eq = lambda a, b: a == b or {a, b} == {"1/2", "0.5"}
  merged = pl.canonicalize_answers(answers, eq)
  np.testing.assert_array_equal(merged[0], [0, 0, -1, 0, 1])


def test_majority_vote_matches_counter_most_common():
  rng = np.random.default_rng(0)
  ids = rng.integers(-1, 4, size=(20, 7))
  maj, count = pl.majority_vote(ids)
  for p in range(ids.shape[0]):
    votes = [int(a) for a in ids[p] if a >= 0]
    if not votes:
      assert int(maj[p]) == -1 and int(count[p]) == 0
      continue
    # Counter.most_common breaks ties by insertion (first-seen) order.
    want, n = collections.Counter(votes).most_common(1)[0]
    assert (int(maj[p]), int(count[p])) == (want, n)


def test_majority_vote_reward_and_ratio():
  ids = np.array([[2, 1, 2, -1, 1, 2], [-1, -1, -1, -1, -1, -1]])
  rewards, ratio = pl.majority_vote_reward(ids, train_idx=np.array([[0, 1, 3], [0, 1, 2]]))
  np.testing.assert_array_equal(rewards, [[1, 0, 0], [0, 0, 0]])
  np.testing.assert_allclose(ratio, [3 / 6, 0.0])
  all_rewards, _ = pl.majority_vote_reward(ids)
  np.testing.assert_array_equal(all_rewards[0], [1, 0, 1, 0, 0, 1])


def test_co_reward_cross_labels():
  q = np.array([[0, 0, 1, 2]])        # majority 0
  q2 = np.array([[1, 1, 0, -1]])      # majority 1
  r_q, r_q2 = pl.co_reward(q, q2)
  np.testing.assert_array_equal(r_q, [[0, 0, 1, 0]])    # labelled by q2's majority (1)
  np.testing.assert_array_equal(r_q2, [[0, 0, 1, 0]])   # labelled by q's majority (0)


def test_label_metrics():
  m = pl.label_metrics(np.array([1, 2, -1]), np.array([1, 3, -1]),
                       np.array([[1, 0], [1, 1], [0, 0]]), np.array([[1, 0], [0, 0], [0, 0]]))
  assert float(m["label_accuracy"]) == np.float32(1 / 3)
  assert float(m["reward_accuracy"]) == np.float32(4 / 6)
