r"""Evaluates a policy on a task split: pass@k, maj@k and mean@n.

  # A checkpoint written by experiments/train.py (the run's config describes model and task):
  python -m experiments.evaluate --config=experiments/configs/default.py \
      --checkpoint=/tmp/demo --k=1,4 --num_samples=8
  # A Hugging Face model directory (model + tokenizer) on the config's task:
  python -m experiments.evaluate --config=experiments/configs/qwen2_5_gsm8k_grpo.py \
      --hf_dir=/models/Qwen2.5-0.5B-Instruct --k=1 --temperature=0

The policy is, in order: ``--hf_dir`` (weights and tokenizer of that directory), else the params
of ``--checkpoint`` (a train workdir or its ``checkpoints/`` folder; model shape and tokenizer
from the config), else the config's initial policy (``config.model``). Problems are the first
``--num_prompts`` distinct prompts of ``--split`` drawn with ``config.eval.seed``. Metrics are
printed as JSON and, with ``--out_dir`` (default ``<checkpoint workdir>/eval_<split>`` for a
checkpoint), written to ``eval_metrics.json`` and ``eval_samples.jsonl``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

def _define_flags() -> None:
  """Defines the command-line flags; called only when run as a program, so that importing this
  module (tests, notebooks) never clashes with other binaries' flags such as ``--config``."""
  config_flags.DEFINE_config_file(
      "config", "experiments/configs/default.py", "Experiment config file (model, task, data).")
  flags.DEFINE_string("hf_dir", None, "Evaluate this HF model directory.")
  flags.DEFINE_string("checkpoint", None,
                      "Evaluate the params of this train workdir / checkpoints dir.")
  flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  flags.DEFINE_string("split", "test", "Task split.")
  flags.DEFINE_integer("num_prompts", None, "Problems (default config.eval.num_prompts).")
  flags.DEFINE_list("k", ["1"], "k values of pass@k and maj@k.")
  flags.DEFINE_integer("num_samples", None, "Samples per problem (default max k).")
  flags.DEFINE_float("temperature", None, "Sampling temperature (default config.rl; 0 = greedy).")
  flags.DEFINE_float("top_p", None, "Nucleus sampling threshold.")
  flags.DEFINE_integer("max_new_tokens", None, "Default config.rl.max_new_tokens.")
  flags.DEFINE_integer("batch_size", None, "Prompts per generate call (default config.eval).")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_string("out_dir", None, "Where to write the results files.")


def _distinct_examples(source, split: str, num: int, seed: int) -> List[Any]:
  """The first ``num`` examples of ``split`` with distinct prompts."""
  seen, out = set(), []
  for example in source.examples(split, seed):
    key = json.dumps(example.prompt, sort_keys=True)
    if key not in seen:
      seen.add(key)
      out.append(example)
    if len(out) == num:
      break
  return out


def _checkpoint_dir(path: str) -> str:
  nested = os.path.join(path, "checkpoints")
  return nested if os.path.isdir(nested) else path


def load_policy(config, *, hf_dir: Optional[str] = None, checkpoint: Optional[str] = None,
                step: Optional[int] = None):
  """``(model_config, params, tokenizer)`` of the policy to evaluate (see the module doc)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top
  if hf_dir:
    from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
    model_config, params = hf.load_hf(hf_dir)
    return model_config, params, hf.load_tokenizer(hf_dir)
  tokenizer = loop.build_tokenizer(config)
  key = jax.random.key(config.seed)
  if not checkpoint:
    model_config, params = loop.build_model(config, tokenizer, key)
    return model_config, params, tokenizer
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  built = {}

  def init(k):
    built["config"], params_ = loop.build_model(config, tokenizer, k)
    return params_

  # Shapes only: eval_shape traces the initialiser without running or compiling it.
  shapes = jax.eval_shape(init, key)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                          shapes)
  params = checkpoint_lib.restore_partial(_checkpoint_dir(checkpoint), {"params": abstract},
                                          step=step)["params"]
  return built["config"], params, tokenizer


def run(config, *, hf_dir: Optional[str] = None, checkpoint: Optional[str] = None,
        step: Optional[int] = None, split: str = "test", num_prompts: Optional[int] = None,
        ks: Sequence[int] = (1,), num_samples: Optional[int] = None,
        temperature: Optional[float] = None, top_p: Optional[float] = None,
        max_new_tokens: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
        out_dir: Optional[str] = None) -> Dict[str, Any]:
  """Evaluates and returns ``{"metrics": ..., "groups": ..., "settings": ...}`` (see module doc)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rlvr_jax.eval import driver  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top
  ks = tuple(int(k) for k in ks)
  num_samples = num_samples or max(ks)
  temperature = config.rl.temperature if temperature is None else temperature
  settings = dict(
      hf_dir=hf_dir, checkpoint=checkpoint, step=step, split=split,
      num_prompts=num_prompts or config.eval.num_prompts, ks=list(ks), num_samples=num_samples,
      temperature=temperature, top_p=top_p,
      max_new_tokens=max_new_tokens or config.rl.max_new_tokens,
      batch_size=batch_size or config.eval.batch_size, seed=seed)
  model_config, params, tokenizer = load_policy(config, hf_dir=hf_dir, checkpoint=checkpoint,
                                                step=step)
  examples = _distinct_examples(loop.build_task(config), split, settings["num_prompts"],
                                config.eval.seed)
  sample_fn = driver.make_sample_fn(
      params, model_config, tokenizer, max_new_tokens=settings["max_new_tokens"],
      prompt_buckets=tuple(config.data.prompt_buckets),
      add_bos=bool(config.data.get("add_bos", False)), temperature=temperature, top_p=top_p)
  result = driver.evaluate_examples(
      sample_fn, examples, jax.random.key(seed), num_samples=num_samples, ks=ks,
      batch_size=min(settings["batch_size"], len(examples)))
  if out_dir is None and checkpoint:
    out_dir = os.path.join(checkpoint, f"eval_{split}")
  if out_dir:
    driver.write_results(out_dir, result, extra={"settings": settings})
  return {"metrics": result.metrics, "groups": result.groups, "settings": settings}


def main(argv):
  """Runs :func:`run` with the command-line flags and prints the metrics as JSON."""
  del argv
  f = flags.FLAGS
  summary = run(
      f.config, hf_dir=f.hf_dir, checkpoint=f.checkpoint, step=f.step, split=f.split,
      num_prompts=f.num_prompts, ks=[int(k) for k in f.k], num_samples=f.num_samples,
      temperature=f.temperature, top_p=f.top_p, max_new_tokens=f.max_new_tokens,
      batch_size=f.batch_size, seed=f.seed, out_dir=f.out_dir)
  print(json.dumps(summary["metrics"], indent=2, sort_keys=True), flush=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
