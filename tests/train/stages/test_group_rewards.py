"""The group-reward hook: what it writes into a group (rewards, per-token routing, filter,
columns), its policy handle, its start-up checks, and tiny training runs from the recipes in
``experiments/configs/group_rewards.py`` whose rewards are recomputed by hand in the loop's
``batch_callback``."""

import json
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import advantages as advantages_lib
from rlvr_jax.data import char_tokenizer
from rlvr_jax.data import task as task_lib
from rlvr_jax.objectives import presets
from rlvr_jax.rewards import group as group_lib
from rlvr_jax.train import stages as stages_lib
from rlvr_jax.train.stages import base
from rlvr_jax.train.stages import group_rewards as gr

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # the experiments package lives at the repository root
from experiments.configs import group_rewards as recipes  # pylint: disable=g-import-not-at-top
from experiments.configs import tiny  # pylint: disable=g-import-not-at-top

P, G, T = 2, 3, 4


def _token_parts(batch):
  """Per-token rewards: 0.1 · (position + 1) on every generated token."""
  return np.broadcast_to(0.1 * (np.arange(T) + 1.0), (P, G, T)) * batch.mask


def _drop_second(batch):
  return group_lib.GroupRewardResult(np.ones((P, G)), {"seen": 1.0},
                                     drop_groups=np.array([False, True]))


group_lib.register("test_token_parts", lambda: _token_parts)
group_lib.register("test_drop_second", lambda: _drop_second)


def _run(objective="grpo", **kwargs):
  tokenizer = char_tokenizer.build()
  sampler = types.SimpleNamespace(tokenizer=tokenizer, pad_id=tokenizer.pad_token_id,
                                  add_bos=True)
  return base.RunInfo(group_size=G, num_prompts=P, temperature=1.0,
                      objective=presets.get(objective), sampler=sampler, max_prompt_length=16,
                      **kwargs)


def _group():
  lengths = np.array([[4, 2, 3], [1, 4, 2]])
  mask = (np.arange(T) < lengths[..., None]).astype(np.float32)
  return {"prompt_tokens": np.full((P, G, 3), 5, np.int32),
          "prompt_mask": np.ones((P, G, 3), bool),
          "tokens": np.full((P, G, T), 7, np.int32), "logprobs": -mask, "mask": mask,
          "in_loss": np.ones((P, G), np.float32), "lengths": lengths,
          "truncated": np.zeros((P, G), np.float32),
          "raw_rewards": np.array([[1, 0, 1], [0, 0, 1]], np.float32),
          "reward_errors": np.zeros((P, G), np.float32),
          "example_id": np.repeat(np.arange(P)[:, None], G, axis=1)}


def _ctx(run, logprobs_fn=None):
  examples = [task_lib.Example("1+1=", "2", "exact"), task_lib.Example("2+2=", "4", "exact")]
  return base.StepContext(0, None, examples, run, None, None, None, logprobs_fn)


def test_per_token_rewards_reach_token_estimators_on_their_tokens():
  run = _run()
  stage = gr.GroupRewards(dict(gr.DEFAULTS, functions={
      "parts": {"function": "test_token_parts", "weight": 2.0},
      "drop": {"function": "test_drop_second", "weight": 0.5}}, combine="add",
      verifier_weight=1.0), run)
  group = _group()
  out, metrics = stage(_ctx(run), group)
  placed = 2.0 * _token_parts(types.SimpleNamespace(mask=group["mask"]))
  np.testing.assert_allclose(out["raw_rewards"],
                             group["raw_rewards"] + placed.sum(-1) + 0.5, rtol=1e-6)
  np.testing.assert_array_equal(out["verifier_rewards"], group["raw_rewards"])
  # A token-return estimator reads outcome_to_token_rewards(rewards) + token_rewards: every
  # part on its own token, the verifier's reward and the sequence parts on the last one.
  seen = np.asarray(advantages_lib.outcome_to_token_rewards(out["raw_rewards"], out["mask"]))
  seen = seen + out["token_rewards"]
  last = np.asarray(advantages_lib.outcome_to_token_rewards(group["raw_rewards"] + 0.5,
                                                            group["mask"]))
  np.testing.assert_allclose(seen, placed + last, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out["in_loss"], [[1, 1, 1], [0, 0, 0]])
  assert metrics["drop/seen"] == 1.0 and metrics["group_rewards/dropped_groups"] == 1.0


def test_replace_failure_and_columns():
  def broken(batch):
    raise RuntimeError("down")

  group_lib.register("test_broken", lambda: broken)
  run = _run()
  stage = gr.GroupRewards(dict(gr.DEFAULTS, functions={"test_broken": {}},
                               failure_reward=-1.0), run)
  with pytest.warns(RuntimeWarning, match="test_broken"):
    out, metrics = stage(_ctx(run), _group())
  np.testing.assert_array_equal(out["raw_rewards"], -np.ones((P, G)))
  np.testing.assert_array_equal(out["reward_errors"], np.ones((P, G)))
  assert metrics["rewards/test_broken/failures"] == P * G

  group_lib.register("test_column", lambda name: lambda b: group_lib.GroupRewardResult(
      np.zeros((P, G)), columns={name: np.zeros((P, G))}))
  ok = gr.GroupRewards(dict(gr.DEFAULTS, functions={"c": {"function": "test_column",
                                                          "name": "extra"}}), run)
  assert ok(_ctx(run), _group())[0]["extra"].shape == (P, G)
  clash = gr.GroupRewards(dict(gr.DEFAULTS, functions={"c": {"function": "test_column",
                                                             "name": "in_loss"}}), run)
  with pytest.raises(ValueError, match="in_loss"):
    clash(_ctx(run), _group())


def test_policy_handle_pads_chunks_and_trims():
  calls = []

  def logprobs_fn(params, rows, all_positions):
    calls.append({k: np.array(v) for k, v in rows.items()})
    return -rows["tokens"].astype(np.float32) * rows["mask"]

  run = _run()
  handle = gr.PolicyHandle(_ctx(run, logprobs_fn), rows=4, stream_id=4)
  contexts = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10, 11], [12]]
  continuations = [[20, 21], [22], [23, 24, 25], [], [26]]
  out = handle.logprobs(contexts, continuations)
  # Contexts: at least the largest prompt bucket (16); continuations: at least 8 columns.
  assert len(calls) == 2 and calls[0]["prompt_tokens"].shape == (4, 16)
  assert calls[0]["tokens"].shape == (4, 8)
  np.testing.assert_array_equal(calls[0]["prompt_tokens"][0, -3:], [1, 2, 3])
  np.testing.assert_array_equal(calls[0]["prompt_mask"][0], [0] * 13 + [1] * 3)
  np.testing.assert_array_equal(calls[1]["tokens"][:, 0], [26, 26, 26, 26])  # repeated row
  handle.logprobs([list(range(17))], [[1]])
  assert calls[-1]["prompt_tokens"].shape == (4, 32)
  want = np.zeros((5, 3))
  for r, c in enumerate(continuations):
    want[r, :len(c)] = -np.asarray(c)
  np.testing.assert_array_equal(out, want)


def test_start_up_checks():
  settings = {"functions": {"ttrl": {}}, "enabled": True}
  with pytest.raises(ValueError, match="cannot be combined"):
    stages_lib.from_config({"group_rewards": settings, "dars": {"enabled": True}}, _run())
  with pytest.raises(ValueError, match="multi-turn"):
    gr.GroupRewards(dict(gr.DEFAULTS, functions={"ttrl": {}}), _run(episodes=object()))
  with pytest.raises(ValueError, match="empty"):
    gr.GroupRewards(dict(gr.DEFAULTS), _run())
  with pytest.raises(ValueError, match="answer_mask"):  # the verifree objective needs its hook
    stages_lib.from_config({}, _run("verifree"))
  stages = stages_lib.from_config(
      {"group_rewards": {"functions": {"verifree": {}}, "enabled": True}}, _run("verifree"))
  assert stages[0].scores_all_positions and stages[0].scores_rounds


# --- tiny runs from the recipes --------------------------------------------------------------


class _IndependentPolicy(group_lib.PolicyScorer):
  """Scores rows with the model directly, every row padded to one fixed shape (not the hook's
  buckets and chunks); samples Co-Reward's rephrasings with the hook's stream keys. Set
  ``params`` and ``step`` before each use."""

  ROWS, WIDTH, LENGTH = 32, 40, 8

  def __init__(self, config):
    from rlvr_jax.rollout import text_sampler  # pylint: disable=g-import-not-at-top
    from rlvr_jax.train import builders  # pylint: disable=g-import-not-at-top
    from rlvr_jax.train import prng  # pylint: disable=g-import-not-at-top
    from rlvr_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top
    self.tokenizer = builders.build_tokenizer(config)
    model_config, _ = builders.build_model(config, self.tokenizer, jax.random.PRNGKey(0))
    self.sampler = builders.build_sampler(config, model_config, self.tokenizer)
    self.fn = jax.jit(step_lib.model_logprob_fn(model_config, temperature=config.rl.temperature,
                                                chunk_size=8, return_entropy=False))
    self.key = prng.split_seed(config.seed)[1]
    self.prng, self.text_sampler = prng, text_sampler
    self.params, self.step = None, 0

  def logprobs(self, contexts, continuations):
    n = len(contexts)
    prompt = np.zeros((self.ROWS, self.WIDTH), np.int32)
    prompt_mask = np.zeros((self.ROWS, self.WIDTH), bool)
    tokens = np.zeros((self.ROWS, self.LENGTH), np.int32)
    mask = np.zeros((self.ROWS, self.LENGTH), np.float32)
    for r, (c, x) in enumerate(zip(contexts, continuations)):
      prompt[r, self.WIDTH - len(c):], prompt_mask[r, self.WIDTH - len(c):] = c, True
      tokens[r, :len(x)], mask[r, :len(x)] = x, 1.0
    out = np.asarray(self.fn(self.params, prompt, prompt_mask, tokens, mask)[0]) * mask
    return out[:n, :max(len(x) for x in continuations)]

  def sample(self, prompts, num_samples):
    key = self.prng.stage_key(self.key, self.step, 4, 0)
    examples = [types.SimpleNamespace(prompt=q) for q in prompts]
    _, texts = self.sampler.sample(self.params, examples, key, num_samples=num_samples)
    return [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]

  def encode(self, text):
    return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

  def decode(self, ids):
    return self.tokenizer.decode(list(ids), skip_special_tokens=True)

  def encode_prompt(self, prompt):
    return self.text_sampler.prompt_token_ids(self.tokenizer, prompt, add_bos=True)


def _hand_rewards(policy, info, step, functions):
  """The group functions recomputed on the step's group with an independent policy."""
  group = info["group"]
  policy.params, policy.step = info["params"], step
  examples = [info["examples"][i] for i in group["example_id"][:, 0]]
  p, g, _ = group["tokens"].shape
  texts = [[policy.decode(group["tokens"][i, j, :group["lengths"][i, j]]) for j in range(g)]
           for i in range(p)]
  batch = group_lib.RewardBatch(
      examples=examples, prompts=[e.prompt for e in examples], completions=texts,
      tokens=group["tokens"], mask=group["mask"], verifier_rewards=group["verifier_rewards"],
      truncated=group["truncated"], prompt_tokens=group["prompt_tokens"][:, 0],
      prompt_mask=group["prompt_mask"][:, 0], logprobs=group["logprobs"], pad_id=0,
      policy=policy, step=step)
  return group_lib.compute_group_rewards(functions, batch)


def _metrics(workdir):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_recipe_methods_train_with_hand_checked_rewards(tmp_path):
  """One tiny run with seven functions combined (TTRL, Co-Reward, VeRPO, the log-prob reward,
  RLPR with its filter, SAR, DARL), added to the verifier's reward."""
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = recipes.get_config("ttrl,tiny")
  functions = {}
  for method, weight in (("ttrl", 1.0), ("co_reward", 0.5), ("verpo", 0.25), ("logprob", 0.1),
                         ("rlpr", 0.3), ("sar", 0.2), ("darl", 0.5)):
    spec = recipes.apply(tiny.tiny_config(), method, tiny=True).rl.stages.group_rewards
    functions[method] = dict(spec.functions[method].to_dict(), weight=weight)
  functions["rlpr"].update(std_threshold=0.01)
  config.rl.stages.group_rewards.functions = functions
  config.rl.stages.group_rewards.combine = "add"
  config.sft.num_steps = 0
  # A fresh copy of every function, called once per step like the hook's (RLPR keeps state).
  fresh = [group_lib.GroupRewardFunction(
      name, group_lib.build(name, **{k: v for k, v in spec.items() if k != "weight"}),
      spec["weight"]) for name, spec in functions.items()]
  policy, checked = _IndependentPolicy(config), []

  def callback(step, info):
    out = _hand_rewards(policy, info, step, fresh)
    group = info["group"]
    want = group["verifier_rewards"] + np.where(out.valid, out.total, 0.0)
    np.testing.assert_allclose(group["raw_rewards"], want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(info["advantage_inputs"].rewards, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(group["in_loss"] == 0,
                                  np.repeat(out.drop_groups[:, None], group["in_loss"].shape[1],
                                            axis=1))
    checked.append(step)

  loop.train(config, str(tmp_path), batch_callback=callback)
  assert checked == [0, 1]
  record = _metrics(tmp_path)[-1]
  for name in ("ttrl/majority_ratio", "co_reward/label_agreement", "verpo/pass_rate",
               "rlpr/std_threshold", "darl/within_range", "rewards/sar/mean",
               "group_rewards/verifier_mean", "group_rewards/scoring_calls"):
    assert name in record, name


def test_verifree_recipe_trains_on_the_spliced_reference(tmp_path):
  """The verifree recipe: the reference replaces the sampled answer in the trained rows, its
  reward-weighted log-likelihood reaches the loss, and the reward is pi(a*|x) by hand."""
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = recipes.get_config("verifree,tiny")
  # No warm-up: the random model finishes some of its 6-token samples (ends with EOS).
  config.sft.num_steps, config.rl.max_new_tokens = 0, 6
  fresh = [group_lib.GroupRewardFunction("verifree", group_lib.build(
      "verifree", delimiter="", template="{answer}", answer_term=False))]
  policy, checked = _IndependentPolicy(config), []

  def callback(step, info):
    group, batch = info["group"], info["batch"]
    # With no reasoning the spliced rows score the same reference: recompute on them.
    out = _hand_rewards(policy, info, step, fresh)
    np.testing.assert_allclose(group["raw_rewards"], out.total, rtol=1e-4, atol=1e-6)
    spliced = group["answer_mask"].sum(-1) > 0
    for i, j in zip(*np.nonzero(spliced)):
      answer = info["examples"][group["example_id"][i, 0]].answer
      assert policy.decode(group["tokens"][i, j][group["answer_mask"][i, j] > 0]) == answer
    np.testing.assert_allclose(batch.loss.extras["answer_weights"],
                               np.where(spliced, group["raw_rewards"], 0.0).reshape(-1))
    checked.append(int(spliced.sum()))

  loop.train(config, str(tmp_path), batch_callback=callback)
  assert len(checked) == 2 and sum(checked) > 0, checked  # finished samples were spliced
  assert "verifree/answer_logprob" in _metrics(tmp_path)[-1]


def test_function_state_survives_a_resume(tmp_path):
  """RLPR's EMA threshold is saved in each checkpoint and restored on resume: a run stopped
  after step 2 and resumed scores step 3 with the threshold it had reached, not a fresh one."""
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = recipes.get_config("rlpr,tiny")
  config.sft.num_steps, config.rl.num_steps, config.checkpoint.every = 0, 2, 1
  config.rl.stages.group_rewards.functions.rlpr.std_threshold = 0.3
  loop.train(config, str(tmp_path))
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  with checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints")) as ckpt:
    saved = ckpt.restore(2)[1]["stages"]["group_rewards"]["rlpr"]["beta"]
  assert saved != 0.3  # two calls moved it
  config.rl.num_steps = 3
  loop.train(config, str(tmp_path))
  records = _metrics(tmp_path)
  assert [r["step"] for r in records] == [1, 2, 3]
  assert records[0]["rlpr/std_threshold"] == pytest.approx(0.3)
  assert records[2]["rlpr/std_threshold"] == pytest.approx(saved)


def test_state_of_an_unknown_function_is_refused():
  stage = gr.GroupRewards(dict(gr.DEFAULTS, functions={"rlpr": {}}), _run())
  assert set(stage.state_dict()) == {"rlpr"}
  stage.load_state_dict({"rlpr": {"beta": 0.125}})
  assert stage.state_dict() == {"rlpr": {"beta": 0.125}}
  with pytest.raises(ValueError, match="ttrl"):
    stage.load_state_dict({"ttrl": {"x": 1}})
  with pytest.raises(ValueError, match="keeps no state"):
    base.Stage().load_state_dict({"x": 1})
