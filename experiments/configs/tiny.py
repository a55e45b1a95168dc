"""The smallest RL run: a smoke test in seconds, and the loop tests' config.

  python -m experiments.train --config=experiments/configs/tiny.py --workdir=/tmp/tiny

The demo's task, tokenizer and loop at toy size: operands 0..3, a 1-layer width-32 model, a
20-step warm-up, 4 prompts x 4 samples of 3 new tokens, 2 GRPO steps. It starts from the base
config, so changing the demo (``demo.py``) does not change the tests that use it.
"""

import ml_collections

from experiments.configs import base


def tiny_config(objective: str = "grpo", *, num_steps: int = 2, sft_steps: int = 20,
                sft_learning_rate: float = 3e-3, sft_warmup_steps: int = 50,
                **objective_values) -> ml_collections.ConfigDict:
  """A tiny run (operands 0..3, a 1-layer width-32 model, 4 prompts x 4 samples, 3 new tokens)
  of preset ``objective`` with ``objective_values`` for its keyword arguments."""
  config = base.get_config(objective)
  config.rl.objective.update(objective_values)
  config.tokenizer.kind = "char"
  config.model.preset = "tiny"
  config.model.overrides = dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
                                num_kv_heads=4, head_dim=16, max_position_embeddings=64)
  config.task.kwargs = dict(min_value=0, max_value=3, ops="+", heldout_fraction=0.2)
  config.data.prompt_buckets = (8, 16)
  config.data.add_bos = True
  config.sft.num_steps = sft_steps
  config.sft.batch_size = 16
  config.sft.optimizer.learning_rate = sft_learning_rate
  config.sft.optimizer.warmup_steps = sft_warmup_steps
  config.rl.num_steps = num_steps
  config.rl.num_prompts = 4
  config.rl.num_samples = 4
  config.rl.max_new_tokens = 3
  config.rl.chunk_size = 8
  config.optimizer.learning_rate = 1e-4
  config.optimizer.warmup_steps = 10
  config.eval.num_prompts = 0
  config.checkpoint.every = 0
  return config


def get_config(objective: str = "grpo") -> ml_collections.ConfigDict:
  """The tiny run of preset ``objective``; override fields with ``--config.<field>=<value>``."""
  return tiny_config(objective)
