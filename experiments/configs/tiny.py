"""The smallest RL run: a smoke test in seconds, and the loop tests' config.

  python -m experiments.train --config=experiments/configs/tiny.py --workdir=/tmp/tiny

The demo's task, tokenizer and loop at toy size: operands 0..3, a 1-layer width-32 model, a
20-step warm-up, 4 prompts x 4 samples of 3 new tokens, 2 GRPO steps. Every field the tests rely
on is set here, so that changing the demo's defaults (``default.py``) does not change them.
"""

import ml_collections

from experiments.configs import default


def tiny_config(objective: str = "grpo", *, num_steps: int = 2, sft_steps: int = 20,
                sft_learning_rate: float = 3e-3, sft_warmup_steps: int = 50
                ) -> ml_collections.ConfigDict:
  """A tiny run (operands 0..3, a 1-layer width-32 model, 4 prompts x 4 samples, 3 new tokens)
  with every RL, SFT and optimizer field the tests rely on set here, so that changing the demo's
  defaults does not change these tests."""
  config = default.get_config()
  config.seed = 0
  config.task.kwargs.min_value = 0
  config.task.kwargs.max_value = 3
  config.task.kwargs.ops = "+"
  config.task.kwargs.heldout_fraction = 0.2
  config.data.prompt_buckets = (8, 16)
  config.data.add_bos = True
  config.sft.num_steps = sft_steps
  config.sft.target_pass_at_1 = 0.0  # a fixed-length warm-up, no accuracy probe
  config.sft.init_from = ""
  config.sft.batch_size = 16
  config.sft.seed = 1
  config.sft.optimizer = dict(name="adamw", learning_rate=sft_learning_rate, schedule="cosine",
                              warmup_steps=sft_warmup_steps, decay_steps=0, weight_decay=0.0,
                              grad_clip=1.0)
  config.rl.objective = objective
  config.rl.objective_overrides = {}
  config.rl.num_steps = num_steps
  config.rl.num_prompts = 4
  config.rl.num_samples = 4
  config.rl.max_new_tokens = 3
  config.rl.temperature = 1.0
  config.rl.top_p = None
  config.rl.top_k = None
  config.rl.num_iterations = 1
  config.rl.num_mini_batches = 1
  config.rl.num_micro_batches = 1
  config.rl.recompute_old_logprobs = False
  config.rl.chunk_size = 8
  config.rl.ref_refresh_steps = 0
  config.optimizer = dict(name="adamw", learning_rate=1e-4, schedule="constant",
                          warmup_steps=10, weight_decay=0.0, grad_clip=1.0, b1=0.9, b2=0.999,
                          eps=1e-8)
  config.eval.num_prompts = 0
  config.eval.every = 0
  config.checkpoint.every = 0
  config.remat = "none"
  config.model.attention = "einsum"
  config.model.preset = "tiny"
  config.model.hf_dir = ""
  config.model.overrides = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
                                num_kv_heads=4, head_dim=16, max_position_embeddings=64)
  return config


def get_config() -> ml_collections.ConfigDict:
  """The tiny run with its defaults; override fields with ``--config.<field>=<value>``."""
  return tiny_config()
