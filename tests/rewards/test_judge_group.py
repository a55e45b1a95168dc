"""The judge rewards in the trainer's group hook: every method of ``experiments/configs/judges.py``
builds from its tiny config into the hook's stage and scores a step's groups with the tiny
policy as its judge."""

import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import group as group_lib
from rlvr_jax.rewards import judge_group
from rlvr_jax.train import builders
from rlvr_jax.train.stages import group_rewards

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the experiments package lives at the repository root
from experiments.configs import judges  # pylint: disable=g-import-not-at-top


class TinyPolicy(group_lib.PolicyScorer):
  """The tiny run's policy, as the hook's handle exposes it to a judge that shares it."""

  def __init__(self):
    config = judges.get_config("judge,tiny")
    self.tokenizer = builders.build_tokenizer(config)
    self.config, self.params = builders.build_model(config, self.tokenizer,
                                                    jax.random.PRNGKey(0))

  def model(self):
    return self.config, self.params, self.tokenizer, True


@pytest.fixture(scope="module")
def policy():
  return TinyPolicy()


def _batch(policy, step=0):
  examples = [task_lib.Example(f"{a}+{b}=", str(a + b), "exact") for a, b in ((1, 2), (3, 0))]
  completions = [["3", "4"], ["3", ""]]
  zeros = np.zeros((2, 2), np.float32)
  return group_lib.RewardBatch(
      examples=examples, prompts=[e.prompt for e in examples], completions=completions,
      tokens=np.zeros((2, 2, 3), np.int32), mask=np.ones((2, 2, 3), np.float32),
      verifier_rewards=zeros, truncated=zeros, prompt_tokens=np.zeros((2, 4), np.int32),
      prompt_mask=np.ones((2, 4), bool), policy=policy, step=step)


def test_judge_methods_are_registered_group_functions():
  assert set(judge_group.METHODS) <= set(group_lib.names())
  assert judge_group.question_text([{"role": "system", "content": "s"},
                                    {"role": "user", "content": "q"}]) == "q"
  with pytest.raises(ValueError, match="only the filters"):
    group_lib.build("rlbff", cascade="positives", cascade_verifier="exact")
  with pytest.raises(ValueError, match="no arguments"):
    group_lib.build("rlbff", kappa=2.0)


@pytest.mark.parametrize("method", sorted(judges.METHODS))
def test_each_method_runs_from_its_tiny_config(method, policy):
  stage = judges.get_config(f"{method},tiny").rl.stages.group_rewards
  run = types.SimpleNamespace(episodes=None, num_prompts=2, group_size=2)
  built = group_rewards.GroupRewards(dict(stage.to_dict(), modules=()), run)
  (function,) = built.functions
  batch = _batch(policy)
  result = function.fn(batch)
  rewards = np.asarray(result.rewards)
  assert rewards.shape == (2, 2) and np.all(np.isfinite(rewards))
  low = -1.0 if method == "openrs" else 0.0
  assert np.all((rewards >= low) & (rewards <= 1.0 + 1e-6)), rewards
  assert {"items", "cache_hits", "parse_failures", "seconds", "tokens_per_s"} <= set(
      result.metrics)
  if method in ("judge", "judge_soft"):
    # The exact verifier decides "3" for 1+2 (cascade); the empty completion is a master key.
    assert rewards[0, 0] == 1.0 and rewards[1, 1] == 0.0
    assert result.metrics["verifier_decided"] >= 1 and result.metrics["master_keys"] == 1
  else:
    # The master-key filter zeroes the empty completion before the judge sees it.
    assert rewards[1, 1] == 0.0
  if method == "rlbff":
    # A policy judge is re-keyed every step: nothing is reused from step 0 at step 1.
    assert function.fn(batch).metrics["cache_hits"] > 0
    assert function.fn(_batch(policy, step=1)).metrics["cache_hits"] == 0
