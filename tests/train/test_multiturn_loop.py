"""Multi-turn RL through the loop: episodes that end at different turns, a loss mask with holes
exactly on the observation tokens, teacher forcing that attends to the observations (the rollout's
behaviour log-probs within 1e-5 in float32), per-turn token rewards, ``multiturn/*`` metrics."""

import json
import os

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from rlvr_jax.envs import base as envs_base
from rlvr_jax.train import builders
from rlvr_jax.train import loop
from rlvr_jax.train import step as step_lib
from rlvr_jax.train.stages import multiturn

INTERMEDIATE = 0.25


class Staircase(envs_base.Environment):
  """Episode of example ``a+b=`` ends at assistant turn ``1 + (a + b) % 3``; each earlier turn is
  answered with the observation ``"obs<n>"`` repeated ``n + 1`` times and the reward part
  ``INTERMEDIATE``; the last turn's part is 1 when its text has an even length (so rewards vary
  within a group), else 0."""

  def reset(self, example):
    return envs_base.Episode(example=example,
                             messages=[{"role": "user", "content": example.prompt}])

  def step(self, episode, text):
    n = len(episode.steps)
    if n + 1 >= 1 + int(episode.example.answer) % 3:
      return envs_base.StepResult(reward=float(len(text) % 2 == 0), done=True)
    return envs_base.StepResult(observations=({"role": "tool", "content": f"obs{n}" * (n + 1)},),
                                reward=INTERMEDIATE, tool_calls=1)


multiturn.register_environment("test_staircase", Staircase, overwrite=True)


def _config():
  config = tiny.tiny_config("reinforce_pp", num_steps=2, sft_steps=0)
  config.data.add_bos = False
  config.rl.multiturn.enabled = True
  config.rl.multiturn.env = "test_staircase"
  config.rl.multiturn.max_turns = 3
  config.rl.multiturn.max_tokens_per_turn = 4
  config.rl.multiturn.max_observation_tokens = 16
  config.rl.max_new_tokens = 40
  config.model.overrides = dict(config.model.overrides, max_position_embeddings=64)
  config.eval.num_prompts = 4
  config.eval.num_samples = 2
  config.eval.batch_size = 4
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("multiturn"))
  config = _config()
  tokenizer = builders.build_tokenizer(config)
  model_config = builders.build_model_config(config, tokenizer)
  fn = step_lib.model_logprob_fn(model_config, temperature=config.rl.temperature,
                                 chunk_size=config.rl.chunk_size, return_entropy=False)
  logprobs = jax.jit(fn)
  steps = []

  def callback(step, info):
    batch = info["batch"]
    args = (info["params"], batch.prompt_tokens, batch.prompt_mask, batch.completion_tokens)
    info = dict(info, attended=np.asarray(logprobs(*args, batch.attention_mask)[0]),
                loss_masked=np.asarray(logprobs(*args, batch.loss.mask)[0]))
    steps.append(info)

  summary = loop.train(config, workdir, batch_callback=callback)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return dict(config=config, tokenizer=tokenizer, steps=steps, summary=summary,
              records=records)


def _spans(flags):
  """Maximal runs of True as (start, stop) pairs."""
  edges = np.diff(np.concatenate([[0], flags.astype(int), [0]]))
  return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def test_episodes_end_at_different_turns(run):
  for info in run["steps"]:
    group, examples = info["group"], info["examples"]
    expected = np.array([[1 + int(examples[i].answer) % 3 for i in row]
                         for row in group["example_id"]])
    budget_cut = group["end_reason"] != 0
    np.testing.assert_array_equal(group["num_turns"][~budget_cut], expected[~budget_cut])
  turns = np.concatenate([i["group"]["num_turns"].ravel() for i in run["steps"]])
  assert len(np.unique(turns)) >= 2


def test_loss_mask_has_holes_exactly_on_observations(run):
  tok = run["tokenizer"]
  for info in run["steps"]:
    batch, group = info["batch"], info["group"]
    loss = np.asarray(batch.loss.mask)
    attend = np.asarray(batch.completion_mask)
    tokens = np.asarray(batch.completion_tokens)
    turns = group["num_turns"].reshape(-1)
    lengths = group["lengths"].reshape(-1)
    assert (loss <= attend).all()
    for b in range(len(loss)):
      assert attend[b, :lengths[b]].all() and not attend[b, lengths[b]:].any()
      holes = _spans((attend[b] > 0) & (loss[b] == 0))
      # One observation after every assistant turn but the last, each the tool content (after
      # the template's end of turn when the model did not write it).
      assert len(holes) == turns[b] - 1
      for n, (start, stop) in enumerate(holes):
        text = tok.decode(tokens[b, start:stop].tolist(), skip_special_tokens=True)
        assert text == f"obs{n}" * (n + 1)
      # Every other real token is a model token, trained on.
      model = np.ones(lengths[b], bool)
      for start, stop in holes:
        model[start:stop] = False
      np.testing.assert_array_equal(loss[b, :lengths[b]] > 0, model)


def test_rollout_logprobs_equal_teacher_forcing_over_observations(run):
  differs = 0.0
  for info in run["steps"]:
    batch = info["batch"]
    mask = np.asarray(batch.loss.mask) > 0
    old = np.asarray(batch.loss.old_logprobs)
    np.testing.assert_allclose(info["attended"][mask], old[mask], atol=1e-5)
    differs = max(differs, float(np.abs(info["loss_masked"][mask] - old[mask]).max()))
  # Hiding the observations from attention would change the log-probs after them.
  assert differs > 1e-3


def test_turn_rewards_become_token_rewards_without_double_counting(run):
  for info in run["steps"]:
    group, inputs = info["group"], info["advantage_inputs"]
    token_rewards = np.asarray(inputs.token_rewards)
    mask = group["mask"]
    # The estimator adds the return on the last model token; with these token rewards the total
    # is the return, and each non-final turn's part sits on that turn's last model token.
    np.testing.assert_allclose(token_rewards.sum(-1), 0.0, atol=1e-6)
    for p, w in zip(*np.nonzero(group["num_turns"] >= 2)):
      first_obs = np.flatnonzero((group["attention_mask"][p, w] > 0) & (mask[p, w] == 0))[0]
      assert token_rewards[p, w, first_obs - 1] == pytest.approx(INTERMEDIATE)
    done = group["end_reason"] == 0
    final = group["raw_rewards"] - INTERMEDIATE * (group["num_turns"] - 1)
    assert np.isin(np.round(final[done], 5), [0.0, 1.0]).all()


def test_multiturn_metrics_and_episode_evaluation(run):
  records = run["records"]
  assert len(records) == run["config"].rl.num_steps
  for record in records:
    for key in ("turns_mean", "tool_calls_mean", "tool_errors_mean", "observation_token_share",
                "truncated_turn_budget", "truncated_token_budget"):
      assert f"multiturn/{key}" in record
    assert 1.0 <= record["multiturn/turns_mean"] <= 3.0
    assert 0.0 < record["multiturn/observation_token_share"] < 1.0
  for key in ("pass@1", "greedy_accuracy", "tool_call_rate"):
    assert 0.0 <= run["summary"][f"after/{key}"] <= 1.0


def test_single_turn_stages_are_refused():
  config = _config()
  config.rl.stages.dars.enabled = True
  with pytest.raises(ValueError, match="multi-turn"):
    loop.train(config, "/nonexistent/never_written")
