"""The binaries from any directory, and experiments/export.py on the tiny config.

A run of ``python -m experiments.train`` with a relative ``--config`` path from a temporary
working directory (resolved against the installed ``experiments`` package), then
``python -m experiments.export`` of its checkpoint, also from there: the HF directory holds the
checkpoint's params exactly and transformers loads it. A LoRA run exports the merged weights and
the peft adapters.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import export as export_lib
from experiments import paths
from rlvr_jax.models import hf
from rlvr_jax.models import lora
from rlvr_jax.models import peft_io
from rlvr_jax.train import checkpoint as checkpoint_lib

_SHORT = ["--config.rl.num_steps=1", "--config.sft.num_steps=2", "--config.eval.num_prompts=0",
          "--config.checkpoint.every=1"]


def _run(args, cwd):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def _restored(workdir, like):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), like)
  return checkpoint_lib.restore_partial(os.path.join(workdir, "checkpoints"),
                                        {"params": abstract})["params"]


def test_config_paths_resolve_against_the_package(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  tiny = paths.resolve_config_path("experiments/configs/tiny.py")
  assert os.path.isabs(tiny) and os.path.exists(tiny)
  assert paths.resolve_config_path("experiments/configs/base.py:dapo").endswith("base.py:dapo")
  assert paths.resolve_argv(["x", "--config", "experiments/configs/tiny.py",
                             "--config.rl.num_steps=1"]) == ["x", "--config", tiny,
                                                              "--config.rl.num_steps=1"]
  (tmp_path / "mine.py").write_text("")
  assert paths.resolve_config_path("mine.py") == "mine.py"  # the current directory's comes first
  assert paths.resolve_config_path("missing.py") == "missing.py"  # absl reports it


def test_train_and_export_from_another_directory(tmp_path):
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
  _run(["experiments.train", "--config=experiments/configs/tiny.py", f"--workdir={workdir}",
        *_SHORT], cwd)
  assert _run(["experiments.export", f"--workdir={workdir}", f"--out_dir={out}"],
              cwd).strip().endswith(out)
  cfg, params = hf.load_hf(out)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(_restored(workdir, params))):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  tokenizer = hf.load_tokenizer(out)
  assert tokenizer.decode(tokenizer("1+2=")["input_ids"], skip_special_tokens=True) == "1+2="
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("torch")
  model = transformers.AutoModelForCausalLM.from_pretrained(out)
  assert model.config.num_hidden_layers == cfg.num_layers


def test_lora_run_exports_merged_weights_and_adapters(tmp_path):
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.rl.num_steps = 1  # after the tiny config's warm-up
  config.eval.num_prompts, config.checkpoint.every = 0, 1
  config.lora.rank, config.lora.targets = 2, "q,v"
  workdir, out = str(tmp_path / "run"), str(tmp_path / "hf")
  loop.train(config, workdir)
  # One tiny RL step leaves B at 0 (no reward signal yet): save the adapters with a random B as a
  # later checkpoint, so that the merge shows in the exported weights.
  export_lib.export(workdir, out)
  cfg, _ = hf.load_hf(out)
  first, _ = peft_io.import_peft(os.path.join(out, "adapter"), cfg)
  rng = np.random.default_rng(0)
  moved = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 * rng.standard_normal(x.shape).astype(x.dtype)
      if jax.tree_util.keystr(path).endswith(f"['{lora.B}']") else x, first)
  with checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints")) as ckpt:
    ckpt.save(2, {"params": moved}, force=True)
  export_lib.export(workdir, out)

  cfg, merged = hf.load_hf(out)
  base = checkpoint_lib.load_params(os.path.join(workdir, "warmup_params.msgpack"), merged)
  adapters, lora_config = peft_io.import_peft(os.path.join(out, "adapter"), cfg)
  assert (lora_config.rank, tuple(lora_config.targets)) == (2, ("q", "v"))
  restored = _restored(workdir, adapters)
  for got, want in zip(jax.tree.leaves(adapters), jax.tree.leaves(restored)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-7)
  expected = lora.merge(base, restored, lora_config)
  for got, want in zip(jax.tree.leaves(merged), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)
  # The merge shows: the exported q kernel is not the base's.
  assert not np.array_equal(np.asarray(merged["layers"]["attn"]["q_proj"]["kernel"]),
                            np.asarray(base["layers"]["attn"]["q_proj"]["kernel"]))
  with open(os.path.join(out, "adapter", "adapter_config.json")) as f:
    assert json.load(f)["r"] == 2
