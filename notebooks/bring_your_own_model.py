"""Source of notebooks/bring_your_own_model.ipynb (build with `python notebooks/build.py`)."""

# %% [markdown]
# # Bring your own model
#
# From a Hugging Face checkpoint directory to one RL update, with the library's public pieces:
#
# 1. load the weights and tokenizer (`rlvr_jax.models.hf.load_hf`, `load_tokenizer`);
# 2. sample a group of completions per prompt (`rlvr_jax.rollout.text_sampler.TextSampler`);
# 3. score them with a verifier (`rlvr_jax.train.rewards_host.RewardScorer`, the task registry);
# 4. turn rewards into advantages and take one GRPO step (`rlvr_jax.train.step`).
#
# Set `MODEL_DIR` to a local Llama 3.x / Qwen2 / Qwen2.5 / Qwen3 directory (`config.json`,
# `*.safetensors`, tokenizer files) to run the same cells on a real model; nothing is ever
# downloaded. Left empty, the notebook first writes a tiny *random* Qwen2 checkpoint with
# transformers + torch `save_pretrained` and a character tokenizer, so it runs on a CPU in
# seconds.

# %%
MODEL_DIR = ""          # e.g. "/models/Qwen2.5-0.5B-Instruct"; empty: build a tiny random one
NUM_PROMPTS = 4         # P
NUM_SAMPLES = 4         # G, completions per prompt
MAX_NEW_TOKENS = 8      # raise for a real model (e.g. 256)
LEARNING_RATE = 1e-2    # large, so that one step visibly moves a tiny model; ~1e-6 for a real one

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvr_jax import types
from rlvr_jax.data import procedural
from rlvr_jax.models import hf
from rlvr_jax.objectives import presets
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import batch as batch_lib
from rlvr_jax.train import rewards_host
from rlvr_jax.train import state as state_lib
from rlvr_jax.train import step as step_lib

# %% [markdown]
# ## A tiny random checkpoint (skipped when `MODEL_DIR` is set)
#
# A 2-layer Qwen2 written exactly as any HF model is: `config.json` + `model.safetensors` from
# `save_pretrained`, plus the tokenizer files of `rlvr_jax.data.char_tokenizer` (a real
# `PreTrainedTokenizerFast` with one token per character).

# %%
if not MODEL_DIR:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from rlvr_jax.data import char_tokenizer  # pylint: disable=g-import-not-at-top

  MODEL_DIR = tempfile.mkdtemp(prefix="tiny_qwen2_")
  tok = char_tokenizer.build()
  torch.manual_seed(0)
  hf_config = transformers.Qwen2Config(
      vocab_size=-(-len(tok) // 8) * 8, hidden_size=64, intermediate_size=128,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      max_position_embeddings=64, tie_word_embeddings=True,
      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
      pad_token_id=tok.pad_token_id)
  transformers.Qwen2ForCausalLM(hf_config).save_pretrained(MODEL_DIR)
  tok.save_pretrained(MODEL_DIR)
print(MODEL_DIR, sorted(os.listdir(MODEL_DIR)))

# %% [markdown]
# ## Load
#
# `load_hf` reads the safetensors with numpy (no torch at run time) and checks that every
# parameter comes from the checkpoint and every tensor is used. Pass `mesh=` to place each
# weight straight onto its sharding for a model that does not fit one device.

# %%
model_config, params = hf.load_hf(MODEL_DIR)
tokenizer = hf.load_tokenizer(MODEL_DIR)
num_params = sum(x.size for x in jax.tree.leaves(params))
print(f"{num_params:,} parameters; vocabulary {len(tokenizer)}")
print(model_config)

# %% [markdown]
# ## Sample
#
# Prompts from the procedural arithmetic task (swap in your own `TaskSource`), rendered and
# tokenised as the trainer does (`TextSampler` applies the chat template when a prompt is a list
# of messages and stops at the tokenizer's end tokens), left-padded to a bucket, then `G` samples
# each.

# %%
task = procedural.get("arithmetic", min_value=0, max_value=99, ops=("+",))
examples = procedural.take(task, "train", NUM_PROMPTS)
sampler = text_sampler.TextSampler(model_config, tokenizer, (16, 64, 256, 1024), MAX_NEW_TOKENS,
                                   add_bos=tokenizer.bos_token_id is not None)
samples, texts = sampler.sample(params, examples, jax.random.key(0), num_samples=NUM_SAMPLES)
for i, e in enumerate(examples):
  print(f"{e.prompt!r} (gold {e.answer}):", texts[i * NUM_SAMPLES:(i + 1) * NUM_SAMPLES])

# %% [markdown]
# ## Score
#
# Each example names its verifier (`procedural/integer` here; `math` for the math verifier);
# `RewardScorer` runs them with a per-completion timeout and turns any failure into a zero
# reward. A random model is never right, and a group whose rewards are all equal has zero GRPO
# advantage, so its update would be zero. To see a gradient from a random model we add a small
# shaping term of our own, the fraction of completion characters that are digits (your reward
# function is just Python over strings).

# %%
repeated = [e for e in examples for _ in range(NUM_SAMPLES)]
with rewards_host.RewardScorer(num_workers=0, timeout_s=10.0) as scorer:
  correct = scorer(texts, repeated).rewards
digits = np.array([sum(c.isdigit() for c in t) / max(len(t), 1) for t in texts], np.float32)
rewards = (correct + 0.1 * digits).reshape(NUM_PROMPTS, NUM_SAMPLES)
print("verifier:", correct.reshape(NUM_PROMPTS, NUM_SAMPLES))
print("reward = verifier + 0.1 * digit fraction:\n", rewards.round(3))

# %% [markdown]
# ## One GRPO step
#
# The same pieces the trainer chains: the objective's reward transform and advantage
# (`rlvr_jax.train.batch.make_advantage_fn`), a `LossBatch` of constants (old log-probs from the sampler, the
# reference equal to the current policy), and the jit'd update of `rlvr_jax.train.step`, which
# recomputes the policy's log-probs with the model's chunked scorer and applies optax.

# %%
objective = presets.get("grpo")
p, g, t = NUM_PROMPTS, NUM_SAMPLES, MAX_NEW_TOKENS
mask = samples.mask
inputs = types.AdvantageInputs(
    rewards=jnp.asarray(rewards), mask=mask.reshape(p, g, t),
    tokens=samples.tokens.reshape(p, g, t), lengths=samples.lengths.reshape(p, g),
    truncated=samples.truncated.astype(jnp.float32).reshape(p, g),
    token_rewards=jnp.zeros((p, g, t)))
shaped, advantages = batch_lib.make_advantage_fn(objective)(inputs)
print("advantages per sequence:\n", np.asarray(advantages[..., 0]).round(2))

batch = step_lib.TrainBatch(
    prompt_tokens=samples.prompt_tokens, prompt_mask=samples.prompt_mask,
    completion_tokens=samples.tokens,
    loss=types.LossBatch(
        mask=mask, advantages=advantages.reshape(p * g, t), old_logprobs=samples.logprobs,
        ref_logprobs=samples.logprobs, rollout_logprobs=samples.logprobs,
        rewards=shaped.reshape(-1), correct=jnp.asarray(correct),
        group_ids=jnp.repeat(jnp.arange(p, dtype=jnp.int32), g),
        truncated=samples.truncated.astype(jnp.float32)))
tx, _ = state_lib.make_optimizer(ml_collections.ConfigDict(dict(
    name="adamw", learning_rate=LEARNING_RATE, schedule="constant", warmup_steps=0,
    weight_decay=0.0, grad_clip=1.0)))
logprob_fn = step_lib.model_logprob_fn(model_config, temperature=1.0, chunk_size=t,
                                       return_entropy=True)
update = jax.jit(step_lib.make_update_fn(objective, tx, logprob_fn))
state = state_lib.create(params, tx, ref_params=params)


@jax.jit
def policy_loss(params, batch):
  """The objective's loss on `batch` and the policy's recomputed log-probs [B, T]."""
  logprobs, _ = logprob_fn(params, batch.prompt_tokens, batch.prompt_mask,
                           batch.completion_tokens, batch.loss.mask)
  counts = types.global_counts(batch.loss.mask, batch.loss.group_ids)
  return objective.loss(logprobs, batch.loss, counts)[0], logprobs


loss_before, recomputed = policy_loss(state.params, batch)
new_state, metrics = update(state, batch)
loss_after, _ = policy_loss(new_state.params, batch)
print({k: round(float(v), 5) for k, v in metrics.items()})
print(f"GRPO loss on this batch: {float(loss_before):.5f} before the step, "
      f"{float(loss_after):.5f} after")

# %% [markdown]
# Recomputed log-probs match the sampler's (the step relies on it when it takes the old log-probs
# from the rollout), and the step lowered the loss on its own batch.

# %%
gap = float(jnp.max(jnp.abs((recomputed - samples.logprobs) * mask)))
print(f"max |recomputed - sampled| log-prob: {gap:.2e}")
assert gap < 1e-3, gap
if float(jnp.abs(advantages).max()) > 0:
  assert loss_after < loss_before, (loss_before, loss_after)

# %% [markdown]
# From here, the full loop is `loop.train(config, workdir)` with `config.model.hf_dir =
# MODEL_DIR` and `config.tokenizer.kind = "hf"` (the recipes in `experiments/configs/` do
# this), or see the `tiny_grpo` notebook for the loop on the CPU demo.
