"""The training binary as a 2-process run on localhost (``--multihost``, gloo CPU collectives).

Each process owns one CPU device and the (data=2) mesh spans both; every process runs the same
host pipeline (prompts, samples, rewards) and feeds its block of the batch rows to the update, and
process 0 alone writes metrics and the summary. Both must finish, and the run
must match the same config run as one process with two devices, step by step (the same rollouts,
rewards and updates, up to float rounding), with checkpoints saved by both processes together.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# No warm-up, and held-out evaluation in the rollout's shapes (8 prompts x 4 samples, no greedy
# pass) so that it compiles nothing extra: the test's time is mostly compilation, three times.
OVERRIDES = [
    "--config.sft.num_steps=0", "--config.rl.num_steps=3", "--config.rl.num_prompts=8",
    "--config.rl.num_samples=4", "--config.rl.num_mini_batches=2", "--config.eval.num_prompts=8",
    "--config.eval.batch_size=8", "--config.eval.num_samples=4", "--config.eval.greedy=False",
    "--config.checkpoint.every=2", "--config.log_every=1",
]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices):
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
              JAX_PLATFORMS="cpu")


def test_two_process_run_matches_one_process(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  if not hasattr(jax.config, "jax_cpu_collectives_implementation"):
    pytest.skip("this JAX has no multi-process CPU collectives")
  port = _free_port()
  multi = tmp_path / "multi"
  cmd = [sys.executable, "-m", "experiments.train", f"--workdir={multi}", "--multihost",
         f"--coordinator_address=localhost:{port}", "--num_processes=2"] + OVERRIDES
  procs = [subprocess.Popen(cmd + [f"--process_id={i}"], cwd=REPO, env=_env(1),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-4000:]
  single = tmp_path / "single"
  proc = subprocess.run([sys.executable, "-m", "experiments.train", f"--workdir={single}"]
                        + OVERRIDES, cwd=REPO, env=_env(2), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]

  def records(workdir):
    return [json.loads(line) for line in open(workdir / "metrics.jsonl")]

  got, want = records(multi), records(single)
  assert len(got) == len(want) == 3
  for g, w in zip(got, want):
    for key in ("reward", "completions/mean_length", "loss", "grad_norm"):
      np.testing.assert_allclose(g[key], w[key], rtol=1e-4, atol=1e-6, err_msg=key)
  summary_multi = json.load(open(multi / "summary.json"))
  summary_single = json.load(open(single / "summary.json"))
  for key in ("before/pass@1", "after/pass@1"):
    assert summary_multi[key] == pytest.approx(summary_single[key], abs=1e-6), key
  assert sorted(os.listdir(multi / "checkpoints")) == ["2", "3"]
