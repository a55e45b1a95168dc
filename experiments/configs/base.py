"""The base config: every field the trainer reads, with its default; the one source of defaults.

Other configs start from :func:`get_config` and change what they need (``demo.py``, ``tiny.py``,
the Qwen recipes). ``objective`` picks the preset: ``config.rl.objective`` then holds the preset's
``name`` and every keyword argument of it at its default, each a field of its own
(``--config.rl.objective.epsilon_high=0.28``); ``config.rl.stages`` holds every registered data
stage's keys (``--config.rl.stages.dars.enabled=True``). ``docs/config.md`` documents each field.
"""

import ml_collections

from rlvr_jax.train import config_lib
from rlvr_jax.train import stages
from rlvr_jax.train.stages import multiturn


def get_config(objective: str = "grpo") -> ml_collections.ConfigDict:
  """The base config with preset ``objective`` (a config-file argument:
  ``--config=experiments/configs/base.py:dapo``)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.log_every = 10
  # Every N RL steps, the first log_completions_num samples (prompt, completion, reward, gold)
  # go to <workdir>/completions.jsonl and TensorBoard's Text tab (0: never).
  config.log_completions_every = 10
  config.log_completions_num = 8
  config.remat = "none"  # "none", "full" or "dots": per-layer rematerialisation in the model

  config.tokenizer = ml_collections.ConfigDict(dict(kind="hf"))
  config.model = ml_collections.ConfigDict(dict(
      preset="", hf_dir="", attention="einsum", dtype="float32", param_dtype="float32",
      overrides={}))
  # chat/system: procedural prompts as chat messages (an HF tokenizer's chat template renders them).
  config.task = ml_collections.ConfigDict(dict(kind="procedural", name="arithmetic", kwargs={},
                                               chat=False, system=""))
  config.data = ml_collections.ConfigDict(dict(prompt_buckets=(64, 128, 256), add_bos=False))
  # Generation engine (docs/rollout.md): "static" decodes a call's rows together until the longest
  # stops; "continuous" keeps num_slots rows decoding (0: all), refilling slots as rows stop.
  config.rollout = ml_collections.ConfigDict(dict(engine="static", num_slots=0))

  config.sft = ml_collections.ConfigDict(dict(
      num_steps=0, target_pass_at_1=0.0, check_every=50, probe_prompts=100, probe_seed=1,
      init_from="", batch_size=32, seed=1, log_every=100,
      optimizer=dict(name="adamw", learning_rate=1e-5, schedule="cosine", warmup_steps=0,
                     decay_steps=0, end_learning_rate_factor=0.0, weight_decay=0.0,
                     grad_clip=1.0, b1=0.9, b2=0.999, eps=1e-8)))

  config.rl = ml_collections.ConfigDict(dict(
      objective=config_lib.objective_config(objective),
      stages=stages.default_config(),
      dynamic_sampling=dict(enabled=False, max_rounds=0),
      multiturn=dict(multiturn.DEFAULTS),  # tool-use episodes (train/stages/multiturn.py)
      num_steps=100, num_prompts=32, num_samples=8, max_new_tokens=256,
      temperature=1.0, top_p=ml_collections.FieldReference(None, field_type=float),
      top_k=ml_collections.FieldReference(None, field_type=int),
      num_iterations=1, num_mini_batches=1, num_micro_batches=1,
      # None: recompute only where the sampler's log-probs are not the update's (batch.py).
      recompute_old_logprobs=ml_collections.FieldReference(None, field_type=bool),
      trim_padding=True, chunk_size=128, ref_refresh_steps=0,
      max_skipped_updates=10))

  # LoRA adapters (rank 0: full fine-tuning); see docs/models.md.
  config.lora = ml_collections.ConfigDict(dict(
      rank=0, alpha=16.0, dropout=0.0, targets="q,k,v,o,gate,up,down", init="kaiming",
      base_quantization="none", quant_block_size=64))

  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-6, schedule="constant", warmup_steps=0, decay_steps=0,
      end_learning_rate_factor=0.0, weight_decay=0.0, grad_clip=1.0, b1=0.9, b2=0.999,
      eps=1e-8))
  config.reward = ml_collections.ConfigDict(dict(
      num_workers=0, timeout_s=10.0, failure_reward=0.0, verifier_modules=()))
  config.eval = ml_collections.ConfigDict(dict(
      every=0, num_prompts=100, num_samples=4, batch_size=50, seed=0, greedy=True))
  config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
  config.checkpoint = ml_collections.ConfigDict(dict(every=50, keep=2))
  return config
