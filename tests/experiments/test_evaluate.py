"""experiments/evaluate.py: a checkpoint and its HF export evaluate identically; the CLI runs."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny demo config and a checkpoint of random params in a train-like workdir."""
  sys.path.insert(0, REPO)
  from experiments import evaluate  # pylint: disable=g-import-not-at-top
  from experiments.configs import demo  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import checkpoint  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import builders  # pylint: disable=g-import-not-at-top

  config = demo.get_config()
  config.eval.num_prompts = 4
  tokenizer = builders.build_tokenizer(config)
  built = {}

  def init(key):
    built["config"], params = builders.build_model(config, tokenizer, key)
    return params

  shapes = jax.eval_shape(init, jax.random.key(0))
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(scale=0.5, size=s.shape).astype(np.float32), s.dtype),
      shapes)
  workdir = str(tmp_path_factory.mktemp("run"))
  with checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False) as ckpt:
    ckpt.save(7, {"params": params, "step": jnp.asarray(7)}, {"data_position": 3})
  yield evaluate, config, workdir, params, built["config"], tokenizer
  sys.path.remove(REPO)


def test_load_policy_restores_checkpoint_params(setup):
  evaluate, config, workdir, params, model_config, _ = setup
  got_config, got_params, _ = evaluate.load_policy(config, checkpoint=workdir)
  assert got_config == model_config
  for x, y in zip(jax.tree.leaves(got_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_and_hf_export_agree(setup, tmp_path):
  evaluate, config, workdir, params, model_config, tokenizer = setup
  from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
  hf_dir = str(tmp_path / "hf")
  hf.export_hf(params, model_config, hf_dir)
  tokenizer.save_pretrained(hf_dir)
  common = dict(ks=(1, 2), num_samples=2, temperature=0.0, max_new_tokens=4, batch_size=4)
  from rlvr_jax.rollout import generate  # pylint: disable=g-import-not-at-top
  from_ckpt = evaluate.run(config, checkpoint=workdir, **common)
  traces = generate.num_traces()
  from_hf = evaluate.run(config, hf_dir=hf_dir, out_dir=str(tmp_path / "out"), **common)
  assert generate.num_traces() == traces  # same model shape from HF: no recompilation
  for key in ("pass@1", "pass@2", "maj@1", "maj@2", "mean@2", "num_problems"):
    assert key in from_ckpt["metrics"]
    assert 0.0 <= from_ckpt["metrics"][key] <= (4 if key == "num_problems" else 1)
  assert from_ckpt["metrics"]["num_problems"] == 4
  # Greedy decoding of the same weights: identical completions, hence identical results.
  samples = [json.loads(l) for l in open(os.path.join(workdir, "eval_test", "eval_samples.jsonl"))]
  hf_samples = [json.loads(l) for l in open(tmp_path / "out" / "eval_samples.jsonl")]
  assert [s["completions"] for s in samples] == [s["completions"] for s in hf_samples]
  # The demo's prompts are text with a BOS token: the rendered prompt shows it.
  assert samples[0]["rendered_prompt"] == tokenizer.bos_token + samples[0]["prompt"]
  assert from_ckpt["metrics"] == from_hf["metrics"]
  saved = json.load(open(os.path.join(workdir, "eval_test", "eval_metrics.json")))
  assert saved["settings"]["checkpoint"] == workdir and saved["metrics"] == from_ckpt["metrics"]


def test_command_line(setup, tmp_path):
  _, _, workdir, _, _, _ = setup
  out = str(tmp_path / "cli")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.evaluate", f"--checkpoint={workdir}", "--k=1,2",
       "--num_prompts=2", "--max_new_tokens=3", "--batch_size=2", f"--out_dir={out}",
       "--config.eval.seed=5"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert metrics["num_problems"] == 2 and "pass@2" in metrics and "maj@2" in metrics
  assert os.path.exists(os.path.join(out, "eval_metrics.json"))
