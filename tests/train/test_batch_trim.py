"""Wasted work removed from a step, without changing it: padding trimmed before the scoring passes
and the update (:func:`rlvr_jax.train.batch.trim_padding`), and where old log-probs come from
(:func:`rlvr_jax.train.batch.old_logprobs_source`, the update's ``old_logprobs_from_policy``).

The equivalence test runs the real model (a 1-layer random Llama-shaped preset) with GRPO, and a
bigram policy written here with REINFORCE++, on a group with left-padded, stacked prompts and
short completions, trimmed and not; the other tests use the bigram policy (fast to compile).
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from rlvr_jax import types
from rlvr_jax.models import config as model_config_lib
from rlvr_jax.models import transformer
from rlvr_jax.objectives import presets
from rlvr_jax.train import batch as batch_lib
from rlvr_jax.train import state as state_lib
from rlvr_jax.train import step as step_lib

VOCAB = 32


def _group(lengths, prompt_lengths, *, width=64, prompt_width=16, seed=0, stage_column=False):
  """A group batch ``[P, W, ...]``: completions of ``lengths [P, W]`` in ``width`` columns,
  prompts of ``prompt_lengths [P]`` left-padded to ``prompt_width``."""
  rng = np.random.default_rng(seed)
  lengths = np.asarray(lengths)
  p, w = lengths.shape
  mask = (np.arange(width) < lengths[..., None]).astype(np.float32)
  prompt_mask = np.zeros((p, w, prompt_width), bool)
  for i, n in enumerate(prompt_lengths):
    prompt_mask[i, :, prompt_width - n:] = True
  group = {
      "prompt_tokens": np.where(prompt_mask, rng.integers(1, VOCAB, prompt_mask.shape), 0
                                ).astype(np.int32),
      "prompt_mask": prompt_mask,
      "tokens": np.where(mask > 0, rng.integers(1, VOCAB, mask.shape), 0).astype(np.int32),
      "logprobs": (-rng.uniform(0.1, 3.0, mask.shape) * mask).astype(np.float32),
      "mask": mask, "in_loss": np.ones((p, w), np.float32), "lengths": lengths.astype(np.int32),
      "truncated": (lengths >= width).astype(np.float32),
      "raw_rewards": rng.integers(0, 2, (p, w)).astype(np.float32),
      "valid": np.ones((p, w), bool), "example_id": np.repeat(np.arange(p)[:, None], w, 1),
  }
  if stage_column:
    group["answer_mask"] = mask.copy()
  return group


def test_widths_are_powers_of_two_from_32_capped_at_the_full_width():
  assert batch_lib.completion_width(_group([[5, 20]], [4])) == 32
  assert batch_lib.completion_width(_group([[33, 2]], [4])) == 64
  assert batch_lib.completion_width(_group([[64, 2]], [4])) == 64  # truncated: full width
  assert batch_lib.completion_width(_group([[3, 2]], [4], width=12)) == 12  # never wider than T
  # A multi-turn group attends to observation tokens after its last loss token.
  group = _group([[5, 5]], [4])
  group["attention_mask"] = group["mask"].copy()
  group["attention_mask"][0, 1, :40] = 1.0
  assert batch_lib.completion_width(group) == 64
  widths = {batch_lib.completion_width(_group([[n, 1]], [4], width=128)) for n in range(1, 129)}
  assert widths == {32, 64, 128}  # a bounded number of shapes, hence of compilations
  assert batch_lib.prompt_width(_group([[1, 1], [1, 1]], [3, 7]), (4, 8, 16)) == 8
  assert batch_lib.prompt_width(_group([[1, 1]], [16]), (4, 8, 16)) == 16
  assert batch_lib.prompt_width(_group([[1, 1]], [3]), (32,)) == 16  # never wider than the group


def test_trim_padding_cuts_per_token_arrays_only():
  group = _group([[5, 20], [7, 1]], [3, 7], stage_column=True)
  trimmed = batch_lib.trim_padding(group, (4, 8, 16))
  for key in ("tokens", "logprobs", "mask", "answer_mask"):
    assert trimmed[key].shape == (2, 2, 32), key
    np.testing.assert_array_equal(trimmed[key], group[key][:, :, :32])
  for key in ("prompt_tokens", "prompt_mask"):
    np.testing.assert_array_equal(trimmed[key], group[key][:, :, -8:])
  for key in ("lengths", "raw_rewards", "in_loss", "example_id"):
    assert trimmed[key] is group[key]
  kept = batch_lib.trim_padding(group, (4, 8, 16), completions=False)  # LaSeR
  assert kept["tokens"].shape == (2, 2, 64) and kept["prompt_tokens"].shape == (2, 2, 8)


def _tiny_model():
  config = model_config_lib.preset("tiny", vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                   num_layers=1, num_heads=2, num_kv_heads=1, head_dim=16,
                                   max_position_embeddings=128)
  return config, transformer.init_params(config, jax.random.key(0))


def _batch(objective, group, advantage_fn=None, ref_shift=0.05):
  """The update's batch from a group, with the loop's own advantage and batch functions."""
  # A reference policy a little off the sampler's (per token, so trimming cuts it like the rest).
  ref = (group["logprobs"] - ref_shift * (group["tokens"] % 5)) * group["mask"]
  inputs = batch_lib.advantage_inputs(group, group["logprobs"], ref.astype(np.float32), 0,
                                      objective.advantage_reads)
  advantage_fn = advantage_fn or batch_lib.make_advantage_fn(objective)
  rewards, advantages = batch_lib.group_advantages(advantage_fn, inputs, group["valid"])
  batch = batch_lib.train_batch(group, rewards, advantages, group["logprobs"],
                                ref.astype(np.float32), objective.loss_reads)
  return jax.tree.map(jnp.asarray, batch)


def _bigram_logprobs(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
  """A bigram policy: token t from token t-1 (the last prompt token for t = 0)."""
  del prompt_mask
  prev = jnp.concatenate([prompt_tokens[:, -1:], completion_tokens[:, :-1]], axis=1)
  logp = jax.nn.log_softmax(params["embed"][prev] @ params["out"], axis=-1)
  chosen = jnp.take_along_axis(logp, completion_tokens[..., None], axis=-1)[..., 0]
  return chosen * completion_mask, -(jnp.exp(logp) * logp).sum(-1) * completion_mask


def _bigram_params():
  rng = np.random.default_rng(0)
  return {"embed": jnp.asarray(rng.normal(size=(VOCAB, 8)), jnp.float32),
          "out": jnp.asarray(rng.normal(size=(8, VOCAB)) * 0.5, jnp.float32)}


# The model with GRPO (KL in the loss, seq-mean-token-mean); the bigram with REINFORCE++ (KL in
# the reward, token-level returns), which compiles faster.
@pytest.mark.parametrize("policy, name", [("model", "grpo"), ("bigram", "reinforce_pp")])
def test_trimmed_batch_gives_the_same_loss_and_gradient(policy, name):
  if policy == "model":
    model_config, params = _tiny_model()
    logprob_fn = step_lib.model_logprob_fn(model_config, temperature=1.0, chunk_size=16,
                                           return_entropy=True)
  else:
    params, logprob_fn = _bigram_params(), _bigram_logprobs
  objective = presets.get(name)
  update = jax.jit(step_lib.make_update_fn(objective, optax.sgd(1.0), logprob_fn))
  # Two prompts of 5 and 9 real tokens stacked to 16 columns; completions of at most 20 of 64.
  group = _group([[5, 20, 9, 13], [2, 17, 11, 6]], [5, 9], width=64, prompt_width=16)
  trimmed = batch_lib.trim_padding(group, (8, 12, 16))
  assert trimmed["tokens"].shape[2] == 32 and trimmed["prompt_tokens"].shape[2] == 12
  outs = []
  for g in (group, trimmed):
    state = state_lib.create(jax.tree.map(jnp.copy, params), optax.sgd(1.0))
    new_state, metrics = update(state, _batch(objective, g))
    outs.append((metrics, new_state.params))
  (full, full_params), (cut, cut_params) = outs
  for key in ("loss", "grad_norm", "entropy"):
    np.testing.assert_allclose(cut[key], full[key], rtol=2e-5, atol=1e-7, err_msg=key)
  # sgd(1.0): new params = params - gradient, so the gradients agree too.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               cut_params, full_params)


def test_old_logprobs_from_policy_is_a_ratio_of_exactly_one_and_traces_once_per_width():
  objective = presets.get("grpo")
  traces = []

  def counted(*args):
    traces.append(args[3].shape)
    return _bigram_logprobs(*args)

  from_policy = jax.jit(step_lib.make_update_fn(objective, optax.sgd(1.0), counted,
                                                old_logprobs_from_policy=True))
  given = jax.jit(step_lib.make_update_fn(objective, optax.sgd(1.0), _bigram_logprobs))
  rng = np.random.default_rng(2)
  advantage_fn = batch_lib.make_advantage_fn(objective)
  for step, longest in enumerate([128, 20, 50, 40]):
    lengths = rng.integers(1, longest + 1, size=(2, 4))
    lengths[0, 0] = longest
    group = batch_lib.trim_padding(_group(lengths, [4, 6], width=128, seed=step), (8,))
    batch = _batch(objective, group, advantage_fn)
    exact = _bigram_logprobs(_bigram_params(), batch.prompt_tokens, batch.prompt_mask,
                             batch.completion_tokens, batch.loss.mask)[0]
    # The batch's old log-probs are the sampler's (random here): the update ignores them.
    state = state_lib.create(_bigram_params(), optax.sgd(1.0))
    _, ours = from_policy(state, batch)
    state = state_lib.create(_bigram_params(), optax.sgd(1.0))
    _, reference = given(state, dataclasses.replace(
        batch, loss=dataclasses.replace(batch.loss, old_logprobs=exact)))
    for key in ("loss", "grad_norm"):
      np.testing.assert_allclose(ours[key], reference[key], rtol=1e-6, atol=1e-7)
    assert float(ours["clip_ratio/region_mean"]) == float(ours["approx_kl"]) == 0.0
  widths = [shape[1] for shape in traces]
  assert set(widths) == {32, 64, 128} and len(widths) == 3  # one trace per width, not per step


def _config(dtype="float32", *, recompute=None, iterations=1, mini_batches=1, top_p=None,
            lora_rank=0, lora_dropout=0.0):
  return ml_collections.ConfigDict(dict(
      model=dict(dtype=dtype), lora=dict(rank=lora_rank, dropout=lora_dropout),
      rl=dict(recompute_old_logprobs=ml_collections.FieldReference(recompute, field_type=bool),
              num_iterations=iterations, num_mini_batches=mini_batches,
              top_p=ml_collections.FieldReference(top_p, field_type=float),
              top_k=ml_collections.FieldReference(None, field_type=int))))


def test_old_logprobs_source():
  grpo, kl_in_reward = presets.get("grpo"), presets.get("reinforce_pp")
  assert "old_logprobs" in kl_in_reward.advantage_reads
  source = batch_lib.old_logprobs_source
  # Explicit choices win.
  assert source(_config("bfloat16", recompute=False), grpo) == "rollout"
  assert source(_config(recompute=True), grpo) == "recompute"
  # float32 on a CPU, plain sampling: the sampler's log-probs are the update's.
  assert source(_config(mini_batches=4), grpo, backend="cpu") == "rollout"
  # bf16, or TF32 matmuls on a GPU, or truncated sampling, or LoRA dropout: one update per
  # rollout takes the update's own log-probs; several updates recompute.
  assert source(_config("bfloat16"), grpo, backend="cpu") == "policy"
  assert source(_config(), grpo, backend="gpu") == "policy"
  assert source(_config(top_p=0.9), grpo, backend="cpu") == "policy"
  assert source(_config(lora_rank=8, lora_dropout=0.05), grpo, backend="cpu") == "policy"
  assert source(_config(lora_rank=8), grpo, backend="cpu") == "rollout"
  assert source(_config("bfloat16", mini_batches=4), grpo, backend="cpu") == "recompute"
  assert source(_config("bfloat16", iterations=2), grpo, backend="cpu") == "recompute"
  # KL in the reward reads old log-probs before the update: a pass.
  assert source(_config("bfloat16"), kl_in_reward, backend="cpu") == "recompute"
