"""Smoke tests of experiments/train.py and the Qwen2.5 GSM8K recipes on a tiny random HF model.

The model directory is built here with transformers + torch ``save_pretrained`` (a 2-layer Qwen2
with the in-code character tokenizer and a chat template), and the data is a tiny GSM8K-layout
JSONL file, so nothing is downloaded.
"""

import importlib
import json
import os
import subprocess
import sys

import pytest

from rlvr_jax.data import char_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  torch = pytest.importorskip("torch")
  import transformers
  path = str(tmp_path_factory.mktemp("tiny_qwen2"))
  tokenizer = char_tokenizer.build()
  config = transformers.Qwen2Config(
      vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
      tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
  torch.manual_seed(0)
  transformers.Qwen2ForCausalLM(config).save_pretrained(path)
  tokenizer.save_pretrained(path)
  return path


@pytest.fixture(scope="module")
def gsm8k_files(tmp_path_factory):
  path = tmp_path_factory.mktemp("gsm8k")
  files = {}
  for split, offset in (("train", 0), ("test", 50)):
    files[split] = str(path / f"{split}.jsonl")
    with open(files[split], "w") as f:
      for i in range(offset, offset + 8):
        f.write(json.dumps({"question": f"{i}+{i}=?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"})
                + "\n")
  return files


def _overrides(hf_dir, files):
  return [
      f"--config.model.hf_dir={hf_dir}", "--config.model.dtype=float32",
      f"--config.task.files.train={files['train']}", f"--config.task.files.test={files['test']}",
      "--config.rl.num_steps=2", "--config.rl.num_prompts=4", "--config.rl.num_samples=2",
      "--config.rl.max_new_tokens=8", "--config.rl.num_micro_batches=2",
      "--config.rl.chunk_size=4", "--config.data.prompt_buckets=(192,)",
      "--config.eval.num_prompts=2", "--config.eval.num_samples=2", "--config.eval.batch_size=2",
      "--config.eval.every=0", "--config.reward.num_workers=1", "--config.checkpoint.every=1",
  ]


@pytest.mark.parametrize("recipe,extra", [
    ("qwen2_5_gsm8k_grpo", []),
    # One objective hyperparameter from the command line changes that value and nothing else.
    ("qwen2_5_gsm8k_dapo", ["--config.rl.num_mini_batches=2",
                            "--config.rl.objective.epsilon_high=0.3"]),
    ("qwen2_5_gsm8k_grpo_lora", ["--config.lora.rank=2", "--config.model.param_dtype=float32"]),
])
def test_recipe_runs_end_to_end(tmp_path, hf_dir, gsm8k_files, recipe, extra):
  workdir = tmp_path / "run"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu")
  cmd = [sys.executable, "-m", "experiments.train",
         f"--config=experiments/configs/{recipe}.py", f"--workdir={workdir}",
         *_overrides(hf_dir, gsm8k_files), *extra]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "held-out pass@1" in proc.stdout
  config = json.load(open(workdir / "config.json"))
  assert config["rl"]["num_steps"] == 2
  # config.json holds every resolved hyperparameter of the objective.
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  recipe_objective = importlib.import_module(f"experiments.configs.{recipe}").get_config(
      ).rl.objective.to_dict()
  assert set(config["rl"]["objective"]) == {"name", *presets.defaults(recipe_objective["name"])}
  if recipe.endswith("lora"):
    assert os.path.exists(workdir / "lora_base.json")
  if recipe.endswith("dapo"):
    assert recipe_objective["epsilon_high"] == 0.28 and recipe_objective["max_length"] == 512
    assert config["rl"]["objective"] == dict(recipe_objective, epsilon_high=0.3)
  else:
    assert config["rl"]["objective"] == recipe_objective
  assert config["model"]["hf_dir"] == hf_dir
  records = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in records] == [1, 2]
  for key in ("reward", "reward_std", "frac_reward_zero_std", "loss", "grad_norm",
              "learning_rate", "completions/mean_length", "completions/clipped_ratio",
              "entropy", "time/rollout", "time/reward", "time/update"):
    assert key in records[-1], key
  if "grpo" in recipe:
    assert "kl" in " ".join(records[-1])
  else:
    assert records[-1]["dynamic_sampling/rounds"] >= 1
  assert os.path.isdir(workdir / "checkpoints" / "2")
  assert os.path.exists(workdir / "summary.json")
  assert os.path.exists(workdir / "curves.png")  # The binary draws its curves at the end.
