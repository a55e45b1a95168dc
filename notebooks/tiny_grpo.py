"""Source of notebooks/tiny_grpo.ipynb (build with `python notebooks/build.py`)."""

# %% [markdown]
# # Tiny GRPO on a CPU
#
# The CPU demo of `experiments/configs/demo.py`, run from a notebook: a ~0.1M-parameter
# Llama-style model with a character tokenizer learns 2-digit addition, first by a short
# supervised warm-up, then by GRPO against an exact-integer verifier. Nothing is downloaded.
#
# The notebook calls the same `rlvr_jax.train.loop.train` as
# `python -m experiments.train --workdir=...`: it runs in a background thread while this
# notebook redraws the reward and held-out accuracy from the run's `metrics.jsonl`. Then we look
# at completions before and after RL, change one knob and rerun.
#
# **Scale.** The warm-up always runs to its target (the policy solves 40% of a probe of training
# prompts, about a minute on a 2-core CPU). By default GRPO then runs a *shortened* 120 of the
# demo's 800 steps with a smaller held-out evaluation, so that the notebook executes in CI in a
# few minutes: enough for the training reward to rise visibly, not for the demo's full held-out
# gain. Set `SCALE = 1.0` to run the demo config as it is (about five minutes); its settings live
# in `experiments/configs/demo.py`.

# %%
import os
import pathlib
import sys
import tempfile
import threading
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
from IPython import display

# experiments/ (the config files) lives at the repository root, next to notebooks/.
ROOT = pathlib.Path.cwd().parent if pathlib.Path.cwd().name == "notebooks" else pathlib.Path.cwd()
sys.path.insert(0, str(ROOT))
from experiments.configs import demo  # pylint: disable=g-import-not-at-top

from rlvr_jax.data import task as task_lib
from rlvr_jax.models import transformer
from rlvr_jax.train import builders
from rlvr_jax.train import checkpoint
from rlvr_jax.train import loop
from rlvr_jax.train import metrics_writer
from rlvr_jax.train import plot
from rlvr_jax.train import rewards_host

SCALE = 0.15  # 1.0 = the full CPU demo; the default is a shortened RL phase for CI.
WORKDIR = tempfile.mkdtemp(prefix="tiny_grpo_")
# Compiled programs go to an on-disk cache, so the rerun below (and reruns of this notebook)
# skip XLA compilation of everything the changed knob does not touch.
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(tempfile.gettempdir(), "rlvr_jax_notebook_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def demo_config(scale: float, objective: str = "grpo"):
  """The demo config with preset ``objective``; below scale 1, fewer RL steps and a smaller
  held-out evaluation."""
  config = demo.get_config(objective)
  if scale < 1:
    config.rl.num_steps = max(6, int(config.rl.num_steps * scale))
    # Evaluate in batches of the rollout's shape, so evaluation reuses its compiled sampler.
    config.eval.num_prompts = 2 * config.rl.num_prompts
    config.eval.batch_size = config.rl.num_prompts
    config.eval.num_samples = config.rl.num_samples
    config.eval.greedy = False
  config.eval.every = max(2, config.rl.num_steps // 3)
  config.checkpoint.every = config.rl.num_steps  # one checkpoint, at the end
  config.log_every = 1
  return config


config = demo_config(SCALE)
print(f"SFT steps {config.sft.num_steps}, GRPO steps {config.rl.num_steps}, "
      f"{config.rl.num_prompts} prompts x {config.rl.num_samples} samples per step, "
      f"objective {config.rl.objective.name!r}, held-out prompts {config.eval.num_prompts}")
print("objective hyperparameters:", config.rl.objective.to_dict())
print("one training example:", next(builders.build_task(config).examples("train", 0)))

# %% [markdown]
# ## Train, with a live plot
#
# `run_live` starts `loop.train(config, workdir)` in a thread and redraws every couple of
# seconds from `metrics.jsonl` (the same records `python -m rlvr_jax.train.plot <workdir>`
# draws): the training reward (the fraction of sampled completions the verifier accepts), the
# held-out pass@1 of the periodic evaluations, and the completion length. The first GRPO step
# includes compilation.

# %%
PANELS = {"training reward (fraction correct)": "reward",
          "held-out pass@1": "eval/pass@1",
          "mean completion length": "completions/mean_length"}


def draw(runs, status=""):
  """One panel per metric of PANELS, one line per run of {label: workdir}."""
  fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 3.6))
  for label, workdir in runs.items():
    path = os.path.join(workdir, metrics_writer.METRICS_FILE)
    records = metrics_writer.read_metrics(workdir) if os.path.exists(path) else []
    for ax, (title, key) in zip(axes, PANELS.items()):
      steps, values = plot.series(records, key)
      ax.plot(steps, values, marker="o", ms=3, label=label)
      ax.set(title=title, xlabel="GRPO step")
  axes[0].legend(fontsize="small")
  axes[-1].annotate(status, (1.0, 1.12), xycoords="axes fraction", ha="right")
  fig.tight_layout()
  plt.show()


def run_live(config, workdir, runs, refresh_s=2.0):
  """Runs loop.train in a thread, redrawing `runs` when new metrics arrive; returns its summary."""
  result = {}

  def target():
    try:
      result["summary"] = loop.train(config, workdir)
    except BaseException as e:  # re-raised below, in the notebook's thread
      result["error"] = e

  thread = threading.Thread(target=target, daemon=True)
  start = time.time()
  thread.start()
  path, seen = os.path.join(workdir, metrics_writer.METRICS_FILE), -1
  while thread.is_alive():
    thread.join(refresh_s)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if size != seen:  # redraw only for new records: drawing costs CPU the run could use
      seen = size
      display.clear_output(wait=True)
      draw(runs, f"running... {time.time() - start:.0f}s")
  display.clear_output(wait=True)
  draw(runs, f"done in {time.time() - start:.0f}s")
  if "error" in result:
    raise result["error"]
  print(loop.format_summary(result["summary"]))
  return result["summary"]


runs = {config.rl.objective.name: WORKDIR}
summary = run_live(config, WORKDIR, runs)

# %% [markdown]
# ## Completions before and after RL
#
# The run wrote the policy as it was after the warm-up, i.e. *before RL*, to
# `warmup_params.msgpack` in its workdir, and the policy after RL to its last checkpoint. We load
# both and sample the same held-out prompts with the loop's own `TextSampler` (same shapes and
# temperature as training, so nothing is recompiled), scored by the task's verifier.

# %%
tokenizer = builders.build_tokenizer(config)
model_config = builders.build_model_config(config, tokenizer)
abstract = jax.eval_shape(lambda k: transformer.init_params(model_config, k), jax.random.key(0))
WARMUP = os.path.join(WORKDIR, builders.WARMUP_PARAMS_FILE)
policies = {
    "before RL": checkpoint.load_params(WARMUP, abstract),
    "after RL": checkpoint.restore_partial(os.path.join(WORKDIR, "checkpoints"),
                                           {"params": abstract})["params"],
}
sampler = builders.build_sampler(config, model_config, tokenizer)
examples = task_lib.distinct_examples(builders.build_task(config), "test", config.rl.num_prompts,
                                      seed=123)
G = config.rl.num_samples
texts, solved = {}, {}
with rewards_host.RewardScorer(num_workers=0) as scorer:
  for name, params in policies.items():
    _, texts[name] = sampler.sample(params, examples, jax.random.key(1), num_samples=G)
    scores = scorer(texts[name], [e for e in examples for _ in range(G)]).rewards
    solved[name] = scores.reshape(len(examples), G).mean(axis=1)
    print(f"{name}: {solved[name].mean():.3f} of {len(examples)} x {G} samples correct")
print(f"\n{'prompt':<8} {'gold':>5}  {'before RL: 3 samples, solve rate':<36} after RL")
for i, example in enumerate(examples[:8]):
  row = [f"{texts[n][i * G:i * G + 3]!s:<26} {solved[n][i]:.2f}" for n in ("before RL", "after RL")]
  print(f"{example.prompt!s:<8} {example.answer:>5}  {row[0]:<36} {row[1]}")

# %% [markdown]
# ## Change one knob and rerun
#
# Same seed, same data and the *same warm-up*: `sft.init_from` starts the second run from the
# first run's `warmup_params.msgpack`, so it skips the warm-up and only the knob differs. The
# knob here is the objective: `demo_config(SCALE, "dr_grpo")` builds `rl.objective` from any
# preset of `rlvr_jax.objectives.presets`, with each of its hyperparameters a field of its own
# (e.g. `config_b.rl.objective.epsilon_high = 0.28`); other knobs worth a try are
# `rl.num_samples` (the group size G), `rl.temperature` and `optimizer.learning_rate`. Both runs
# are drawn together.

# %%
KNOB, VALUE = "objective", "dr_grpo"

config_b = demo_config(SCALE, VALUE)
config_b.sft.init_from = WARMUP
workdir_b = tempfile.mkdtemp(prefix="tiny_grpo_b_")
runs[f"{KNOB}={VALUE}"] = workdir_b
summary_b = run_live(config_b, workdir_b, runs)
for key in sorted(k for k in summary if k.startswith("after/")):
  print(f"{key}: {config.rl.objective.name} {summary[key]:.3f}   {KNOB}={VALUE} "
        f"{summary_b[key]:.3f}")
