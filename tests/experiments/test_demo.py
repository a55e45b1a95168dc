"""A shortened CPU demo: the default config's warm-up, then 150 of its 800 GRPO steps.

Same task, model, tokenizer, warm-up (to a probe pass@1 of 40%) and RL settings as
``python -m experiments.train`` with the default config; only the RL steps are cut to 120 and the
held-out evaluation is skipped (CI time). Asserted, from observed runs (docs/training.md): the
warm-up stops at its target, and GRPO raises the training reward (the fraction of sampled
completions the verifier accepts) from the first 20 steps to the last 20 of the 150.
"""

import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RL_STEPS = 150
WINDOW = 20
# Observed in full demo runs on the 2-core machine, mean reward of steps 1-20 -> 131-150: seed 0
# (the default, run here) 0.550 -> 0.689 (2026-12-06, jax 0.10.2; 0.460 -> 0.546 with an earlier
# environment), seed 1 0.539 -> 0.764. The threshold, under half the smaller seed-0 rise, leaves
# room for another CPU's float rounding.
MIN_RISE = 0.04


def test_short_demo_warms_up_to_its_target_and_grpo_raises_the_reward(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path}",
         f"--config.rl.num_steps={RL_STEPS}", "--config.eval.num_prompts=0",
         "--config.checkpoint.every=0"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.load(open(tmp_path / "summary.json"))
  assert summary["before/sft_steps"] < 3000, summary  # stopped at the probe target
  assert os.path.exists(tmp_path / "warmup_params.msgpack")
  rewards = [json.loads(line)["reward"] for line in open(tmp_path / "metrics.jsonl")]
  assert len(rewards) == RL_STEPS
  first, last = np.mean(rewards[:WINDOW]), np.mean(rewards[-WINDOW:])
  assert 0.25 < first < 0.7, rewards  # the warm-up solves the task some of the time
  assert last >= first + MIN_RISE, (first, last, rewards)
