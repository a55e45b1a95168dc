r"""Throughput and MFU of the jit'd RL update step (and of generation), with a torch baseline.

  python benchmarks/train_step.py --preset=qwen2.5-0.5b --batch=16 --prompt_len=512 \
      --completion_len=512 --dtype=bfloat16 --attention=flash --remat --remat_policy=dots
  python benchmarks/train_step.py --preset=tiny --batch=8 --prompt_len=32 --completion_len=32

Prints one JSON object:

* ``jax.trained_tokens_per_s``: ``batch * (prompt_len + completion_len)`` tokens per second of the
  full update (forward + backward of the policy through the chunked log-prob path, the objective's
  loss, AdamW), measured over ``--steps`` steps after ``--warmup`` steps;
* ``jax.mfu``: model FLOP utilisation, ``model_flops / time / peak``, with model FLOPs per token
  ``6 N + 6 L S d_attn`` (``N`` non-embedding parameters plus the LM head, causal attention over
  ``S`` positions: the PaLM appendix-B count with the causal half), ``peak`` from ``--peak_tflops``
  or the device's known bf16 dense peak (null on a CPU);
* ``jax.generated_tokens_per_s``: ``generate`` with ``--gen_prompts`` x ``--gen_samples`` and
  ``--completion_len`` new tokens (stop tokens ignored);
* ``torch``: the same shape through ``transformers`` (random Qwen2/Llama weights, its default
  attention, SDPA), a plain eager forward + backward + ``torch.optim.AdamW`` step, when torch is
  installed (``--torch=false`` to skip), twice: ``full_lm`` (the LM loss over every position, the
  usual "training step") and ``completion_head`` (the LM head and loss on the completion positions
  only, which is the work of the RL update); ``speedup`` = jax / torch trained tokens per second
  for each. Both sides count ``batch * (prompt_len + completion_len)`` tokens.

Runs unchanged on CPU, GPU or TPU (the device is whatever JAX and torch pick by default).
"""

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvr_jax import types
from rlvr_jax.models import config as model_config_lib
from rlvr_jax.models import transformer
from rlvr_jax.objectives import presets
from rlvr_jax.rollout.generate import generate
from rlvr_jax.train import state as state_lib
from rlvr_jax.train import step as step_lib

_PRESET = flags.DEFINE_string("preset", "tiny", "Model preset (rlvr_jax.models.config.PRESETS).")
_BATCH = flags.DEFINE_integer("batch", 8, "Sequences per update.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 64, "Prompt tokens per sequence.")
_COMPLETION_LEN = flags.DEFINE_integer("completion_len", 64, "Completion tokens per sequence.")
_DTYPE = flags.DEFINE_string("dtype", "float32", "Compute dtype.")
_PARAM_DTYPE = flags.DEFINE_string("param_dtype", "float32",
                                   "Parameter (and optimizer state) dtype.")
_MICRO = flags.DEFINE_integer("micro_batches", 1, "Gradient-accumulation micro-batches.")
_CHUNK = flags.DEFINE_integer("chunk_size", 128, "Log-prob chunk over the sequence (0: none).")
_REMAT = flags.DEFINE_bool("remat", False, "Rematerialise each decoder block.")
_REMAT_POLICY = flags.DEFINE_enum("remat_policy", "nothing", ["nothing", "dots"],
                                  "What a rematerialised block keeps (ModelConfig.remat_policy).")
_UNROLL = flags.DEFINE_integer("scan_unroll", 1, "Decoder blocks per layer-scan iteration.")
_ATTENTION = flags.DEFINE_enum("attention", "einsum", ["einsum", "flash"],
                               "Training attention kernel (ModelConfig.attention).")
_OBJECTIVE = flags.DEFINE_string("objective", "dapo", "Objective preset (no reference needed).")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps (compilation).")
_GEN_PROMPTS = flags.DEFINE_integer("gen_prompts", 4, "Prompts for the generation benchmark.")
_GEN_SAMPLES = flags.DEFINE_integer("gen_samples", 4, "Samples per prompt (0: skip generation).")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s for MFU (0: from the device kind).")
_BREAKDOWN = flags.DEFINE_bool("breakdown", False,
                                "Also time the forward alone and forward + backward alone.")
_TORCH = flags.DEFINE_bool("torch", True, "Also time a plain torch forward+backward+AdamW step.")

# Dense bf16 peaks (no sparsity) by jax device_kind substring.
_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "TPU v5 lite": 197.0,
                "TPU v5p": 459.0, "TPU v4": 275.0}


def flops_per_token(config, seq_len: int) -> float:
  """``6 N + 6 L S d_attn`` training FLOPs per token (non-embedding params + head, causal attn)."""
  d, f, layers = config.hidden_size, config.intermediate_size, config.num_layers
  q = config.num_heads * config.head_dim
  kv = config.num_kv_heads * config.head_dim
  per_layer = d * (q + 2 * kv) + q * d + 3 * d * f
  n = layers * per_layer + d * config.vocab_size
  return 6.0 * n + 6.0 * layers * seq_len * q


def _peak_tflops() -> float:
  if _PEAK.value:
    return _PEAK.value
  kind = jax.devices()[0].device_kind
  for name, peak in _PEAK_TFLOPS.items():
    if name in kind:
      return peak
  return 0.0


def _timed(fn, steps: int, warmup: int) -> float:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def bench_jax(config) -> dict:
  b, s, t = _BATCH.value, _PROMPT_LEN.value, _COMPLETION_LEN.value
  rng = np.random.default_rng(0)
  params = transformer.init_params(config, jax.random.key(0))
  tx, schedule = state_lib.make_optimizer(ml_collections.ConfigDict(
      dict(name="adamw", learning_rate=1e-6, grad_clip=1.0)))
  objective = presets.get(_OBJECTIVE.value)
  if objective.needs_reference:
    raise ValueError("Pick an objective without a reference model (e.g. dapo).")
  logprob_fn = step_lib.model_logprob_fn(config, temperature=1.0,
                                         chunk_size=_CHUNK.value or None, return_entropy=True)
  update = jax.jit(step_lib.make_update_fn(objective, tx, logprob_fn,
                                           num_micro_batches=_MICRO.value, schedule=schedule),
                   donate_argnums=0)
  mask = np.ones((b, t), np.float32)
  batch = step_lib.TrainBatch(
      prompt_tokens=jnp.asarray(rng.integers(0, config.vocab_size, (b, s)), jnp.int32),
      prompt_mask=jnp.ones((b, s), bool),
      completion_tokens=jnp.asarray(rng.integers(0, config.vocab_size, (b, t)), jnp.int32),
      loss=types.LossBatch(
          mask=jnp.asarray(mask), advantages=jnp.asarray(rng.normal(size=(b, 1)) * mask,
                                                         jnp.float32),
          old_logprobs=jnp.full((b, t), -10.0), ref_logprobs=jnp.zeros((b, t)),
          rollout_logprobs=jnp.full((b, t), -10.0),
          rewards=jnp.asarray(rng.normal(size=b), jnp.float32), correct=jnp.zeros(b),
          group_ids=jnp.arange(b, dtype=jnp.int32) // 4, truncated=jnp.zeros(b)))
  holder = [state_lib.create(params, tx)]

  def one_step():
    holder[0], metrics = update(holder[0], batch)
    return metrics["loss"]

  step_s = _timed(one_step, _STEPS.value, _WARMUP.value)
  tokens = b * (s + t)
  result = {}
  if _BREAKDOWN.value:
    # Where the update's time goes: the policy forward alone (log-probs and entropy), forward +
    # backward of a log-prob loss (no objective, no optimizer), and the rest by difference.
    params_now = holder[0].params
    args = (batch.prompt_tokens, batch.prompt_mask, batch.completion_tokens,
            batch.loss.mask > 0)
    forward = jax.jit(logprob_fn)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(logprob_fn(p, *args)[0])))
    result["forward_s"] = _timed(lambda: forward(params_now, *args)[0], _STEPS.value, 1)
    result["forward_backward_s"] = _timed(lambda: grad(params_now), _STEPS.value, 1)
  result.update({"update_s": step_s, "trained_tokens_per_s": tokens / step_s,
            "model_tflops_per_s": flops_per_token(config, s + t) * tokens / step_s / 1e12})
  peak = _peak_tflops()
  result["mfu"] = result["model_tflops_per_s"] / peak if peak else None

  if _GEN_SAMPLES.value:
    p, g = _GEN_PROMPTS.value, _GEN_SAMPLES.value
    prompts = jnp.asarray(rng.integers(0, config.vocab_size, (p, s)), jnp.int32)
    prompt_mask = jnp.ones((p, s), bool)
    params_now = holder[0].params
    gen = lambda: generate(params_now, config, prompts, prompt_mask, jax.random.key(1),
                           num_samples=g, max_new_tokens=t, force_full_length=True).tokens
    gen_s = _timed(gen, max(1, _STEPS.value // 2), 1)
    result.update(generate_s=gen_s, generated_tokens_per_s=p * g * t / gen_s)
  return result


def bench_torch(config) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  device = "cuda" if torch.cuda.is_available() else "cpu"
  dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32,
           "float16": torch.float16}[_DTYPE.value]
  kwargs = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                intermediate_size=config.intermediate_size,
                num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                num_key_value_heads=config.num_kv_heads, head_dim=config.head_dim,
                max_position_embeddings=config.max_position_embeddings,
                tie_word_embeddings=config.tie_word_embeddings, rms_norm_eps=config.rms_norm_eps)
  if config.architecture == "qwen2":
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**kwargs))
  else:
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        attention_bias=config.attention_bias, **kwargs))
  model = model.to(device=device, dtype=dtype)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
  b, s, n = _BATCH.value, _PROMPT_LEN.value, _PROMPT_LEN.value + _COMPLETION_LEN.value
  ids = torch.randint(0, config.vocab_size, (b, n), device=device)

  def full_lm_step():  # the plain step: LM loss over every position
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

  def completion_head_step():  # the RL update's work: the LM head on completion positions only
    hidden = model.model(input_ids=ids).last_hidden_state[:, s - 1:-1]
    logits = model.lm_head(hidden).float()
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, s:].flatten()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)

  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  result = {"device": device, "attn_implementation": model.config._attn_implementation}  # pylint: disable=protected-access
  for name, one_step in (("full_lm", full_lm_step), ("completion_head", completion_head_step)):
    for _ in range(_WARMUP.value):
      one_step()
    sync()
    start = time.perf_counter()
    for _ in range(_STEPS.value):
      one_step()
    sync()
    step_s = (time.perf_counter() - start) / _STEPS.value
    result[name] = {"update_s": step_s, "trained_tokens_per_s": b * n / step_s,
                    "model_tflops_per_s": flops_per_token(config, n) * b * n / step_s / 1e12}
  return result


def main(argv):
  del argv
  config = model_config_lib.preset(_PRESET.value, dtype=_DTYPE.value, remat=_REMAT.value,
                                   attention=_ATTENTION.value, param_dtype=_PARAM_DTYPE.value,
                                   scan_unroll=_UNROLL.value, remat_policy=_REMAT_POLICY.value)
  result = {
      "preset": _PRESET.value, "batch": _BATCH.value, "prompt_len": _PROMPT_LEN.value,
      "completion_len": _COMPLETION_LEN.value, "dtype": _DTYPE.value,
      "param_dtype": _PARAM_DTYPE.value,
      "micro_batches": _MICRO.value, "chunk_size": _CHUNK.value, "remat": _REMAT.value,
      "remat_policy": _REMAT_POLICY.value, "attention": _ATTENTION.value, "scan_unroll": _UNROLL.value,
      "objective": _OBJECTIVE.value, "device": jax.devices()[0].device_kind,
      "num_devices": jax.device_count(), "jax": bench_jax(config),
  }
  if _TORCH.value:
    try:
      result["torch"] = bench_torch(config)
      result["speedup"] = {
          name: result["jax"]["trained_tokens_per_s"] / result["torch"][name][
              "trained_tokens_per_s"] for name in ("full_lm", "completion_head")}
    except ImportError:
      result["torch"] = None
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
