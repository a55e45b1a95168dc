"""A shortened CPU demo: the default config's warm-up, then a few GRPO steps raise the reward.

Same task, model, tokenizer, SFT warm-up and RL settings as ``python -m experiments.train`` with
the default config; only the number of RL steps and the held-out evaluation are cut. The threshold
comes from observed runs (docs/training.md lists them), not from a wish.
"""

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RL_STEPS = 40
WINDOW = 10
MIN_GAIN = 0.08


def test_short_demo_raises_the_training_reward(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path}",
         f"--config.rl.num_steps={RL_STEPS}", "--config.eval.num_prompts=0",
         "--config.checkpoint.every=0"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rewards = [json.loads(line)["reward"] for line in open(tmp_path / "metrics.jsonl")]
  assert len(rewards) == RL_STEPS
  first, last = np.mean(rewards[:WINDOW]), np.mean(rewards[-WINDOW:])
  assert last >= first + MIN_GAIN, (first, last, rewards)
