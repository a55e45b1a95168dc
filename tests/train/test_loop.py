"""Tests of the RL loop: exact resumption after SIGKILL, the objective as recorded config data,
validation before any work.

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

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from rlvr_jax.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_STEPS = 8

# Wall-clock and throughput metrics differ between runs by nature.
_TIMING = ("time", "time/", "tokens/")


def _command(workdir, objective="grpo", num_steps=NUM_STEPS, sft_steps=40):
  """The training binary on experiments/configs/tiny.py, checkpointing every 2 steps."""
  return [sys.executable, "-m", "experiments.train", f"--workdir={workdir}",
          f"--config=experiments/configs/tiny.py:{objective}",
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


def test_kl_in_reward_objective_runs_in_the_loop(tmp_path):
  # RLOO puts a k1 KL penalty into the reward, reading old and reference log-probs in the
  # advantage stage: the loop must provide them there.
  loop.train(tiny.tiny_config("rloo"), str(tmp_path))
  records = _records(tmp_path)
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["loss"]) for r in records)


def test_config_json_records_every_resolved_objective_hyperparameter(tmp_path):
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  config = tiny.tiny_config("dapo", num_steps=1, sft_steps=0, epsilon_high=0.3)
  loop.train(config, str(tmp_path))
  written = json.load(open(tmp_path / "config.json"))["rl"]["objective"]
  assert written == dict(presets.defaults("dapo"), name="dapo", epsilon_high=0.3)


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.learning_rate", -1.0, "learning_rate"),
    ("optimizer.learning_rate", float("nan"), "learning_rate"),
    ("rl.num_steps", -1, "num_steps"),
    ("rl.temperature", 0.0, "temperature"),
    ("rl.max_new_tokens", 60, "positions"),
    ("rl.num_prompts", 3, "divide"),
])
def test_out_of_range_config_fails_before_any_work(tmp_path, field, value, message):
  config = tiny.tiny_config(sft_steps=10_000)  # a warm-up that would take minutes
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    loop.train(config, str(tmp_path / "run"))  # raises before the warm-up, or it would hang
  assert not (tmp_path / "run").exists()  # nothing written


def test_non_finite_updates_are_skipped_and_stop_the_run_with_a_good_checkpoint(tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import guards  # pylint: disable=g-import-not-at-top

  def nan_loss(logprobs, batch, counts, entropy=None):
    del counts, entropy
    return jnp.sum(logprobs * batch.mask) * jnp.nan, {}

  presets.register("test_loop/nan_loss", lambda: dataclasses.replace(
      presets.get("grpo", kl_coef=0.0), name="test_loop/nan_loss", loss=nan_loss))
  config = tiny.tiny_config("test_loop/nan_loss", num_steps=4, sft_steps=0)
  config.rl.max_skipped_updates = 2
  config.checkpoint.every = 1
  with pytest.raises(guards.TooManySkippedUpdates, match="step 2"):
    loop.train(config, str(tmp_path))
  records = _records(tmp_path)
  assert [r["step"] for r in records] == [1]  # step 2 stopped before it was logged or saved
  assert records[0]["update/skipped"] == 1
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.all_steps() == [1]
  state, _ = ckpt.restore(1)
  leaves = [np.asarray(x) for x in jax.tree.leaves(state["params"])]
  assert leaves and all(np.isfinite(x).all() for x in leaves)
  assert int(state["step"]) == 0  # the skipped update did not count


def test_lora_run_trains_adapters_on_a_frozen_base_that_is_its_reference(tmp_path):
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  config = tiny.tiny_config("grpo", num_steps=3, sft_steps=10, kl_coef=0.04)
  config.lora.rank = 2
  config.optimizer.learning_rate = 1e-2
  config.optimizer.warmup_steps = 0
  config.checkpoint.every = 1
  loop.train(config, str(tmp_path))
  records = _records(tmp_path)
  # The reference is the base (adapters off, B = 0 at the start): no KL at the first update,
  # some once the adapters moved.
  assert records[0]["kl"] == 0 and records[2]["kl"] > 0
  # Checkpoints hold the adapters only (and their optimizer state), no base, no reference copy.
  raw, _ = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints")).restore(3)
  names = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(raw["params"])}
  assert names and all(n.endswith(("['lora_a']", "['lora_b']")) for n in names), names
  assert raw.get("ref_params") is None and raw.get("frozen") is None
  assert any(np.abs(np.asarray(x)).max() > 0 for p, x in
             jax.tree_util.tree_leaves_with_path(raw["params"]) if "lora_b" in str(p))
  # Resume continues on the same base; a run that would build another base is refused.
  config.rl.num_steps = 4
  loop.train(config, str(tmp_path))
  assert [r["step"] for r in _records(tmp_path)] == [1, 2, 3, 4]
  before = (tmp_path / "config.json").read_text()
  import flax.serialization  # pylint: disable=g-import-not-at-top
  warm = flax.serialization.msgpack_restore((tmp_path / "warmup_params.msgpack").read_bytes())
  moved = str(tmp_path / "other_base.msgpack")
  checkpoint_lib.save_params(moved, jax.tree.map(lambda x: np.asarray(x) + 1e-3, warm))
  other = tiny.tiny_config("grpo", num_steps=5, sft_steps=10, kl_coef=0.04)
  other.lora.rank, other.checkpoint.every, other.sft.init_from = 2, 1, moved
  with pytest.raises(ValueError, match="another base"):
    loop.train(other, str(tmp_path))
  assert (tmp_path / "config.json").read_text() == before  # the rejected resume wrote nothing
