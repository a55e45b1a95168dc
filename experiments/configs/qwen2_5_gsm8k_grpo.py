r"""GRPO on GSM8K-style data with a local Qwen2.5-Instruct checkpoint (0.5B or 1.5B).

  python -m experiments.train --config=experiments/configs/qwen2_5_gsm8k_grpo.py \
      --config.model.hf_dir=/models/Qwen2.5-0.5B-Instruct \
      --config.task.files.train=/data/gsm8k/train.jsonl \
      --config.task.files.test=/data/gsm8k/test.jsonl --workdir=/tmp/qwen_grpo

Data: JSONL records ``{"question": ..., "answer": "<solution> #### 72"}`` (the GSM8K layout; the
``gsm8k`` verifier reads the number after ``####`` in the gold and in the completion). Prompts are
chat messages with the ``gsm8k`` answer-format instruction, rendered by the model's chat template.

Hyper-parameters follow the GRPO paper (arXiv 2402.03300 §4.1: lr 1e-6, β = 0.04 k3 KL, ε = 0.2,
one update per rollout; the objective's ε and β are spelled out below) with a batch sized for one
accelerator (64 prompts × 8 samples); the fields are ordinary config entries, so
``--config.rl.num_samples=16`` or ``--config.rl.objective.kl_coef=0.0`` override them.

Old log-probs are not recomputed: with one update per rollout the update uses its own, with the
gradient stopped (``rl.recompute_old_logprobs=None``; in bf16 the sampler's differ from the
update's by up to 0.26 nats on SmolLM2, so they are not used either). The DAPO recipe's four
mini-batches per rollout get a teacher-forced pass. ``docs/training.md``, *Efficiency*.
"""

import ml_collections

from experiments.configs import base


def get_config(objective: str = "grpo") -> ml_collections.ConfigDict:
  """The GRPO recipe (``objective``: another preset on the same data and model)."""
  config = base.get_config(objective)
  if objective == "grpo":
    # The values this recipe relies on, spelled out (the GRPO paper's).
    config.rl.objective.update(dict(epsilon_low=0.2, epsilon_high=0.2, kl_coef=0.04,
                                    kl_estimator="k3"))
  config.log_every = 1
  config.tokenizer.kind = "hf"
  config.model.dtype = "bfloat16"
  # cuDNN flash attention on a GPU, and remat keeping matmul outputs: the fastest update measured
  # on an H200 (benchmarks/README.md).
  config.model.attention = "flash"
  config.remat = "dots"
  config.task = ml_collections.ConfigDict(dict(
      kind="files", name="gsm8k",
      files=dict(train="gsm8k/train.jsonl", test="gsm8k/test.jsonl"),
      field_map={"question": "prompt"}, default_verifier="gsm8k", answer_format="chat",
      system=""))
  # Steps of 1.5x: padding beyond a batch's longest prompt is under a third of the width, with
  # five prompt shapes at most (docs/training.md, Efficiency).
  config.data.prompt_buckets = (128, 192, 256, 384, 512)
  config.rl.num_steps = 500
  config.rl.num_prompts = 64
  config.rl.num_samples = 8
  config.rl.max_new_tokens = 512
  config.rl.num_micro_batches = 16
  config.optimizer.learning_rate = 1e-6
  config.optimizer.warmup_steps = 10
  config.optimizer.b2 = 0.99
  config.reward.num_workers = 4
  config.eval.every = 50
  config.eval.num_prompts = 256
  config.eval.batch_size = 64
  config.checkpoint.every = 50
  config.checkpoint.keep = 3
  return config
