r"""Evaluates a policy on a task split: pass@k, maj@k and mean@n.

  # A checkpoint written by experiments/train.py (the run's config describes model and task):
  python -m experiments.evaluate --config=experiments/configs/demo.py \
      --checkpoint=/tmp/demo --k=1,4 --num_samples=8
  # A Hugging Face model directory (model + tokenizer) on the config's task:
  python -m experiments.evaluate --config=experiments/configs/qwen2_5_gsm8k_grpo.py \
      --hf_dir=/models/Qwen2.5-0.5B-Instruct --k=1 --temperature=0

The policy is, in order: ``--hf_dir`` (weights and tokenizer of that directory), else the params
of ``--checkpoint`` (a train workdir or its ``checkpoints/`` folder; model shape and tokenizer
from the config), else the config's initial policy (``config.model``); all in the config's
``model.dtype``/``param_dtype``, so a before/after comparison uses one precision. Completions are
scored by the trainer's scorer (worker processes with ``config.reward.timeout_s``, verifiers of
``config.reward.verifier_modules`` registered). Problems are the first
``--num_prompts`` distinct prompts of ``--split`` drawn with ``config.eval.seed``. Metrics are
printed as JSON and, with ``--out_dir`` (default ``<checkpoint workdir>/eval_<split>`` for a
checkpoint), written to ``eval_metrics.json`` (with the settings and the resolved config) and
``eval_samples.jsonl`` (each problem's ``prompt`` as stored and ``rendered_prompt``, the text the
model saw after its chat template, e.g. SmolLM2's automatic system prompt).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import paths

def _define_flags() -> None:
  """Defines the command-line flags; called only when run as a program, so that importing this
  module (tests, notebooks) never clashes with other binaries' flags such as ``--config``."""
  config_flags.DEFINE_config_file(
      "config", paths.config_file("demo.py"), "Experiment config file (model, task, data).")
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


def _checkpoint_dir(path: str) -> str:
  nested = os.path.join(path, "checkpoints")
  return nested if os.path.isdir(nested) else path


def load_policy(config, *, hf_dir: Optional[str] = None, checkpoint: Optional[str] = None,
                step: Optional[int] = None):
  """``(model_config, params, tokenizer)`` of the policy to evaluate (see the module doc)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import builders  # pylint: disable=g-import-not-at-top
  if hf_dir:
    config = config.copy_and_resolve_references()
    config.model.hf_dir = hf_dir
    config.tokenizer.kind = "hf"
  tokenizer = builders.build_tokenizer(config)
  key = jax.random.key(config.seed)
  if not checkpoint:
    model_config, params = builders.build_model(config, tokenizer, key)
    return model_config, params, tokenizer
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  model_config = builders.build_model_config(config, tokenizer)
  # Shapes only: eval_shape traces the initialiser without running or compiling it.
  shapes = jax.eval_shape(lambda k: builders.build_model(config, tokenizer, k)[1], key)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                          shapes)
  params = checkpoint_lib.restore_partial(_checkpoint_dir(checkpoint), {"params": abstract},
                                          step=step)["params"]
  return model_config, params, tokenizer


def run(config, *, hf_dir: Optional[str] = None, checkpoint: Optional[str] = None,
        step: Optional[int] = None, split: str = "test", num_prompts: Optional[int] = None,
        ks: Sequence[int] = (1,), num_samples: Optional[int] = None,
        temperature: Optional[float] = None, top_p: Optional[float] = None,
        max_new_tokens: Optional[int] = None, batch_size: Optional[int] = None, seed: int = 0,
        out_dir: Optional[str] = None) -> Dict[str, Any]:
  """Evaluates and returns ``{"metrics": ..., "groups": ..., "settings": ...}`` (see module doc)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rlvr_jax.data import task as task_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.eval import driver  # pylint: disable=g-import-not-at-top
  from rlvr_jax.rollout import text_sampler  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import builders  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
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
  examples = task_lib.distinct_examples(builders.build_task(config), split,
                                        settings["num_prompts"], config.eval.seed)
  sampler = text_sampler.TextSampler(
      model_config, tokenizer, tuple(config.data.prompt_buckets), settings["max_new_tokens"],
      add_bos=config.data.add_bos, temperature=temperature, top_p=top_p, top_k=config.rl.top_k)
  with builders.build_scorer(config) as scorer:
    result = driver.evaluate_examples(
        sampler.sample_fn(params), examples, jax.random.key(seed), num_samples=num_samples,
        ks=ks, batch_size=min(settings["batch_size"], len(examples)),
        score_fn=lambda texts, exs: scorer(texts, exs).rewards)
  for record in result.records:  # the prompt as the model saw it (chat template, system prompt)
    record["rendered_prompt"] = tokenizer.decode(text_sampler.prompt_token_ids(
        tokenizer, record["prompt"], add_bos=config.data.add_bos))
  if out_dir is None and checkpoint:
    out_dir = os.path.join(checkpoint, f"eval_{split}")
  if out_dir:
    driver.write_results(out_dir, result, extra={
        "settings": settings, "dtype": config.model.dtype,
        "config": checkpoint_lib.to_jsonable(config)})
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
  sys.argv = paths.resolve_argv(sys.argv)  # relative --config paths work from any directory
  app.run(main)
