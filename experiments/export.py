r"""Exports a trained checkpoint of ``experiments/train.py`` as a Hugging Face model directory.

  python -m experiments.export --workdir=/tmp/tiny --out_dir=/tmp/tiny_hf
  python -m experiments.export --workdir=/tmp/grpo --out_dir=/tmp/grpo_hf --step=200

The run is described by the ``config.json`` it wrote in ``--workdir`` (model, tokenizer, LoRA);
the params are those of checkpoint ``--step`` (default: the latest) in ``<workdir>/checkpoints``.
``--out_dir`` receives ``config.json``, safetensors and the tokenizer (with its chat template):
``transformers.AutoModelForCausalLM.from_pretrained(out_dir)`` and ``hf.load_hf(out_dir)`` load
it. A LoRA run (``config.lora.rank > 0``) is written with the adapters merged into its frozen
base (``W + A B * alpha / r``, rebuilt and fingerprint-checked as a resume does), and the adapters
alone as a peft directory in ``<out_dir>/adapter``.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from absl import app
from absl import flags
from absl import logging

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's workdir.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "The HF directory to write.", required=True)
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_DTYPE = flags.DEFINE_string("dtype", None,
                             "dtype of the written tensors (default: config.model.param_dtype).")


def run_config(workdir: str):
  """The resolved config a run wrote to ``<workdir>/config.json``, as a ``ConfigDict``."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config.json in {workdir}: is it a workdir of experiments.train?")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def export(workdir: str, out_dir: str, *, step: Optional[int] = None,
           dtype: Optional[str] = None) -> str:
  """Writes the policy of ``workdir``'s checkpoint ``step`` to ``out_dir`` (see the module doc);
  returns ``out_dir``."""
  import jax  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import builders  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import config_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import prng  # pylint: disable=g-import-not-at-top
  config = run_config(workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  tokenizer = builders.build_tokenizer(config)
  init_key = prng.split_seed(config.seed)[0]
  hf_dir = config.model.hf_dir or None
  kwargs = dict(tokenizer_dir=hf_dir, dtype=dtype)
  lora_config = builders.build_lora_config(config)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def abstract(tree):
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), tree)

  if lora_config is None:
    model_config = builders.build_model_config(config, tokenizer)
    shapes = jax.eval_shape(lambda k: builders.build_model(config, tokenizer, k)[1], init_key)
    checkpoint_lib.export_hf(ckpt_dir, out_dir, model_config=model_config,
                             abstract_params=abstract(shapes), step=step, **kwargs)
  else:
    from rlvr_jax.models import peft_io  # pylint: disable=g-import-not-at-top
    # The frozen base of the run, rebuilt as a resume rebuilds it: the initial weights, or the
    # policy after the supervised warm-up; its fingerprint must be the one the run recorded.
    model_config, base = builders.build_model(config, tokenizer, init_key)
    warmup = os.path.join(workdir, builders.WARMUP_PARAMS_FILE)
    init_from = config.sft.init_from or (warmup if os.path.exists(warmup) else "")
    if init_from:
      base = checkpoint_lib.load_params(init_from, base)
    with open(os.path.join(workdir, "lora_base.json"), encoding="utf-8") as f:
      config_lib.check_lora_base(json.load(f)["fingerprint"], builders.fingerprint(base))
    fresh, frozen = builders.split_trainable(base, model_config, lora_config,
                                             prng.lora_keys(init_key)[0])
    adapters = checkpoint_lib.restore_partial(
        ckpt_dir, {"params": abstract(jax.eval_shape(lambda: fresh))}, step=step)["params"]
    peft_io.export_merged(frozen, adapters, model_config, lora_config, out_dir, **kwargs)
    peft_io.export_peft(adapters, model_config, lora_config, os.path.join(out_dir, "adapter"),
                        base_model_name_or_path=hf_dir)
  if hf_dir is None:  # a tokenizer built in code (config.tokenizer.kind="char")
    tokenizer.save_pretrained(out_dir)
  return out_dir


def main(argv):
  """Runs :func:`export` with the command-line flags and prints the output directory."""
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore operation at INFO
  print(export(_WORKDIR.value, _OUT_DIR.value, step=_STEP.value, dtype=_DTYPE.value), flush=True)


if __name__ == "__main__":
  app.run(main)
