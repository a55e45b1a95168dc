r"""GRPO on GSM8K-style data with a local Qwen2.5-Instruct checkpoint (0.5B or 1.5B).

  python -m experiments.train --config=experiments/configs/qwen2_5_gsm8k_grpo.py \
      --config.model.hf_dir=/models/Qwen2.5-0.5B-Instruct \
      --config.task.files.train=/data/gsm8k/train.jsonl \
      --config.task.files.test=/data/gsm8k/test.jsonl --workdir=/tmp/qwen_grpo

Data: JSONL records ``{"question": ..., "answer": "<solution> #### 72"}`` (the GSM8K layout; the
``gsm8k`` verifier reads the number after ``####`` in the gold and in the completion). Prompts are
chat messages with the ``gsm8k`` answer-format instruction, rendered by the model's chat template.

Hyper-parameters follow the GRPO paper (arXiv 2402.03300 §4.1: lr 1e-6, β = 0.04 k3 KL, ε = 0.2,
one update per rollout) with a batch sized for one accelerator (64 prompts × 8 samples); the
fields are ordinary config entries, so ``--config.rl.num_samples=16`` etc. override them.
"""

import ml_collections

from experiments.configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.log_every = 1
  config.tokenizer.kind = "hf"
  config.model = ml_collections.ConfigDict(dict(
      preset="", hf_dir="", dtype="bfloat16", param_dtype="float32", overrides={},
      # cuDNN flash attention on a GPU, and remat keeping matmul outputs: the fastest update
      # measured on an H200 (benchmarks/README.md).
      attention="flash"))
  config.task = ml_collections.ConfigDict(dict(
      kind="files", name="gsm8k",
      files=dict(train="gsm8k/train.jsonl", test="gsm8k/test.jsonl"),
      field_map={"question": "prompt"}, default_verifier="gsm8k", answer_format="chat",
      system=""))
  config.data.prompt_buckets = (128, 256, 512)
  config.data.add_bos = False
  config.sft.num_steps = 0
  config.rl.objective = "grpo"
  config.rl.objective_overrides = {}
  config.rl.num_steps = 500
  config.rl.num_prompts = 64
  config.rl.num_samples = 8
  config.rl.max_new_tokens = 512
  config.rl.temperature = 1.0
  config.rl.num_iterations = 1
  config.rl.num_mini_batches = 1
  config.rl.num_micro_batches = 16
  config.rl.recompute_old_logprobs = True
  config.rl.chunk_size = 128
  config.remat = "dots"
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-6, schedule="constant", warmup_steps=10,
      weight_decay=0.0, grad_clip=1.0, b1=0.9, b2=0.99))
  config.reward.num_workers = 4
  config.reward.timeout_s = 10.0
  config.eval = ml_collections.ConfigDict(dict(
      every=50, num_prompts=256, num_samples=4, batch_size=64, seed=0, greedy=True))
  config.checkpoint = ml_collections.ConfigDict(dict(every=50, keep=3))
  return config
