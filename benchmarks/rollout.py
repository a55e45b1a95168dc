r"""Rollout throughput: the static and continuous-batching engines, transformers' `generate` on the
same weights, and each decode step against the memory-bandwidth bound.

``--batch`` sequences (``batch / group_size`` random prompts of ``prompt_len`` tokens,
``group_size`` samples each), plain sampling at temperature 1 (no top-k/top-p), random weights of
``--preset`` (or ``--hf_dir``). Two workloads:

* ``--length_dist=none`` (default): every sequence generates ``new_tokens`` tokens (stop tokens
  ignored). ``--engine`` picks `rlvr_jax.rollout.generate` (``static``),
  `rlvr_jax.rollout.continuous` (``continuous``, ``--num_slots`` slots, default one per sequence)
  or ``both``. Each engine: ``compile_s`` (first call minus a steady call), ``steady_s`` (median of
  ``--repeats`` calls with fresh keys, results fetched to the host), ``tokens_per_s``, ``traces``
  (1: no recompilation). Then transformers (unless ``--skip_torch`` or torch is missing): the
  same model built from the same weights (our params exported with
  `rlvr_jax.models.hf.export_hf`, or the ``--hf_dir`` checkpoint),
  ``model.generate(do_sample=True, top_k=0, min_new_tokens=N)`` on CUDA when available, after a
  short warm-up; ``speedup`` is each engine's tokens/s over transformers'. With ``--plain``, also
  the plain JAX loop of ``benchmarks/plain_decode.py`` (about a hundred lines: a static cache,
  a Python loop over the layers, ``jax.random.categorical``; no early exit, no shared prefill)
  on the same weights and rows: ``plain`` and ``speedup_over_plain``.
* ``--length_dist=lognormal``: sequence ``b`` is made to stop after
  ``L_b = clip(round(median_len * exp(length_sigma * z_b)), 1, new_tokens)`` tokens (``z_b``
  standard normal, drawn from ``--seed``), so random weights produce an RL policy's long-tailed
  lengths.
  ``useful_tokens_per_s`` counts the ``sum_b L_b`` tokens before the stops; ``engine_tokens_per_s``
  counts every token position the engine decoded (finished rows and idle slots included). Both
  engines get the same lengths and the same memory, ``--num_slots`` sequences of KV cache:

  - continuous: one call, ``stop_lengths=L`` (`rlvr_jax.rollout.continuous.generate`), refilling
    slots as rows stop;
  - static: the rows in consecutive calls of ``num_slots`` rows (whole groups), each call
    generating ``max(L)`` of its rows (``force_full_length``): exactly what the static loop does
    when its rows stop at ``L`` (it runs until its longest row stops), except that its cache then
    has ``S + max(L)`` columns instead of ``S + new_tokens``, which if anything favours it. Each
    distinct call shape is run once untimed first (compilation), then timed once.

  transformers is not run in this mode.

Memory-bandwidth bound (``bandwidth``): a decode step must at least read the weights (the
embedding table only if it is the tied LM head) and every KV-cache entry the attention reads (all
``rows x (S + N)`` columns: both engines attend over the whole cache, masked), so
``bound_step_s = (weight_bytes + kv_bytes) / hbm_bandwidth``, with ``--hbm_gbps`` or the device's
datasheet figure (H100 SXM 3350 GB/s, H100 PCIe 2000, H100 NVL 3900, H200 4800). The measured
step is ``(steady_s - prefill_s) / decode_steps``, where ``prefill_s`` times a jit'd prefill of
the run's prompts alone (the static engine's: all ``P`` prompts into an ``S + N`` cache; the
continuous engine's: ``prefill_chunk`` prompts at a time into an ``S``-column ring, which the
measurement approximates by one pass over all ``P``) and ``decode_steps`` is ``N - 1`` for the
static engine (its first token comes from the prefill) and the engine's own count for the
continuous one. ``pct_of_bound = 100 * bound_step_s / step_s``. ``weight_bytes`` counts the
weights as stored: with ``--param_dtype=float32 --dtype=bfloat16`` (the trainer's mixed precision)
they are float32, and the step shows whether the per-use cast to bfloat16 is paid on every step
(the model casts each weight where it is used; XLA may hoist that cast out of the decode loop,
or on a CPU drop it, computing in float32 with excess precision).

Examples:
  python benchmarks/rollout.py --preset=tiny --batch=16 --group_size=4 --prompt_len=32 \
      --new_tokens=64 --dtype=float32 --engine=both
  python benchmarks/rollout.py --preset=tiny --batch=64 --group_size=4 --prompt_len=32 \
      --new_tokens=256 --length_dist=lognormal --median_len=20 --num_slots=16 --engine=both
  python benchmarks/rollout.py --preset=qwen2.5-0.5b --batch=256 --group_size=1 \
      --prompt_len=256 --new_tokens=512 --dtype=bfloat16 --engine=both
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
from rlvr_jax.models import transformer as transformer_lib
from rlvr_jax.models.config import PRESETS
from rlvr_jax.models.config import preset as model_preset
from rlvr_jax.rollout import continuous
from rlvr_jax.rollout import generate as gen

_PRESET = flags.DEFINE_enum("preset", "tiny", list(PRESETS), "model preset (ignored with --hf_dir)")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "local HF checkpoint directory")
_BATCH = flags.DEFINE_integer("batch", 16, "total sequences B (prompts * group_size)")
_GROUP = flags.DEFINE_integer("group_size", 4, "samples per prompt G")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 32, "prompt tokens S")
_NEW_TOKENS = flags.DEFINE_integer(
    "new_tokens", 64, "generated tokens per sequence N (lognormal: the budget and longest length)")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "compute dtype (both frameworks; also the param dtype unless "
                           "--param_dtype)")
_PARAM_DTYPE = flags.DEFINE_enum(
    "param_dtype", None, ["float32", "bfloat16"],
    "rlvr_jax's param dtype, default --dtype; float32 with --dtype=bfloat16 is the trainer's "
    "mixed precision (float32 master weights, bfloat16 compute)")
_REPEATS = flags.DEFINE_integer("repeats", 3, "steady-state jax calls to time")
_SKIP_TORCH = flags.DEFINE_boolean("skip_torch", False, "do not run transformers' generate")
_SEED = flags.DEFINE_integer("seed", 0, "seed for weights, prompts and drawn lengths")
_ENGINE = flags.DEFINE_enum("engine", "both", ["static", "continuous", "both"],
                            "which rlvr_jax engine(s) to time")
_NUM_SLOTS = flags.DEFINE_integer(
    "num_slots", 0, "continuous engine's decode slots, and the static engine's rows per call "
    "under --length_dist (0: --batch)")
_LENGTH_DIST = flags.DEFINE_enum("length_dist", "none", ["none", "lognormal"],
                                 "none: every sequence runs new_tokens; lognormal: forced lengths")
_MEDIAN_LEN = flags.DEFINE_integer("median_len", 300, "lognormal: median length")
_LENGTH_SIGMA = flags.DEFINE_float("length_sigma", 1.0, "lognormal: sigma of log-length")
_PLAIN = flags.DEFINE_boolean(
    "plain", False, "full-length mode: also time the plain JAX decode loop of "
    "benchmarks/plain_decode.py on the same weights and rows (speedup_over_plain)")
_HBM_GBPS = flags.DEFINE_float(
    "hbm_gbps", 0.0, "memory bandwidth in GB/s for the bound (0: by device kind; none on CPU)")

# Datasheet HBM bandwidths (GB/s), matched in order against jax's device_kind.
_HBM_GBPS_BY_KIND = (("H200", 4800.0), ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0),
                     ("H100", 3350.0))


def _device_name(device) -> str:
  return f"{device.platform}:{getattr(device, 'device_kind', '')}"


def _hbm_gbps(device):
  if _HBM_GBPS.value > 0:
    return _HBM_GBPS.value
  kind = getattr(device, "device_kind", "")
  return next((gbps for name, gbps in _HBM_GBPS_BY_KIND if name in kind), None)


def _weight_bytes(config, params) -> int:
  """Bytes of the weights one decode step reads: all, minus the embedding table when untied
  (the lookup reads a few rows; the LM head is read whole)."""
  total = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
  if not config.tie_word_embeddings:
    embedding = params["embed"]["embedding"]
    total -= embedding.size * embedding.dtype.itemsize
  return int(total)


def _kv_bytes(config, rows: int, columns: int) -> int:
  """Bytes of keys and values a decode step over ``rows`` cache rows of ``columns`` reads."""
  return int(2 * config.num_layers * rows * columns * config.num_kv_heads * config.head_dim *
             config.compute_dtype.itemsize)


def _bandwidth(config, params, rows, columns, step_s, gbps):
  out = {"weight_bytes": _weight_bytes(config, params),
         "kv_bytes": _kv_bytes(config, rows, columns), "hbm_gbps": gbps,
         "step_s": round(step_s, 6)}
  if gbps:
    bound = (out["weight_bytes"] + out["kv_bytes"]) / (gbps * 1e9)
    out.update(bound_step_s=round(bound, 6), pct_of_bound=round(100 * bound / step_s, 1))
  return out


def _timed(call, repeats):
  """``(first_s, steady_s list, first result)``: a first call (compilation included), then
  ``repeats`` calls with fresh seeds; each waits for its results on the host."""

  def run(seed):
    start = time.perf_counter()
    out = jax.tree.map(np.asarray, call(seed))
    return time.perf_counter() - start, out

  first, out = run(1)
  return first, [run(2 + i)[0] for i in range(repeats)], out


def _prefill_seconds(config, params, prompts, columns):
  """Median of 3 timed jit'd prefills of ``prompts`` (all real tokens) into a ``columns`` cache,
  last-position logits included, as the engines' prefills compute them."""
  model = transformer_lib.Transformer(config)
  p, s = prompts.shape

  @jax.jit
  def prefill(params, tokens):
    mask = jnp.ones((p, columns), bool)
    positions = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (p, s))
    hidden, cache = model.apply({"params": params}, tokens, positions, mask,
                                cache=transformer_lib.init_cache(config, p, columns),
                                cache_index=jnp.int32(0), return_hidden=True)
    return transformer_lib.unembed(params, config, hidden[:, -1]), cache

  tokens = jnp.asarray(prompts)
  jax.block_until_ready(prefill(params, tokens))
  times = []
  for _ in range(3):
    start = time.perf_counter()
    jax.block_until_ready(prefill(params, tokens))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _summary(first, steady):
  median = statistics.median(steady)
  return median, {"compile_s": round(first - median, 3), "first_call_s": round(first, 3),
                  "steady_s": round(median, 4), "steady_all_s": [round(s, 4) for s in steady]}


def _full_length(engine, config, params, prompts, group_size, new_tokens, num_slots, repeats,
                 gbps):
  """One engine on the full-length workload: timing, tokens/s, step time against the bound."""
  tokens = jnp.asarray(prompts)
  mask = jnp.ones(prompts.shape, bool)
  b = prompts.shape[0] * group_size
  kw = dict(num_samples=group_size, max_new_tokens=new_tokens, force_full_length=True)
  s = prompts.shape[1]
  if engine == "static":
    counter = gen.num_traces
    call = lambda seed: gen.generate(params, config, tokens, mask, jax.random.PRNGKey(seed), **kw)
  else:
    counter = continuous.num_traces
    call = lambda seed: continuous.generate(params, config, tokens, mask,
                                            jax.random.PRNGKey(seed), num_slots=num_slots,
                                            return_stats=True, **kw)
  traces = counter()
  first, steady, out = _timed(call, repeats)
  median, result = _summary(first, steady)
  rollout = out if engine == "static" else out[0]
  assert int(rollout.lengths.min()) == new_tokens
  result.update(tokens_per_s=round(b * new_tokens / median, 1), traces=counter() - traces)
  if engine == "static":
    prefill_s = _prefill_seconds(config, params, prompts, s + new_tokens)
    steps, rows = new_tokens - 1, b
  else:
    prefill_s = _prefill_seconds(config, params, prompts, s)
    steps, rows = int(out[1].decode_steps), num_slots
    result.update(num_slots=num_slots, decode_steps=steps)
  result["prefill_s"] = round(prefill_s, 4)
  result["bandwidth"] = _bandwidth(config, params, rows, s + new_tokens,
                                   (median - prefill_s) / steps, gbps)
  return result


def _plain(config, params, prompts, group_size, new_tokens, repeats):
  """The plain decode loop (`plain_decode.plain_generate`) on the same ``P * G`` rows, each
  prompt repeated ``G`` times (it has no shared prefill), ``N`` tokens at temperature 1."""
  import plain_decode  # pylint: disable=g-import-not-at-top  (this script's directory)
  rows = jnp.asarray(np.repeat(prompts, group_size, axis=0))
  mask = jnp.ones(rows.shape, bool)
  call = lambda seed: plain_decode.plain_generate(params, config, rows, mask,
                                                  jax.random.PRNGKey(seed),
                                                  max_new_tokens=new_tokens)
  first, steady, _ = _timed(call, repeats)
  median, out = _summary(first, steady)
  out["tokens_per_s"] = round(rows.shape[0] * new_tokens / median, 1)
  return out


def _draw_lengths(b, new_tokens, seed):
  z = np.random.default_rng([seed, 1]).standard_normal(b)
  lengths = np.rint(_MEDIAN_LEN.value * np.exp(_LENGTH_SIGMA.value * z))
  return np.clip(lengths, 1, new_tokens).astype(np.int32)


def _long_tail_continuous(config, params, prompts, group_size, new_tokens, lengths, num_slots,
                          repeats, gbps):
  tokens = jnp.asarray(prompts)
  mask = jnp.ones(prompts.shape, bool)
  stop_lengths = jnp.asarray(lengths)
  traces = continuous.num_traces()
  first, steady, (rollout, stats) = _timed(
      lambda seed: continuous.generate(
          params, config, tokens, mask, jax.random.PRNGKey(seed), num_samples=group_size,
          max_new_tokens=new_tokens, num_slots=num_slots, stop_lengths=stop_lengths,
          return_stats=True), repeats)
  median, result = _summary(first, steady)
  np.testing.assert_array_equal(rollout.lengths, lengths)
  steps = int(stats.decode_steps)
  prefill_s = _prefill_seconds(config, params, prompts, prompts.shape[1])
  result.update(
      num_slots=num_slots, decode_steps=steps, traces=continuous.num_traces() - traces,
      useful_tokens_per_s=round(int(lengths.sum()) / median, 1),
      engine_tokens_per_s=round(steps * num_slots / median, 1),
      slot_utilisation=round(int(lengths.sum()) / (steps * num_slots), 3),
      prefill_s=round(prefill_s, 4),
      bandwidth=_bandwidth(config, params, num_slots, prompts.shape[1] + new_tokens,
                           (median - prefill_s) / steps, gbps))
  return result


def _long_tail_static(config, params, prompts, group_size, lengths, rows_per_call):
  prompts_per_call = rows_per_call // group_size
  calls = []
  for start in range(0, prompts.shape[0], prompts_per_call):
    chunk = prompts[start:start + prompts_per_call]
    rows = lengths[start * group_size:(start + prompts_per_call) * group_size]
    calls.append((jnp.asarray(chunk), jnp.ones(chunk.shape, bool), int(rows.max()), rows.size))
  run = lambda tokens, mask, n, seed: np.asarray(gen.generate(
      params, config, tokens, mask, jax.random.PRNGKey(seed), num_samples=group_size,
      max_new_tokens=n, force_full_length=True).tokens)
  warmed = set()
  seconds, engine_tokens = 0.0, 0
  for i, (tokens, mask, n, rows) in enumerate(calls):
    if (tokens.shape, n) not in warmed:  # Compile outside the timing.
      run(tokens, mask, n, 0)
      warmed.add((tokens.shape, n))
    start = time.perf_counter()
    run(tokens, mask, n, 1 + i)
    seconds += time.perf_counter() - start
    engine_tokens += rows * n
  return {"calls": len(calls), "rows_per_call": rows_per_call,
          "new_tokens_per_call": [c[2] for c in calls], "seconds": round(seconds, 4),
          "useful_tokens_per_s": round(int(lengths.sum()) / seconds, 1),
          "engine_tokens_per_s": round(engine_tokens / seconds, 1)}


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
  b, g, n = _BATCH.value, _GROUP.value, _NEW_TOKENS.value
  if b % g:
    raise app.UsageError("--batch must be a multiple of --group_size")
  num_slots = min(_NUM_SLOTS.value or b, b)
  long_tail = _LENGTH_DIST.value == "lognormal"
  if long_tail and num_slots % g:
    raise app.UsageError("--num_slots must be a multiple of --group_size (the static engine's "
                         "calls take whole groups)")
  engines = ("static", "continuous") if _ENGINE.value == "both" else (_ENGINE.value,)
  param_dtype = _PARAM_DTYPE.value or _DTYPE.value
  with tempfile.TemporaryDirectory() as tmp:
    if _HF_DIR.value:
      config, params = hf_lib.load_hf(_HF_DIR.value, dtype=_DTYPE.value,
                                      param_dtype=param_dtype)
      hf_dir, model_name = _HF_DIR.value, _HF_DIR.value
    else:
      config = model_preset(_PRESET.value, dtype=_DTYPE.value, param_dtype=param_dtype)
      params = transformer_lib.init_params(config, jax.random.PRNGKey(_SEED.value))
      hf_dir, model_name = None, _PRESET.value
    rng = np.random.default_rng(_SEED.value)
    prompts = rng.integers(1, config.vocab_size, (b // g, _PROMPT_LEN.value), np.int32)
    device = jax.devices()[0]
    gbps = _hbm_gbps(device)
    result = {
        "model": model_name, "batch": b, "group_size": g, "prompt_len": _PROMPT_LEN.value,
        "new_tokens": n, "dtype": _DTYPE.value, "param_dtype": param_dtype,
        "device": _device_name(device),
        "jax_version": jax.__version__, "length_dist": _LENGTH_DIST.value,
    }
    if long_tail:
      lengths = _draw_lengths(b, n, _SEED.value)
      result["lengths"] = {
          "median_len": _MEDIAN_LEN.value, "sigma": _LENGTH_SIGMA.value, "max": n,
          "mean": round(float(lengths.mean()), 1),
          **{f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)},
          "longest": int(lengths.max()), "useful_tokens": int(lengths.sum()),
          "num_slots": num_slots}
      if "continuous" in engines:
        result["continuous"] = _long_tail_continuous(config, params, prompts, g, n, lengths,
                                                     num_slots, _REPEATS.value, gbps)
      if "static" in engines:
        result["static"] = _long_tail_static(config, params, prompts, g, lengths, num_slots)
      if len(engines) == 2:
        result["useful_speedup_continuous_over_static"] = round(
            result["continuous"]["useful_tokens_per_s"] / result["static"]["useful_tokens_per_s"],
            2)
      print(json.dumps(result, indent=2))
      return
    for engine in engines:
      result[engine] = _full_length(engine, config, params, prompts, g, n, num_slots,
                                    _REPEATS.value, gbps)
    if _PLAIN.value:
      result["plain"] = _plain(config, params, prompts, g, n, _REPEATS.value)
      result["speedup_over_plain"] = {
          engine: round(result[engine]["tokens_per_s"] / result["plain"]["tokens_per_s"], 2)
          for engine in engines}
    try:
      import torch  # pylint: disable=g-import-not-at-top,unused-import
      torch_available = True
    except ImportError:
      torch_available = False
    if torch_available and not _SKIP_TORCH.value:
      if hf_dir is None:
        hf_dir = os.path.join(tmp, "hf")
        # float32 on disk (exact for either dtype); transformers casts on load.
        hf_lib.export_hf(params, config, hf_dir, dtype="float32")
      del params  # Free device memory for torch.
      result["hf"] = _run_hf(hf_dir, _DTYPE.value, prompts, g, n)
      result["speedup_over_hf"] = {
          engine: round(result[engine]["tokens_per_s"] / result["hf"]["tokens_per_s"], 2)
          for engine in engines}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
