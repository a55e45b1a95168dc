r"""DAPO on GSM8K-style data with a local Qwen2.5-Instruct checkpoint.

Same data, model and prompts as ``qwen2_5_gsm8k_grpo.py``; the objective is the ``dapo`` preset
(arXiv 2503.14476: ±1 rewards, clip-higher ε = (0.2, 0.28), token-mean loss, no KL, soft overlong
punishment with L_max = ``max_new_tokens`` and a cache of a quarter of it), with the paper's 16
updates per rollout scaled to 4 mini-batches, and DAPO's dynamic sampling
(``rl.dynamic_sampling``: drop groups whose rewards are all equal, refill from new prompts, at most
``max_rounds`` extra generation rounds).

  python -m experiments.train --config=experiments/configs/qwen2_5_gsm8k_dapo.py \
      --config.model.hf_dir=/models/Qwen2.5-0.5B-Instruct --workdir=/tmp/qwen_dapo
"""

import ml_collections

from experiments.configs import qwen2_5_gsm8k_grpo


def get_config() -> ml_collections.ConfigDict:
  """The DAPO recipe."""
  config = qwen2_5_gsm8k_grpo.get_config("dapo")
  max_new = config.rl.max_new_tokens
  config.rl.objective.update(dict(epsilon_low=0.2, epsilon_high=0.28, max_length=max_new,
                                  cache_length=max_new // 4))
  config.rl.num_mini_batches = 4
  config.rl.num_micro_batches = 4
  config.rl.dynamic_sampling = ml_collections.ConfigDict(dict(enabled=True, max_rounds=3))
  config.optimizer.warmup_steps = 20
  return config
