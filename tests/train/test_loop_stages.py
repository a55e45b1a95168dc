"""The RL loop's data stages and input providers in the loop: DARS, Scaf-GRPO, ViSurf, ReMax,
LaSeR, and the stage framework's config handling.

Each test runs :func:`rlvr_jax.train.loop.train` in-process on a tiny config (char tokenizer,
1-layer width-32 model, operands 0..3, 4 prompts x 4 samples, 3 new tokens) and inspects the
batch the loop assembles (``batch_callback``) against values computed here from the definitions.
"""

import json
import math
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import registry
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import batch as batch_lib
from rlvr_jax.train import builders
from rlvr_jax.train import stages as stages_lib
from rlvr_jax.train.stages import base as stage_base
from rlvr_jax.models.transformer import Transformer
from experiments.configs import tiny
from rlvr_jax.train import loop

P, G, T = 4, 4, 3


def _tiny_config(objective="grpo", *, num_steps=1, sft_steps=0, **objective_values):
  """The shared tiny config (``experiments/configs/tiny.py``) with a short, fast warm-up."""
  return tiny.tiny_config(objective, num_steps=num_steps, sft_steps=sft_steps,
                          sft_learning_rate=1e-2, sft_warmup_steps=5, **objective_values)


def _run(config, workdir, inspect=None):
  """Trains; returns ``[(step, batch)]`` and the metric records. ``inspect(batch)`` runs inside
  the callback, while ``batch['params']`` are alive (the update then donates them)."""
  batches = []

  def callback(step, batch):
    if inspect is not None:
      batch = dict(batch, inspected=inspect(batch))
    batches.append((step, batch))

  loop.train(config, str(workdir), batch_callback=callback)
  with open(workdir / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f if line.strip()]
  return batches, records


def _zscore(r):
  """GRPO advantage, ddof=1, epsilon 1e-6 outside the root."""
  r = np.asarray(r, np.float64)
  return (r - r.mean()) / (r.std(ddof=1) + 1e-6)


def _dars_extra(accuracy, n, n_max):
  """DARS ET schedule without std (specs/rewards.md §6), one prompt."""
  a = 0.5 / n if accuracy <= 1e-6 else accuracy
  if a >= 0.5:
    return 0
  s = 2 * a * (1 - a)
  return min(math.ceil((0.5 * n - n * s) / s), n_max - n)


def test_dars_tops_up_hard_groups_with_static_update_shapes(tmp_path):
  config = _tiny_config(num_steps=3)
  config.rl.stages.dars.update(dict(enabled=True, schedule="ET", n_max=8))
  compiles, marks, batches = [], [], []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if "backend_compile" in event:
      compiles.append(event)

  def callback(step, batch):
    marks.append(len(compiles))
    batches.append((step, batch))

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    loop.train(config, str(tmp_path), batch_callback=callback)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  for (_, batch), record in zip(batches, records):
    group = batch["group"]
    assert group["raw_rewards"].shape == (P, 8)  # padded to n_max
    assert batch["batch"].completion_tokens.shape == (P * 8, T)
    # Stage 1 fills the first G slots; each prompt then has G + dN valid samples.
    accuracy = (group["raw_rewards"][:, :G] >= 1).mean(axis=1)
    extra = [_dars_extra(a, G, 8) for a in accuracy]
    np.testing.assert_array_equal(group["valid"].sum(axis=1), G + np.array(extra))
    assert record["dars/extra_rollouts"] == sum(extra) > 0
    assert record["dars/hard_prompts"] == sum(e > 0 for e in extra)
    # Extra samples are the same prompt's; padding slots carry no loss.
    np.testing.assert_array_equal(group["example_id"][group["valid"]].reshape(-1),
                                  np.repeat(group["example_id"][:, 0], group["valid"].sum(1)))
    assert (group["mask"][~group["valid"]] == 0).all()
    # Keep-mask: groups whose combined accuracy is 0 or 1 leave the loss.
    combined = ((group["raw_rewards"] >= 1) & group["valid"]).sum(1) / group["valid"].sum(1)
    kept = (combined > 0) & (combined < 1)
    assert record["dars/kept_groups"] == kept.sum()
    loss_mask = batch["batch"].loss.mask.reshape(P, 8, T)
    assert (loss_mask[~kept] == 0).all()
  # The jit'd parts see the same shapes every step: nothing compiles after the first step.
  assert marks[2] == marks[1], compiles[marks[1]:marks[2]]


@pytest.fixture
def hinted_task(tmp_path):
  """A file task whose verifier accepts a completion only under a knowledge hint of >= 2 parts
  ("a b"), so that every group fails unhinted and the minimal solving hint level is 2."""
  name = "test_loop_stages/needs_hint_ab"
  if name not in registry.registered_verifiers():
    registry.register_verifier(name, lambda completion, example: float(
        "Knowledge Hints: a b\n" in example.prompt))
  path = tmp_path / "train.jsonl"
  with open(path, "w") as f:
    for i in range(6):
      f.write(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1), "verifier": name,
                          "metadata": {"hints": {"knowledge": ["a", "b"],
                                                 "solution": ["c"]}}}) + "\n")
  return str(path)


def test_scaf_replaces_one_sample_of_all_zero_groups_after_warmup(tmp_path, hinted_task):
  config = _tiny_config(num_steps=2)
  config.task = dict(kind="files", files={"train": hinted_task, "test": hinted_task},
                     name="hinted")
  config.data.prompt_buckets = (8, 32)
  config.rl.stages.scaf.update(dict(enabled=True, warmup_steps=1))
  batches, records = _run(config, tmp_path / "run")
  (_, warm), (_, hinted) = batches
  # Step 1 is inside the warm-up: untouched.
  assert (warm["group"]["hint_level"] == 0).all() and records[0]["scaf/replaced"] == 0
  group, batch = hinted["group"], hinted["batch"]
  assert records[1]["scaf/hard_groups"] == P and records[1]["scaf/replaced"] == P
  # Exactly sample 0 of each group was replaced, by the minimal solving level (2).
  np.testing.assert_array_equal(group["hint_level"], [[2, 0, 0, 0]] * P)
  np.testing.assert_array_equal(group["raw_rewards"], [[1, 0, 0, 0]] * P)
  tokenizer = builders.build_tokenizer(config)
  rows = np.arange(P) * G
  for b in range(P * G):
    example = hinted["examples"][group["example_id"].reshape(-1)[b]]
    if b in rows:
      example = task_lib.Example(f"Knowledge Hints: a b\n{example.prompt}", example.answer,
                                 example.verifier)
    expected = text_sampler.prompt_token_ids(tokenizer, example.prompt, add_bos=True)
    np.testing.assert_array_equal(batch.prompt_tokens[b][batch.prompt_mask[b]], expected)
  # The hint is conditioning only: the loss mask covers exactly the completion tokens.
  lengths = group["lengths"].reshape(-1)
  np.testing.assert_array_equal(batch.loss.mask, np.arange(T)[None] < lengths[:, None])
  np.testing.assert_allclose(hinted["advantage_inputs"].rewards, group["raw_rewards"])
  np.testing.assert_allclose(batch.loss.advantages[rows, 0], _zscore([1, 0, 0, 0])[0],
                             rtol=1e-5)


def test_visurf_injects_the_scored_gold_completion_as_sample_g_plus_1(tmp_path):
  config = _tiny_config()
  config.rl.stages.visurf.enabled = True
  config.rl.num_prompts = 8  # 8 x (4 + 1) rows divide over the 8 test devices
  batches, records = _run(config, tmp_path)
  (_, out), = batches
  n = 8
  group, batch = out["group"], out["batch"]
  assert group["raw_rewards"].shape == (n, G + 1)
  np.testing.assert_array_equal(group["is_injected"], [[False] * G + [True]] * n)
  np.testing.assert_array_equal(group["raw_rewards"][:, G], 1.0)
  assert records[0]["visurf/gold_reward"] == 1.0
  tokenizer = builders.build_tokenizer(config)
  for p in range(n):
    example = out["examples"][group["example_id"][p, G]]
    ids = group["tokens"][p, G, :group["lengths"][p, G]]
    assert tokenizer.decode(ids, skip_special_tokens=True) == example.answer
    assert ids[-1] == tokenizer.eos_token_id
  # Advantages are the group z-scores over all G + 1 samples.
  rewards = group["raw_rewards"]
  expected = np.stack([_zscore(r) for r in rewards])
  np.testing.assert_allclose(batch.loss.advantages[:, 0].reshape(n, G + 1), expected,
                             rtol=1e-5, atol=1e-6)
  # y*'s old log-probs are teacher-forced (the sampler has none): negative on its tokens.
  injected = np.arange(n) * (G + 1) + G
  old = batch.loss.old_logprobs[injected] * batch.loss.mask[injected]
  assert (old[batch.loss.mask[injected] > 0] < 0).all()


def _greedy_rewards(params, config, examples):
  """One greedy completion per prompt with the rollout code, scored by each example's verifier."""
  tokenizer = builders.build_tokenizer(config)
  model_config = builders.build_model_config(config, tokenizer)
  sampler = text_sampler.TextSampler(model_config, tokenizer, tuple(config.data.prompt_buckets),
                                     T, add_bos=True)
  _, texts = sampler.sample(params, examples, jax.random.key(1), num_samples=1, temperature=0.0)
  return np.array([registry.get_verifier(e.verifier)(t, e) for t, e in zip(texts, examples)])


@pytest.fixture
def coin_task(tmp_path):
  """A file task whose verifier accepts completions starting with an even character code, so an
  untrained policy already gets mixed rewards (no warm-up needed)."""
  name = "test_loop_stages/even_first_char"
  if name not in registry.registered_verifiers():
    registry.register_verifier(name, lambda completion, example: float(
        bool(completion) and ord(completion[0]) % 2 == 0))
  path = tmp_path / "coin.jsonl"
  with open(path, "w") as f:
    for i in range(6):
      f.write(json.dumps({"prompt": f"{i}+2=", "answer": str(i + 2), "verifier": name}) + "\n")
  return str(path)


def test_remax_advantage_is_reward_minus_greedy_reward(tmp_path, coin_task):
  config = _tiny_config("remax")
  config.task = dict(kind="files", files={"train": coin_task, "test": coin_task}, name="coin")

  def greedy_of_batch(batch):
    examples = [batch["examples"][i] for i in batch["group"]["example_id"][:, 0]]
    return _greedy_rewards(batch["params"], config, examples)

  batches, records = _run(config, tmp_path / "run", greedy_of_batch)
  (_, out), = batches
  group, batch, greedy = out["group"], out["batch"], out["inspected"]
  assert 0 < group["raw_rewards"].mean() < 1  # not trivially 0 - 0
  np.testing.assert_array_equal(out["advantage_inputs"].extras["greedy_rewards"], greedy)
  assert records[0]["remax/greedy_reward"] == pytest.approx(greedy.mean())
  expected = group["raw_rewards"] - greedy[:, None]
  mask = batch.loss.mask.reshape(P, G, T)
  np.testing.assert_allclose(batch.loss.advantages.reshape(P, G, T),
                             expected[..., None] * mask, atol=1e-6)


def test_laser_self_rewards_match_a_direct_forward_pass(tmp_path):
  config = _tiny_config("laser", sft_steps=30, warmup_steps=0)
  tokenizer = builders.build_tokenizer(config)
  model_config = builders.build_model_config(config, tokenizer)

  def direct_logprobs(out):
    """log pi(. | prompt, completion up to its stop token) for every row: the rows unpadded,
    concatenated and right-padded to one length, in one forward pass."""
    batch, lengths = out["batch"], out["group"]["lengths"].reshape(-1)
    sequences = [np.concatenate([batch.prompt_tokens[b][batch.prompt_mask[b]],
                                 batch.completion_tokens[b, :lengths[b]]]) for b in range(P * G)]
    width = max(len(x) for x in sequences)
    tokens = np.zeros((P * G, width), np.int32)
    for b, x in enumerate(sequences):
      tokens[b, :len(x)] = x
    real = np.arange(width)[None] < np.array([len(x) for x in sequences])[:, None]
    logits, _ = Transformer(model_config).apply(
        {"params": out["params"]}, jnp.asarray(tokens),
        jnp.broadcast_to(jnp.arange(width), tokens.shape), jnp.asarray(real))
    last = np.array([len(x) - 1 for x in sequences])
    return np.asarray(jax.nn.log_softmax(
        np.asarray(logits, np.float32)[np.arange(P * G), last], axis=-1))

  batches, records = _run(config, tmp_path, direct_logprobs)
  (_, out), = batches
  group, batch = out["group"], out["batch"]
  z_c = tokenizer.unk_token_id  # the char tokenizer has no reserved token: <unk>
  assert batch.completion_tokens.shape == (P * G, T + 1)
  lengths = group["lengths"].reshape(-1)
  finished = np.flatnonzero(group["truncated"].reshape(-1) == 0)
  assert finished.size > 0
  self_rewards = np.asarray(out["advantage_inputs"].extras["self_rewards"]).reshape(-1)
  for b in finished:
    position = batch.loss.extras["selfreward_position"][b]
    assert position == lengths[b] and batch.completion_tokens[b, position] == z_c
    assert batch.loss.mask[b, position] == 0
    logprob = out["inspected"][b, z_c]  # log pi(z_c | prompt, completion, eos)
    np.testing.assert_allclose(self_rewards[b], 0.1 * (1.0 * logprob + 23.0), rtol=1e-4)
  assert np.all(self_rewards[group["truncated"].reshape(-1) > 0] == 0)
  assert np.isfinite(records[0]["laser/self_reward_mse"])
  assert records[0]["laser/self_reward_mean"] == pytest.approx(self_rewards[finished].mean(),
                                                               rel=1e-5)


def _run_info(config, objective):
  tokenizer = builders.build_tokenizer(config)
  sampler = builders.build_sampler(config, builders.build_model_config(config, tokenizer),
                                   tokenizer)
  return stage_base.RunInfo(G, P, config.rl.temperature, objective, sampler, 16)


def test_stage_config_errors():
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  config = _tiny_config()
  grpo = presets.get("grpo")
  run = _run_info(config, grpo)
  config.rl.stages.dars.update(dict(enabled=True, schedule="ET", n_max=8))
  stages = config.rl.stages.to_dict()
  with pytest.raises(ValueError, match="bogus"):
    stages_lib.from_config(dict(stages, dars=dict(stages["dars"], bogus=1)), run)
  with pytest.raises(ValueError, match="unknown stages"):
    stages_lib.from_config(dict(stages, darz={}), run)
  visurf_too = dict(stages, visurf=dict(enabled=True))
  with pytest.raises(ValueError, match="cannot be combined"):
    stages_lib.from_config(visurf_too, run)
  with pytest.raises(ValueError, match="cannot be combined"):
    stages_lib.from_config(stages, run, dynamic_sampling=True)
  only_visurf = dict(visurf_too, dars=dict(enabled=False))
  (visurf,) = stages_lib.from_config(only_visurf, run)
  assert visurf.width(G) == G + 1
  (dars,) = stages_lib.from_config(dict(stages, dars=dict(enabled=True, schedule="HW")), run)
  assert dars.width(G) == 8 * G  # README: 64 at N = 8
  # Input providers are on exactly when the objective reads what they provide.
  laser = presets.get("laser")
  names = lambda objective, **kw: [s.name for s in stages_lib.from_config(
      {}, _run_info(config, objective), **kw)]
  assert names(laser) == ["laser"] and names(presets.get("remax")) == ["remax"]
  assert names(grpo) == []
  config.rl.temperature = 0.7
  with pytest.raises(ValueError, match="temperature"):
    stages_lib.from_config({}, _run_info(config, laser))
  (provider,) = stages_lib.from_config({}, _run_info(config, presets.get("laser",
                                                                          temperature=0.7)))
  assert (provider.beta_v, provider.c_ref, provider.temperature) == (0.1, -23.0, 0.7)
  assert provider.token_id == builders.build_tokenizer(config).unk_token_id


def test_objective_reading_an_unknown_input_fails_at_start_up():
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  provided = stages_lib.provided_inputs()
  oracle = types.SimpleNamespace(name="oracle", advantage_reads=frozenset(
      {"rewards", "oracle_rewards"}), loss_reads=frozenset())
  with pytest.raises(NotImplementedError, match="oracle_rewards"):
    batch_lib.check_objective_inputs(oracle, provided)
  for name in ("remax", "laser"):
    batch_lib.check_objective_inputs(presets.get(name), provided)  # provided by stages
    with pytest.raises(NotImplementedError):
      batch_lib.check_objective_inputs(presets.get(name), ())  # ... and only by them
  # The loss side too: THR's surrogate reads per-token hidden rewards the loop does not compute.
  with pytest.raises(NotImplementedError, match="'thr'"):
    batch_lib.check_objective_inputs(presets.get("thr"), provided)
  # Every other preset the library ships passes.
  for name in presets.names():
    if name != "thr":
      batch_lib.check_objective_inputs(presets.get(name), provided)


def test_score_all_positions_matches_masked_scores_on_real_tokens():
  from rlvr_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

  def fake(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
    del params, prompt_tokens, prompt_mask
    return completion_tokens * 1.0 * completion_mask, None

  tokens = jnp.array([[5, 6, 0]])
  mask = jnp.array([[1.0, 0.0, 0.0]])
  out, _ = step_lib.score_all_positions(fake)(None, None, None, tokens, mask)
  np.testing.assert_array_equal(out, [[5, 6, 0]])
