r"""GRPO on reasoning-gym arithmetic with a small chat model (SmolLM2-135M-Instruct): no data files.

  python -m experiments.train --config=experiments/configs/smollm2_arithmetic.py \
      --config.model.hf_dir=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf --workdir=/tmp/smol_grpo

``config.model.hf_dir`` is an HF model directory or a ``.gguf`` file of any Llama/Qwen2/Qwen3
chat model (docs/models.md shows where to get SmolLM2). The task is reasoning-gym's
``basic_arithmetic`` generator (two terms of one or two digits; ``+ - * /``, parentheses and
negatives), generated from a seed per split, so the held-out ``"test"`` split needs no download.
Prompts are chat messages (a one-line system prompt asking for "The answer is <number>.", then
the question) rendered by the model's own chat template; the ``gsm8k_flexible`` verifier compares
the completion's last number with the generator's integer answer (``verifier="reasoning_gym"``
with reasoning-gym's ``<answer>``-tag system prompt suits larger models).

Sized for a CPU or one small accelerator in float32: 8 prompts x 8 samples of up to 32 new
tokens per step, lr 1e-6 with GRPO's β = 0.04 k3 KL and ε = 0.2 (the preset's defaults). Base
accuracy and the command that measured it: docs/training.md.
"""

import ml_collections

from experiments.configs import base

# A 135M model rarely closes <answer> tags (0 of 30 held-out problems with reasoning-gym's tag
# format, greedy), but often ends on the number when asked for one sentence: the verifier is the
# last number of the completion (gsm8k_flexible, sentence period allowed).
SYSTEM_PROMPT = "Reply with one short sentence: The answer is <number>."


def get_config(objective: str = "grpo") -> ml_collections.ConfigDict:
  """The SmolLM2 arithmetic recipe (``objective``: another preset on the same task)."""
  config = base.get_config(objective)
  config.log_every = 1
  config.tokenizer.kind = "hf"
  config.model.dtype = "float32"
  config.task = ml_collections.ConfigDict(dict(
      kind="gym", name="basic_arithmetic",
      kwargs=dict(size=2000, system_prompt=SYSTEM_PROMPT, verifier="gsm8k_flexible",
                  config=dict(min_terms=2, max_terms=2, max_digits=2))))
  # The chat-rendered prompts are 34-44 tokens (500 training examples): the 48 bucket holds them.
  config.data.prompt_buckets = (48, 64, 96)
  config.rl.num_steps = 100
  config.rl.num_prompts = 8
  config.rl.num_samples = 8
  config.rl.max_new_tokens = 32
  config.optimizer.learning_rate = 1e-6
  config.eval.num_prompts = 100
  config.eval.num_samples = 1
  config.eval.batch_size = 50
  config.eval.every = 25
  config.checkpoint.every = 25
  return config
