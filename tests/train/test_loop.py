"""Tests of the RL loop: exact resumption after SIGKILL, and loop helpers.

The runs go through ``python -m experiments.train`` in subprocesses on one CPU device, with a tiny
task (operands 0..3) where a 40-step supervised warm-up already gives rewards with variance, so the
GRPO updates are not trivially zero.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rlvr_jax.data import procedural
from experiments.configs import tiny
from rlvr_jax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 8

# Wall-clock and throughput metrics differ between runs by nature.
_TIMING = ("time", "time/", "tokens/")


def _command(workdir, objective="grpo", num_steps=NUM_STEPS, sft_steps=40):
  """The training binary on experiments/configs/tiny.py, checkpointing every 2 steps."""
  return [sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
          "--config=experiments/configs/tiny.py", f"--config.rl.objective={objective}",
          f"--config.rl.num_steps={num_steps}", f"--config.sft.num_steps={sft_steps}",
          "--config.checkpoint.every=2"]


def _env():
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
              JAX_PLATFORMS="cpu")


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def _comparable(record):
  return {k: v for k, v in record.items() if not k.startswith(_TIMING)}


def test_sigkilled_run_resumes_with_the_same_metric_trajectory(tmp_path):
  reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
  subprocess.run(_command(reference_dir), cwd=REPO, env=_env(), check=True,
                 timeout=600, capture_output=True)

  proc = subprocess.Popen(_command(killed_dir), cwd=REPO, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  metrics_path = killed_dir / "metrics.jsonl"
  deadline = time.time() + 600
  checkpoint = killed_dir / "checkpoints" / "2"
  # Kill once the step-2 checkpoint is committed (orbax renames it into place when complete).
  while time.time() < deadline and not checkpoint.is_dir():
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps_before_kill = len(_records(killed_dir))
  assert proc.returncode == -signal.SIGKILL
  assert 2 <= steps_before_kill < NUM_STEPS, "the run finished before it could be killed"

  resumed = subprocess.run(_command(killed_dir), cwd=REPO, env=_env(), timeout=600,
                           capture_output=True, text=True)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from step" in resumed.stdout

  reference, again = _records(reference_dir), _records(killed_dir)
  assert [r["step"] for r in again] == list(range(1, NUM_STEPS + 1))
  assert [r["step"] for r in reference] == list(range(1, NUM_STEPS + 1))
  assert np.std([r["reward"] for r in reference]) > 0 or reference[0]["reward_std"] > 0
  for ref, res in zip(reference, again):
    ref, res = _comparable(ref), _comparable(res)
    assert ref.keys() == res.keys()
    for key in ref:
      np.testing.assert_allclose(res[key], ref[key], rtol=1e-6, atol=1e-7,
                                 err_msg=f"step {ref['step']} {key}")
  summary_ref = json.load(open(reference_dir / "summary.json"))
  summary_res = json.load(open(killed_dir / "summary.json"))
  assert summary_ref["steps"] == summary_res["steps"] == NUM_STEPS


def test_stream_is_positioned_and_cycles_finite_sources():
  task = procedural.Arithmetic(max_value=9)
  full = [e.prompt for e in procedural.take(task, "train", 20, seed=5)]
  resumed = loop._stream(task, 5, 7)
  assert [next(resumed).prompt for _ in range(13)] == full[7:]

  class Finite:
    name = "finite"

    def examples(self, split, seed=0):
      rng = np.random.default_rng(seed)
      return iter([f"{split}{i}" for i in rng.permutation(3)])

  stream = list(loop._stream(Finite(), 0, 0).__next__() for _ in range(1))
  epochs = [x for _, x in zip(range(9), loop._stream(Finite(), 0, 0))]
  assert sorted(epochs[:3]) == sorted(epochs[3:6]) == ["train0", "train1", "train2"]
  assert stream[0] == epochs[0]
  assert [x for _, x in zip(range(5), loop._stream(Finite(), 0, 4))] == epochs[4:9]


def test_fill_groups_pads_with_masked_groups():
  kept = {"mask": np.ones((1, 2, 3)), "raw_rewards": np.array([[1.0, 0.0]])}
  filler = {"mask": np.ones((2, 2, 3)), "raw_rewards": np.ones((2, 2))}
  out = loop._fill_groups(kept, filler, 3)
  assert out["mask"].shape == (3, 2, 3)
  np.testing.assert_array_equal(out["mask"][1:], 0.0)
  np.testing.assert_array_equal(out["raw_rewards"], [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
  assert filler["mask"].sum() == 12  # the filler itself is not modified


def test_mean_over_updates_keeps_extrema():
  out = loop._mean_over_updates([{"loss": 1.0, "ratio/max": 2.0, "ratio/min": 0.5},
                                 {"loss": 3.0, "ratio/max": 1.5, "ratio/min": 0.1}])
  assert out == {"loss": 2.0, "ratio/max": 2.0, "ratio/min": 0.1}


def test_heldout_examples_are_distinct_and_never_in_training():
  task = procedural.Arithmetic(max_value=20)
  heldout = loop.heldout_examples(task, 30, seed=0)
  assert len({e.prompt for e in heldout}) == 30
  train = {e.prompt for e in procedural.take(task, "train", 2000, seed=0)}
  assert not train & {e.prompt for e in heldout}


def test_kl_in_reward_objective_runs_in_the_loop(tmp_path):
  # RLOO puts a k1 KL penalty into the reward, reading old and reference log-probs in the
  # advantage stage: the loop must provide them there.
  loop.train(tiny.tiny_config("rloo"), str(tmp_path))
  records = _records(tmp_path)
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["loss"]) for r in records)
