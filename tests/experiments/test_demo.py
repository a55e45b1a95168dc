"""A shortened CPU demo: the default config's warm-up, then GRPO steps.

Same task, model, tokenizer, SFT warm-up and RL settings as ``python -m experiments.train`` with
the default config, except that the RL batch is cut to 16 prompts, the RL steps to 30 and the
held-out evaluation is skipped (CI time).

What is asserted is what observed runs support (docs/training.md): the warm-up leaves the policy
right part of the time, and GRPO does not collapse it. In the observed runs the RL reward did
*not* rise measurably (16 prompts: mean of steps 1-10 0.523, steps 21-30 0.516, per-step range
0.33-0.69; 64 prompts: 0.520, 0.513 and 0.535 for steps 1-10, 31-40, 91-100), so no rise is
asserted: the default demo does not meet its +20-point goal. The ``:tuned`` config variant (which
does on seed 0, in 800 RL steps) is checked here only for how it is built; its runs are too long
for CI.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RL_STEPS = 30
WINDOW = 10
# Observed: 10-step window means within 0.01 of each other.
MAX_DROP = 0.1


def test_short_demo_runs_and_keeps_the_warm_up_reward(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "experiments.train", f"--workdir={tmp_path}",
         f"--config.rl.num_steps={RL_STEPS}", "--config.rl.num_prompts=16",
         "--config.eval.num_prompts=0",
         "--config.checkpoint.every=0"]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  rewards = [json.loads(line)["reward"] for line in open(tmp_path / "metrics.jsonl")]
  assert len(rewards) == RL_STEPS
  first, last = np.mean(rewards[:WINDOW]), np.mean(rewards[-WINDOW:])
  assert 0.3 < first < 0.8, rewards          # the warm-up solves the task some of the time
  assert last >= first - MAX_DROP, (first, last, rewards)


def test_tuned_variant_builds_a_kl_free_grpo_with_whole_mini_batches():
  from experiments.configs import default  # pylint: disable=g-import-not-at-top
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  base, tuned = default.get_config(), default.get_config("tuned")
  objective = presets.get(tuned.rl.objective, **dict(tuned.rl.objective_overrides))
  assert not objective.needs_reference  # β = 0: no reference model is built
  assert tuned.rl.num_prompts % tuned.rl.num_mini_batches == 0
  # Only the RL settings differ; the warm-up, task and model are the default demo's.
  assert tuned.sft.to_dict() == base.sft.to_dict()
  assert tuned.task.to_dict() == base.task.to_dict()
  assert tuned.model.to_dict() == base.model.to_dict()


def test_unknown_config_variant_is_rejected():
  from experiments.configs import default  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="variant"):
    default.get_config("fast")
