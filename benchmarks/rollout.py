r"""Rollout throughput: rlvr_jax `generate` against transformers' `generate` on the same weights.

Generates ``new_tokens`` tokens for ``batch`` sequences (``batch / group_size`` random prompts of
``prompt_len`` tokens, ``group_size`` samples each), always to full length (stop tokens ignored),
with plain sampling at temperature 1 (no top-k/top-p), and prints one JSON object:

* ``jax``: device, ``compile_s`` (first call minus a steady call: tracing + XLA compilation),
  ``steady_s`` (median of ``--repeats`` calls with fresh keys), ``tokens_per_s`` =
  ``batch * new_tokens / steady_s``, and the number of traces (1 means no recompilation);
* ``hf`` (unless ``--skip_torch`` or torch is missing): the same model built in transformers from
  the same weights (our params exported with `rlvr_jax.models.hf.export_hf`, or the ``--hf_dir``
  checkpoint), ``model.generate(do_sample=True, top_k=0, min_new_tokens=max_new_tokens)`` on CUDA
  when available, after a short warm-up, and its tokens/s;
* ``speedup``: jax tokens/s over hf tokens/s.

Examples:
  python benchmarks/rollout.py --preset=tiny --batch=16 --group_size=4 --prompt_len=32 \
      --new_tokens=64 --dtype=float32
  python benchmarks/rollout.py --preset=qwen2.5-0.5b --batch=256 --group_size=1 \
      --prompt_len=256 --new_tokens=512 --dtype=bfloat16
"""

import json
import os
import statistics
import tempfile
import time

# Leave GPU memory for torch, which runs in the same process after JAX.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.models import hf as hf_lib
from rlvr_jax.models.config import preset as model_preset
from rlvr_jax.models.transformer import init_params
from rlvr_jax.rollout import generate as gen

_PRESET = flags.DEFINE_string("preset", "tiny", "model preset (ignored with --hf_dir)")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "local HF checkpoint directory")
_BATCH = flags.DEFINE_integer("batch", 16, "total sequences B (prompts * group_size)")
_GROUP = flags.DEFINE_integer("group_size", 4, "samples per prompt G")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 32, "prompt tokens S")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 64, "generated tokens per sequence N")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "param and compute dtype (both frameworks)")
_REPEATS = flags.DEFINE_integer("repeats", 3, "steady-state jax calls to time")
_SKIP_TORCH = flags.DEFINE_boolean("skip_torch", False, "do not run transformers' generate")
_SEED = flags.DEFINE_integer("seed", 0, "seed for weights and prompts")


def _device_name(device) -> str:
  return f"{device.platform}:{getattr(device, 'device_kind', '')}"


def _run_jax(config, params, prompts, group_size, new_tokens, repeats):
  tokens = jnp.asarray(prompts)
  mask = jnp.ones(prompts.shape, bool)
  kw = dict(num_samples=group_size, max_new_tokens=new_tokens, force_full_length=True)

  def call(seed):
    start = time.perf_counter()
    rollout = gen.generate(params, config, tokens, mask, jax.random.PRNGKey(seed), **kw)
    np.asarray(rollout.tokens)  # Wait for the device and fetch, as a trainer would.
    return time.perf_counter() - start, rollout

  traces = gen.num_traces()
  first, rollout = call(1)
  steady = [call(2 + i)[0] for i in range(repeats)]
  median = statistics.median(steady)
  b = rollout.tokens.shape[0]
  assert int(np.asarray(rollout.lengths).min()) == new_tokens
  return {
      "device": _device_name(jax.devices()[0]),
      "compile_s": round(first - median, 3),
      "first_call_s": round(first, 3),
      "steady_s": round(median, 4),
      "steady_all_s": [round(s, 4) for s in steady],
      "tokens_per_s": round(b * new_tokens / median, 1),
      "traces": gen.num_traces() - traces,
  }


def _run_hf(hf_dir, dtype, prompts, group_size, new_tokens):
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
  model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch_dtype)
  model = model.to(device).eval()
  ids = torch.as_tensor(prompts, dtype=torch.long, device=device)
  kw = dict(attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
            top_p=1.0, num_return_sequences=group_size, pad_token_id=0)

  def call(n):
    if device == "cuda":
      torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
      out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
    if device == "cuda":
      torch.cuda.synchronize()
    return time.perf_counter() - start, out

  call(2)  # Warm-up: kernels, allocator.
  seconds, out = call(new_tokens)
  assert out.shape == (ids.shape[0] * group_size, ids.shape[1] + new_tokens), out.shape
  name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
  return {
      "device": f"{device}:{name}",
      "torch": torch.__version__,
      "transformers": transformers.__version__,
      "seconds": round(seconds, 3),
      "tokens_per_s": round(out.shape[0] * new_tokens / seconds, 1),
  }


def main(argv):
  del argv
  if _BATCH.value % _GROUP.value:
    raise app.UsageError("--batch must be a multiple of --group_size")
  num_prompts = _BATCH.value // _GROUP.value
  with tempfile.TemporaryDirectory() as tmp:
    if _HF_DIR.value:
      config, params = hf_lib.load_hf(_HF_DIR.value, dtype=_DTYPE.value,
                                      param_dtype=_DTYPE.value)
      hf_dir, model_name = _HF_DIR.value, _HF_DIR.value
    else:
      config = model_preset(_PRESET.value, dtype=_DTYPE.value, param_dtype=_DTYPE.value)
      params = init_params(config, jax.random.PRNGKey(_SEED.value))
      hf_dir, model_name = None, _PRESET.value
    rng = np.random.default_rng(_SEED.value)
    prompts = rng.integers(1, config.vocab_size, (num_prompts, _PROMPT_LEN.value), np.int32)
    result = {
        "model": model_name,
        "batch": _BATCH.value,
        "group_size": _GROUP.value,
        "prompt_len": _PROMPT_LEN.value,
        "new_tokens": _NEW_TOKENS.value,
        "dtype": _DTYPE.value,
        "jax_version": jax.__version__,
        "jax": _run_jax(config, params, prompts, _GROUP.value, _NEW_TOKENS.value,
                        _REPEATS.value),
    }
    torch_available = True
    try:
      import torch  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      torch_available = False
    if torch_available and not _SKIP_TORCH.value:
      if hf_dir is None:
        hf_dir = os.path.join(tmp, "hf")
        # float32 on disk (exact for either dtype); transformers casts on load.
        hf_lib.export_hf(params, config, hf_dir, dtype="float32")
      del params  # Free device memory for torch.
      result["hf"] = _run_hf(hf_dir, _DTYPE.value, prompts, _GROUP.value, _NEW_TOKENS.value)
      result["speedup"] = round(result["jax"]["tokens_per_s"] / result["hf"]["tokens_per_s"], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
