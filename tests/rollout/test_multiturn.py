"""Multi-turn rollout: episodes of different lengths in one batch, KV-cache continuation equal to
a full re-prefill, loss-mask holes on observation tokens, budgets, stop strings, determinism."""

import jax
import numpy as np
import pytest

from rlvr_jax import advantages
from rlvr_jax.data import char_tokenizer
from rlvr_jax.envs import base, chat
from rlvr_jax.envs.tool_env import ToolEnvironment
from rlvr_jax.models import partition
from rlvr_jax.models.config import preset
from rlvr_jax.models.transformer import init_params
from rlvr_jax.rollout import multiturn, scoring


class Scripted(base.Environment):
  """Episode ``k`` (the example) ends at its k-th assistant turn, whatever the model writes.

  Turn ``n`` (0-based) before the last is answered by a tool observation ``"obs<n> " * (n+1)``
  and a reward part 0.1; the last turn gets 1.0.
  """

  def __init__(self, stop_strings=(), distinct_prompts=False):
    self.stop_strings = tuple(stop_strings)
    self.distinct_prompts = distinct_prompts
    self.texts = {}
    self.resets = 0

  def reset(self, example):
    self.resets += 1
    tag = f" {self.resets}" if self.distinct_prompts else ""
    return base.Episode(example=example,
                        messages=[{"role": "user", "content": f"task {example}{tag}:"}])

  def step(self, episode, text):
    n = sum(m["role"] == "assistant" for m in episode.messages)
    self.texts.setdefault(id(episode), []).append(text)
    if n + 1 >= episode.example:
      return base.StepResult(reward=1.0, done=True)
    return base.StepResult(observations=({"role": "tool", "content": f"obs{n} " * (n + 1)},),
                           reward=0.1, tool_calls=1, tool_errors=n % 2)


@pytest.fixture(scope="module")
def model():
  tok = char_tokenizer.build()
  config = preset("tiny", vocab_size=len(tok))
  params = init_params(config, jax.random.PRNGKey(0))
  # Sharper next-token distributions than the 0.02 init (see tests/rollout/conftest.py).
  params = jax.tree.map(lambda x: x * 5.0 if x.ndim >= 3 else x, params)
  return tok, config, params


# One set of static shapes for every test (one compilation of each program).
SETTINGS = dict(num_samples=2, max_turns=4, max_tokens_per_turn=8, max_observation_tokens=32,
                max_cache_slots=128)


def _run(model, env, examples, key=3, max_tokens=64, **overrides):
  tok, config, params = model
  stop_ids = [tok.eos_token_id, tok.convert_tokens_to_ids("a")]
  return multiturn.rollout(params, config, env, examples, tok, jax.random.PRNGKey(key),
                           max_tokens=max_tokens, stop_token_ids=stop_ids,
                           **{**SETTINGS, **overrides})


@pytest.fixture(scope="module")
def batch(model):
  return _run(model, Scripted(), [1, 2, 3, 5])


def _spans(flags):
  """Maximal runs of True as (start, stop) pairs."""
  edges = np.diff(np.concatenate([[0], flags.astype(int), [0]]))
  return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def test_episodes_end_at_different_turns(batch):
  out, episodes = batch
  np.testing.assert_array_equal(out.num_turns, [1, 1, 2, 2, 3, 3, 4, 4])
  d, tb = multiturn.END_DONE, multiturn.END_TURN_BUDGET
  np.testing.assert_array_equal(out.end_reason, [d, d, d, d, d, d, tb, tb])
  np.testing.assert_allclose(out.turn_rewards[4], [0.1, 0.1, 1.0, 0.0])
  np.testing.assert_allclose(out.turn_rewards[6], [0.1, 0.1, 0.1, 0.1])  # cut before its end
  np.testing.assert_array_equal(out.tool_calls, [0, 0, 1, 1, 2, 2, 4, 4])
  np.testing.assert_array_equal(out.tool_errors, [0, 0, 0, 0, 1, 1, 2, 2])
  assert [m["role"] for m in episodes[4].messages] == [
      "user", "assistant", "tool", "assistant", "tool", "assistant"]
  assert [s.reward for s in episodes[4].steps] == [0.1, 0.1, 1.0]
  for row in range(8):
    model_spans = _spans(out.loss_mask[row] > 0)
    assert len(model_spans) == out.num_turns[row]
    assert all(0 < stop - start <= 8 for start, stop in model_spans)
    for k, (start, stop) in enumerate(model_spans):
      assert np.all(out.turn_ids[row, start:stop] == k)
  assert out.tokens.shape == out.loss_mask.shape == (8, 64)


def test_loss_mask_holes_are_exactly_the_observations(batch, model):
  tok = model[0]
  out, _ = batch
  for row in range(8):
    n = out.lengths[row]
    assert out.token_mask[row, :n].all() and not out.token_mask[row, n:].any()
    assert np.all(out.tokens[row, n:] == tok.pad_token_id) and np.all(out.turn_ids[row, n:] == -1)
    holes = _spans(out.token_mask[row] & (out.loss_mask[row] == 0))
    model_spans = _spans(out.loss_mask[row] > 0)
    assert len(holes) == out.num_turns[row] - 1
    for k, (start, stop) in enumerate(holes):
      # The turn before the hole, and what the chat template must append after it.
      turn = out.tokens[row, model_spans[k][0]:model_spans[k][1]].tolist()
      expected = chat.observation_ids(tok, turn, [{"role": "tool", "content": f"obs{k} " * (k + 1)}])
      assert out.tokens[row, start:stop].tolist() == expected
      assert tok.decode(expected).endswith(f"obs{k} " * (k + 1))
      assert np.all(out.turn_ids[row, start:stop] == k)
      assert np.all(out.logprobs[row, start:stop] == 0.0)


@pytest.mark.parametrize("distinct_prompts", [False, True])
def test_cache_continuation_equals_full_reprefill(batch, model, distinct_prompts):
  _, config, params = model
  # Identical prompts within a group are prefilled once and shared; distinct ones each.
  out = _run(model, Scripted(distinct_prompts=True), [1, 2, 3, 5])[0] if distinct_prompts \
      else batch[0]
  # Teacher-force prompt + whole trajectory (model and observation tokens) from scratch.
  lp, _ = scoring.token_logprobs(params, config, out.prompt_tokens, out.prompt_mask, out.tokens,
                                 out.token_mask)
  lp = np.asarray(lp)
  assert config.dtype == "float32" or str(config.compute_dtype) == "float32"
  np.testing.assert_allclose(lp * out.loss_mask, out.logprobs, atol=1e-5, rtol=0)
  assert np.all(out.logprobs[out.loss_mask > 0] < 0)


def test_same_key_same_tokens(batch, model):
  out, _ = batch
  again, _ = _run(model, Scripted(), [1, 2, 3, 5])
  for field in ("tokens", "loss_mask", "logprobs", "turn_ids", "lengths"):
    np.testing.assert_array_equal(getattr(again, field), getattr(out, field))
  programs = (multiturn._prefill_prompts, multiturn._decode_turn, multiturn._prefill_observation)
  compiled = [p._cache_size() for p in programs]
  other, _ = _run(model, Scripted(), [3, 1, 5, 2], key=4)
  assert not np.array_equal(other.tokens, out.tokens)
  # Other contents, key and turn counts in the same shapes: nothing is compiled again.
  assert [p._cache_size() for p in programs] == compiled


def test_token_budget(model):
  out, _ = _run(model, Scripted(), [5, 5, 5, 5], max_tokens=20)
  assert np.all(out.lengths <= 20)
  np.testing.assert_array_equal(out.end_reason, [multiturn.END_TOKEN_BUDGET] * 8)
  metrics = multiturn.multiturn_metrics(out)
  assert metrics["multiturn/truncated_token_budget"] == 1.0
  assert metrics["multiturn/end_done"] == 0.0


def test_stop_string_ends_the_turn(model):
  tok = model[0]
  free, _ = _run(model, Scripted(), [2, 2, 2, 2])
  first_turns = [free.tokens[r, (free.turn_ids[r] == 0) & (free.loss_mask[r] > 0)].tolist()
                 for r in range(8)]
  row = next(r for r, turn in enumerate(first_turns) if len(turn) >= 5)
  turn = first_turns[row]
  # A two-token string inside that turn, at its first occurrence i (not at the turn's end).
  i = next(i for i in range(1, len(turn) - 2)
           if turn[i:i + 2] not in [turn[j:j + 2] for j in range(i)])
  stop = tok.decode(turn[i:i + 2])
  env = Scripted(stop_strings=[stop])
  stopped, episodes = _run(model, env, [2, 2, 2, 2])
  # Same key, same tokens up to the stop string, where the turn now ends.
  model_first = stopped.tokens[row, (stopped.turn_ids[row] == 0) & (stopped.loss_mask[row] > 0)]
  assert model_first.tolist() == turn[:i + 2]
  assert env.texts[id(episodes[row])][0].endswith(stop)


def test_metrics_and_token_rewards(batch):
  out, _ = batch
  metrics = multiturn.multiturn_metrics(out)
  assert metrics["multiturn/turns_mean"] == 2.5
  assert metrics["multiturn/tool_calls_mean"] == 1.75
  assert metrics["multiturn/tool_error_rate"] == pytest.approx(6 / 14)
  assert metrics["multiturn/truncated_turn_budget"] == 0.25
  real, model_tokens = out.token_mask.sum(), out.loss_mask.sum()
  assert metrics["multiturn/observation_token_share"] == pytest.approx(1 - model_tokens / real)
  # Per-turn rewards land on the last model token of each turn and flow back through holes.
  token_rewards = advantages.turn_rewards_to_token_rewards(out.turn_rewards, out.turn_ids,
                                                           out.loss_mask)
  np.testing.assert_allclose(np.sum(token_rewards, axis=-1), out.rewards, rtol=1e-6)
  returns = np.asarray(advantages.discounted_returns(token_rewards, out.loss_mask))
  first = np.argmax(out.loss_mask > 0, axis=-1)
  np.testing.assert_allclose(returns[np.arange(8), first], out.rewards, rtol=1e-6)


class ScriptedToolUse(ToolEnvironment):
  """A ToolEnvironment whose assistant turns are scripted (the random model's text is ignored):
  turn 0 runs the example's code in the Python tool, turn 1 answers with the tool's output."""

  def step(self, episode, text):
    if not episode.steps:
      return super().step(episode, f"```python\n{episode.example['code']}\n```\n")
    return super().step(episode, "answer: " + episode.messages[-1]["content"].strip())


def test_python_tool_through_the_rollout(model, tmp_path):
  tok = model[0]
  target = tmp_path / "owned"
  env = ScriptedToolUse(["python"], lambda text, ex: float(text.endswith(ex["answer"])),
                        tool_format="python_fence")
  examples = [{"prompt": "six times seven", "code": "print(6 * 7)", "answer": "42"},
              {"prompt": "hostile", "code": f"import os; os.system('touch {target}')",
               "answer": "42"},
              {"prompt": "state", "code": "x = 40\nx + 2", "answer": "42"},
              {"prompt": "crash", "code": "1 / 0", "answer": "42"}]
  out, episodes = _run(model, env, examples)
  np.testing.assert_allclose(out.rewards, [1, 1, 0, 0, 1, 1, 0, 0])  # hostile, crash score 0
  np.testing.assert_array_equal(out.tool_calls, [1] * 8)
  np.testing.assert_array_equal(out.tool_errors, [0, 0, 1, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(out.num_turns, [2] * 8)
  assert not target.exists()
  assert "violation" in episodes[2].messages[-2]["content"]
  # The tool's output is in the trajectory as an observation (a hole in the loss mask).
  hole = out.token_mask[0] & (out.loss_mask[0] == 0)
  assert tok.decode(out.tokens[0, hole].tolist()).endswith("42\n")


def test_sharded_params_give_the_same_trajectories(batch, model):
  tok, config, params = model
  devices = np.array(jax.devices()[:4]).reshape(1, 2, 2)
  mesh = jax.sharding.Mesh(devices, ("data", "fsdp", "tensor"))
  sharded = jax.device_put(params, partition.param_shardings(params, mesh))
  out, _ = _run((tok, config, sharded), Scripted(), [1, 2, 3, 5])
  np.testing.assert_array_equal(out.tokens, batch[0].tokens)
  np.testing.assert_allclose(out.logprobs, batch[0].logprobs, atol=1e-5)
