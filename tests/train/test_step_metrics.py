"""The loop's per-step metrics, from hand-computed values."""

import numpy as np

from rlvr_jax.train import step_metrics


def test_group_metrics():
  m = step_metrics.group_metrics(np.array([[1, 1], [0, 0], [1, 0], [0, 0]], np.float32))
  assert m["reward"] == 0.375
  assert m["frac_reward_zero_std"] == 0.75
  assert m["groups/all_correct"] == 0.25 and m["groups/all_wrong"] == 0.5
  # Mean of the groups' ddof=1 stds: only group 2 varies, std([1, 0]) = sqrt(0.5).
  np.testing.assert_allclose(m["reward_std"], np.sqrt(0.5) / 4)


def test_generation_metrics_cover_every_round():
  rounds = [dict(raw_rewards=np.array([[1.0, 0.0]]), lengths=np.array([[3, 5]]),
                 truncated=np.array([[0.0, 1.0]]), reward_errors=np.array([[0.0, 1.0]]),
                 reward_timeouts=np.zeros((1, 2))),
            dict(raw_rewards=np.array([[1.0, 1.0]]), lengths=np.array([[2, 2]]),
                 truncated=np.zeros((1, 2)), reward_errors=np.zeros((1, 2)),
                 reward_timeouts=np.array([[1.0, 0.0]]))]
  m = step_metrics.generation_metrics(rounds)
  assert m["reward"] == 0.75 and m["reward_errors"] == 1 and m["reward_timeouts"] == 1
  assert m["num_tokens"] == 12 and m["completions/max_length"] == 5
  assert m["completions/clipped_ratio"] == 0.25
