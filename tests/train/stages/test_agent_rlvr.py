"""Agent-RLVR guided re-attempts: which groups are re-tried, guidance from environment feedback
(never the gold answer), and guided trajectories replacing the failed ones in the group."""

import jax
import ml_collections
import numpy as np
import pytest

from rlvr_jax.data import char_tokenizer
from rlvr_jax.data import task as task_lib
from rlvr_jax.envs import base as envs_base
from rlvr_jax.models.config import preset
from rlvr_jax.models.transformer import init_params
from rlvr_jax.train.stages import agent_rlvr
from rlvr_jax.train.stages import base
from rlvr_jax.train.stages import multiturn


def test_failed_groups_need_every_return_below_threshold_after_warmup():
  rewards = np.array([[0.0, 0.0], [0.0, 1.0], [0.5, 0.2]])
  np.testing.assert_array_equal(agent_rlvr.failed_groups(rewards, 3), [True, False, True])
  np.testing.assert_array_equal(agent_rlvr.failed_groups(rewards, 3, threshold=0.5),
                                [True, False, False])
  assert not agent_rlvr.failed_groups(rewards, 2, warmup_steps=3).any()


def test_feedback_guidance_reads_the_episode_not_the_gold_answer():
  example = task_lib.Example("12*34=", "408", "procedural/integer")
  episode = envs_base.Episode(example, [{"role": "user", "content": "12*34="},
                                        {"role": "assistant", "content": "calc(12*43)"},
                                        {"role": "tool", "content": "=516\n"},
                                        {"role": "assistant", "content": "516"}])
  episode.steps += [envs_base.StepResult(observations=({"role": "tool", "content": "=516\n"},)),
                    envs_base.StepResult(reward=0.0, done=True)]
  text = agent_rlvr.feedback_guidance(episode, plan_hint="use calc")
  assert text == "use calc; last answer 516 was wrong; tool said =516 "
  assert "408" not in text
  assert agent_rlvr.feedback_guidance(episode, max_chars=10) == text[-10:]


def test_guided_example_puts_guidance_before_the_prompt():
  example = task_lib.Example("1+2=", "3", "procedural/integer")
  assert agent_rlvr.guided_example(example, "hint ").prompt == "hint 1+2="
  chat = task_lib.Example([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
                          "3", "procedural/integer")
  assert agent_rlvr.guided_example(chat, "hint ").prompt[-1]["content"] == "hint q"
  assert chat.prompt[-1]["content"] == "q"


class GuidedOnly(envs_base.Environment):
  """One-turn episodes: return 1 when the prompt holds guidance (``"wrong"``), else 0."""

  def reset(self, example):
    return envs_base.Episode(example, [{"role": "user", "content": example.prompt}])

  def step(self, episode, text):
    return envs_base.StepResult(reward=float("wrong" in episode.messages[0]["content"]),
                                done=True)


def test_failed_episodes_are_replaced_by_guided_reattempts():
  tok = char_tokenizer.build()
  config = preset("tiny", vocab_size=len(tok))
  params = init_params(config, jax.random.PRNGKey(0))
  settings = ml_collections.ConfigDict(dict(multiturn.DEFAULTS, max_turns=1,
                                            max_tokens_per_turn=4))
  sampler = multiturn.EpisodeSampler(config, tok, GuidedOnly(), settings, (64,), 8)
  run = base.RunInfo(2, 2, 1.0, None, None, 64, sampler)
  examples = [task_lib.Example("1+2=", "3", "procedural/integer"),
              task_lib.Example("2+2=", "4", "procedural/integer")]
  key = jax.random.PRNGKey(0)
  group = sampler.generate(params, examples, [0, 1], key, num_samples=2, prompt_width=64)
  group["raw_rewards"][1, 0] = 1.0  # group 1 has a success: it is left alone
  ctx = base.StepContext(5, params, examples, run, None, key, 64, None)
  stage = agent_rlvr.AgentRLVR(dict(agent_rlvr.DEFAULTS), run)
  out, metrics = stage(ctx, group)
  assert metrics["agent_rlvr/guided_groups"] == 1.0
  assert metrics["agent_rlvr/guided_episodes"] == 2.0
  assert metrics["agent_rlvr/guided_reward"] == 1.0
  np.testing.assert_array_equal(out["guided"], [[True, True], [False, False]])
  np.testing.assert_array_equal(out["raw_rewards"][0], [1.0, 1.0])
  for key_name in ("tokens", "mask", "raw_rewards", "prompt_tokens"):
    np.testing.assert_array_equal(out[key_name][1], group[key_name][1])
  for w in range(2):
    episode = out["episodes"][0, w]
    prompt = episode.messages[0]["content"]
    assert prompt.endswith("1+2=") and "was wrong" in prompt
    # The guided prompt is the one trained on: the group's prompt row is its ids.
    ids = out["prompt_tokens"][0, w][out["prompt_mask"][0, w]]
    assert tok.decode(ids.tolist()) == prompt
    assert out["example_id"][0, w] == 0


def test_single_turn_runs_refuse_the_stage():
  run = base.RunInfo(2, 2, 1.0, None, None, 64)
  with pytest.raises(ValueError, match="multi-turn"):
    agent_rlvr.AgentRLVR(dict(agent_rlvr.DEFAULTS), run)
