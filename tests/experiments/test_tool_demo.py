"""A shortened multi-turn tool demo: the tiny char model learns with RL to call the calculator.

``experiments/configs/tool_demo.py`` cut for CI time: a 300-step warm-up of batch 32 in which half
the examples are tool-using trajectories (so the model learns the call and copy format in few
steps; the full demo shows a tenth), then 12 GRPO steps of 8 prompts x 8 episodes, no held-out
evaluation. Asserted: the training reward (the share of episodes whose final answer is the
product) and the tool-call rate both rise from the first 3 steps to the last 3.
"""

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RL_STEPS = 12
WINDOW = 3


def test_short_tool_demo_raises_reward_and_tool_calls(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path}",
         "--config=experiments/configs/tool_demo.py",
         "--config.sft.num_steps=300", "--config.sft.batch_size=32",
         "--config.rl.multiturn.demonstration_fraction=0.5",
         f"--config.rl.num_steps={RL_STEPS}", "--config.rl.num_prompts=8",
         "--config.eval.num_prompts=0", "--config.checkpoint.every=0"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert len(records) == RL_STEPS
  rewards = [r["reward"] for r in records]
  calls = [r["multiturn/tool_calls_mean"] for r in records]
  first, last = np.mean(rewards[:WINDOW]), np.mean(rewards[-WINDOW:])
  assert first < 0.8, rewards  # the warm-up does not already call the tool every time
  assert last >= first + 0.1, (first, last, rewards)
  assert np.mean(calls[-WINDOW:]) > np.mean(calls[:WINDOW]), calls
