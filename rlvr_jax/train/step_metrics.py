"""The per-step metrics of the RL loop (names follow TRL's where one exists; docs/metrics.md).

Reward and length statistics cover every sample generated this step (all dynamic-sampling
rounds, kept or not); advantage statistics the update's groups; update metrics are averaged over
the step's applied optimizer updates (:func:`rlvr_jax.train.guards.mean_over_updates`).
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence

import numpy as np

from rlvr_jax import advantages as advantages_lib


def group_metrics(rewards: np.ndarray) -> Dict[str, float]:
  """TRL-named statistics of ``[P, G]`` verifier rewards, plus all-correct/all-wrong shares."""
  rewards = np.asarray(rewards, np.float64)
  return {
      "reward": float(rewards.mean()),
      "reward_std": float(rewards.std(axis=1, ddof=1).mean()) if rewards.shape[1] > 1 else 0.0,
      "frac_reward_zero_std": float((np.ptp(rewards, axis=1) == 0).mean()),
      "groups/all_correct": float(np.all(rewards >= 1.0, axis=1).mean()),
      "groups/all_wrong": float(np.all(rewards <= 0.0, axis=1).mean()),
  }


def length_metrics(lengths: np.ndarray, truncated: np.ndarray) -> Dict[str, float]:
  """Completion-length statistics and the share cut at ``max_new_tokens``."""
  return {
      "completions/mean_length": float(lengths.mean()),
      "completions/min_length": float(lengths.min()),
      "completions/max_length": float(lengths.max()),
      "completions/clipped_ratio": float(truncated.mean()),
  }


def generation_metrics(rounds: Sequence[Mapping[str, np.ndarray]]) -> Dict[str, float]:
  """Reward, error and length metrics of every generated round of a step."""
  rewards = np.concatenate([r["raw_rewards"] for r in rounds])
  lengths = np.concatenate([r["lengths"] for r in rounds])
  truncated = np.concatenate([r["truncated"] for r in rounds])
  return {
      **group_metrics(rewards),
      "rewards/verifier/mean": float(rewards.mean()),
      "rewards/verifier/std": float(rewards.std()),
      "reward_errors": float(sum(r["reward_errors"].sum() for r in rounds)),
      "reward_timeouts": float(sum(r["reward_timeouts"].sum() for r in rounds)),
      **length_metrics(lengths, truncated),
      "num_tokens": float(lengths.sum()),
  }


def advantage_metrics(rewards: np.ndarray, advantages: np.ndarray, mask: np.ndarray
                      ) -> Dict[str, float]:
  """``advantages/*`` statistics of the update's groups (:func:`rlvr_jax.advantages.
  advantage_metrics`; its reward keys are the transformed rewards, reported above raw)."""
  return {k: float(v) for k, v in advantages_lib.advantage_metrics(
      rewards, advantages, mask).items() if k.startswith("advantages/")}


def timing_metrics(*, rollout_s: float, reward_s: float, advantage_s: float, update_s: float,
                   generated_tokens: float, trained_tokens: float) -> Dict[str, float]:
  """Seconds per phase and throughput (generation time excludes scoring)."""
  return {
      "time/rollout": rollout_s, "time/reward": reward_s, "time/advantage": advantage_s,
      "time/update": update_s,
      "tokens/generated_per_s": generated_tokens / max(rollout_s, 1e-9),
      "tokens/trained_per_s": trained_tokens / max(update_s, 1e-9),
  }
