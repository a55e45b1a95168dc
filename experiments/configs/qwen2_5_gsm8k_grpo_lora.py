r"""GRPO with LoRA adapters on GSM8K-style data and a local Qwen2.5-Instruct checkpoint.

The GRPO recipe (``qwen2_5_gsm8k_grpo.py``: same data, prompts, objective and batch) training
rank-16 adapters on every linear projection instead of all weights: the optimizer state exists
for the adapters only, and the KL term's reference is the frozen base with the adapters off, so
no second copy of the model is kept. The base is stored in bf16;
``--config.lora.base_quantization=nf4`` stores it in 4-bit NF4 (QLoRA). Adapters learn with a
larger learning rate than full fine-tuning (1e-5 here, 10x the GRPO recipe's, as LoRA RL setups
in TRL's documentation use).

  python -m experiments.train --config=experiments/configs/qwen2_5_gsm8k_grpo_lora.py \
      --config.model.hf_dir=/models/Qwen2.5-0.5B-Instruct --workdir=/tmp/qwen_grpo_lora
"""

import ml_collections

from experiments.configs import qwen2_5_gsm8k_grpo


def get_config() -> ml_collections.ConfigDict:
  """The GRPO recipe with rank-16 LoRA adapters on a bf16 base."""
  config = qwen2_5_gsm8k_grpo.get_config()
  config.lora.rank = 16
  config.lora.alpha = 32.0
  config.model.param_dtype = "bfloat16"  # the frozen base; the adapters are float32
  config.optimizer.learning_rate = 1e-5
  return config
