"""The RL loop: prompts → rollouts → rewards → advantages → data stages → updates → eval → checkpoint.

One step of :func:`train` (all config fields under ``config.rl`` unless named):

1. take ``num_prompts`` examples ``P`` from the task's ``"train"`` stream (its position is saved
   in checkpoints, so a resumed run continues with the same examples);
2. render and tokenise the prompts (chat template when the prompt is chat messages), left-pad to a
   bucket, and ``generate`` ``num_samples`` ``G`` completions each (jit; PRNG key
   ``fold_in(seed_key, step)``, so a step's samples depend only on the seed, step and params);
3. decode and score every completion on the host (:class:`RewardScorer`: worker processes, a
   per-completion timeout; a failure costs one reward);
4. the objective's reward transform and advantage estimator (jit) on ``[P, G]``;
5. optional data stages (host functions over the batch, see ``data_stages``);
6. old log-probs from the sampler, or recomputed with the current params
   (``recompute_old_logprobs``); reference log-probs only when ``objective.needs_reference``;
7. ``num_iterations`` passes, each over ``num_mini_batches`` shuffled mini-batches of whole groups,
   one optimizer step per mini-batch (:mod:`rlvr_jax.train.step`, micro-batched);
8. metrics (TRL names where they exist), periodic held-out evaluation and checkpoints.

Held-out evaluation (:func:`evaluate`): on ``eval.num_prompts`` distinct ``"test"`` prompts (never in
the training stream, see :mod:`rlvr_jax.data.procedural`), ``pass@1`` is the mean verifier score of
``eval.num_samples`` completions per prompt sampled at the training temperature (the unbiased
pass@1 estimate, averaged over prompts), and ``greedy_accuracy`` the score of one greedy completion.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvr_jax import types
from rlvr_jax.data import task as task_lib
# The module path, not the package attribute: rlvr_jax.rollout exports a function named generate.
from rlvr_jax.rollout.generate import generate as generate_fn
from rlvr_jax.rollout.generate import pad_prompts
from rlvr_jax.train import mesh as mesh_lib
from rlvr_jax.train import rewards_host
from rlvr_jax.train import state as state_lib
from rlvr_jax.train import step as step_lib


# --- Building blocks -----------------------------------------------------------------------------


def build_tokenizer(config: ml_collections.ConfigDict):
  """``config.tokenizer.kind``: ``"char"`` (built in code) or ``"hf"`` (``config.model.hf_dir``)."""
  kind = config.tokenizer.kind
  if kind == "char":
    from rlvr_jax.data import char_tokenizer  # pylint: disable=g-import-not-at-top
    return char_tokenizer.build()
  if kind == "hf":
    from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
    return hf.load_tokenizer(config.model.hf_dir)
  raise ValueError(f"Unknown tokenizer kind {kind!r}.")


def build_model(config: ml_collections.ConfigDict, tokenizer, rng: jax.Array):
  """``(model_config, params)``: from ``config.model.hf_dir`` if set, else a random preset.

  ``config.model.dtype``/``param_dtype`` set the compute/parameter dtypes and ``config.remat``
  (``"full"``) rematerialises each decoder block. A random preset takes ``config.model.overrides``
  and its vocabulary size from the tokenizer (rounded up to a multiple of 8).
  """
  from rlvr_jax.models import config as model_config_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.models import transformer  # pylint: disable=g-import-not-at-top
  dtypes = dict(dtype=config.model.get("dtype", "float32"),
                param_dtype=config.model.get("param_dtype", "float32"),
                remat=config.get("remat", "none") != "none")
  if not config.model.get("hf_dir") and not config.model.get("preset"):
    raise ValueError("Set --config.model.hf_dir to a local Hugging Face model directory.")
  if config.model.get("hf_dir"):
    from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
    return hf.load_hf(config.model.hf_dir, **dtypes)
  overrides = {**dtypes, **dict(config.model.get("overrides", {}))}
  overrides.setdefault("vocab_size", -(-len(tokenizer) // 8) * 8)
  model_config = model_config_lib.preset(config.model.preset, **overrides)
  return model_config, transformer.init_params(model_config, rng)


def build_task(config: ml_collections.ConfigDict) -> task_lib.TaskSource:
  """The task source of ``config.task``.

  ``kind="procedural"``: ``name`` and ``kwargs`` of :func:`rlvr_jax.data.procedural.get`.
  ``kind="files"``: ``files`` (split → JSONL/Parquet path), optional ``field_map`` and
  ``default_verifier`` (see :mod:`rlvr_jax.data.jsonl`), and ``answer_format`` (``"chat"`` or
  ``"text"``: append the verifier's answer-format instruction; ``""``: prompts as stored) with an
  optional ``system`` message.
  """
  kind = config.task.kind
  if kind == "procedural":
    from rlvr_jax.data import procedural  # pylint: disable=g-import-not-at-top
    kwargs = dict(config.task.get("kwargs", {}))
    if "ops" in kwargs:
      kwargs["ops"] = tuple(kwargs["ops"])
    return procedural.get(config.task.name, **kwargs)
  if kind == "files":
    from rlvr_jax.data import jsonl  # pylint: disable=g-import-not-at-top
    source = jsonl.FileTaskSource(
        dict(config.task.files), name=config.task.get("name", "file"),
        field_map=dict(config.task.get("field_map", {})) or None,
        default_verifier=config.task.get("default_verifier") or None)
    if config.task.get("answer_format"):
      return _WithAnswerFormat(source, chat=config.task.answer_format == "chat",
                               system=config.task.get("system") or None)
    return source
  raise ValueError(f"Unknown task kind {kind!r}.")


@dataclasses.dataclass
class _WithAnswerFormat:
  """A task source whose plain-text questions get their verifier's answer-format instruction
  (``rlvr_jax.data.templates.with_answer_format``), as chat messages or plain text."""

  source: task_lib.TaskSource
  chat: bool
  system: Optional[str]

  @property
  def name(self) -> str:
    return self.source.name

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    from rlvr_jax.data import templates  # pylint: disable=g-import-not-at-top
    for example in self.source.examples(split, seed):
      yield templates.with_answer_format(example, chat=self.chat, system=self.system)


def prompt_token_ids(tokenizer, example: task_lib.Example, *, add_bos: bool) -> List[int]:
  """Token ids of an example's prompt: chat messages through the tokenizer's chat template."""
  from rlvr_jax.data import templates  # pylint: disable=g-import-not-at-top
  text = templates.render(example.prompt, tokenizer)
  ids = tokenizer(text, add_special_tokens=False)["input_ids"]
  if add_bos and tokenizer.bos_token_id is not None:
    ids = [tokenizer.bos_token_id] + ids
  return ids


def stop_token_ids(tokenizer) -> Tuple[int, ...]:
  """End-of-sequence ids (``eos_token_id``, plus ``<|im_end|>``-style ids when present)."""
  ids = {tokenizer.eos_token_id}
  for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
    token_id = tokenizer.convert_tokens_to_ids(token) if token in tokenizer.get_vocab() else None
    if token_id is not None:
      ids.add(token_id)
  return tuple(sorted(i for i in ids if i is not None))


def decode_completions(tokenizer, tokens: np.ndarray, lengths: np.ndarray) -> List[str]:
  """Completion texts: the first ``lengths[b]`` tokens, special tokens (the stop token) dropped."""
  return tokenizer.batch_decode([row[:n].tolist() for row, n in zip(tokens, lengths)],
                                skip_special_tokens=True)


def _print(message: str) -> None:
  """Console output of process 0 (absl logging stays free for libraries' diagnostics)."""
  if jax.process_index() == 0:
    print(message, flush=True)


def _fmt(metrics: Dict[str, float]) -> str:
  return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def _fetch(x) -> np.ndarray:
  """A (possibly multi-host sharded) array as a full host numpy array."""
  if jax.process_count() > 1 and not x.is_fully_addressable:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


@dataclasses.dataclass
class Sampler:
  """Prompt encoding + ``generate`` with the run's sampling settings."""

  model_config: Any
  tokenizer: Any
  prompt_buckets: Sequence[int]
  max_new_tokens: int
  add_bos: bool

  def __post_init__(self):
    self.stop_ids = stop_token_ids(self.tokenizer)
    self.pad_id = self.tokenizer.pad_token_id
    if self.pad_id is None:
      self.pad_id = self.tokenizer.eos_token_id

  def prompts(self, examples: Sequence[task_lib.Example]) -> Tuple[np.ndarray, np.ndarray]:
    ids = [prompt_token_ids(self.tokenizer, e, add_bos=self.add_bos) for e in examples]
    return pad_prompts(ids, self.prompt_buckets, self.pad_id)

  def __call__(self, params, examples, rng, *, num_samples: int, temperature: float,
               top_p: Optional[float] = None, top_k: Optional[int] = None,
               return_entropy: bool = False) -> Tuple[types.Rollout, List[str]]:
    prompt_tokens, prompt_mask = self.prompts(examples)
    rollout = generate_fn(
        params, self.model_config, prompt_tokens, prompt_mask, rng,
        num_samples=num_samples, max_new_tokens=self.max_new_tokens, temperature=temperature,
        top_k=top_k, top_p=top_p, stop_token_ids=self.stop_ids, pad_token_id=self.pad_id,
        return_entropy=return_entropy)
    texts = decode_completions(self.tokenizer, _fetch(rollout.tokens), _fetch(rollout.lengths))
    return rollout, texts


def evaluate(params, sampler: Sampler, scorer: rewards_host.RewardScorer,
             examples: Sequence[task_lib.Example], rng: jax.Array, *, num_samples: int,
             temperature: float, batch_size: int, top_p: Optional[float] = None,
             greedy: bool = True) -> Dict[str, float]:
  """Held-out ``pass@1`` (mean score of ``num_samples`` samples at ``temperature``, averaged over
  prompts) and ``greedy_accuracy`` (one temperature-0 completion per prompt).

  Prompts go in fixed batches of ``batch_size`` (the last padded by repetition and the padding
  dropped), so evaluation compiles once per shape.
  """
  sampled, greedy_scores = [], []
  for start in range(0, len(examples), batch_size):
    chunk = list(examples[start:start + batch_size])
    real = len(chunk)
    chunk += [chunk[-1]] * (batch_size - real)
    key = jax.random.fold_in(rng, start)
    _, texts = sampler(params, chunk, key, num_samples=num_samples, temperature=temperature,
                       top_p=top_p)
    scores = scorer(texts, [e for e in chunk for _ in range(num_samples)]).rewards
    sampled.append(scores.reshape(batch_size, num_samples)[:real].mean(axis=1))
    if greedy:
      _, texts = sampler(params, chunk, key, num_samples=1, temperature=0.0)
      greedy_scores.append(scorer(texts, chunk).rewards[:real])
  metrics = {"pass@1": float(np.concatenate(sampled).mean())}
  if greedy:
    metrics["greedy_accuracy"] = float(np.concatenate(greedy_scores).mean())
  return metrics


def heldout_examples(source: task_lib.TaskSource, num: int, seed: int, *,
                     max_draws_per_example: int = 100) -> List[task_lib.Example]:
  """The first ``num`` *distinct* prompts of ``source.examples("test", seed)``.

  Raises:
    ValueError: the split has fewer than ``num`` distinct prompts (a finite source ran out, or
      ``max_draws_per_example * num`` draws of an infinite one found no more).
  """
  seen, out = set(), []
  if num <= 0:
    return out
  draws = itertools.islice(source.examples("test", seed), max_draws_per_example * num)
  for example in draws:
    key = json.dumps(example.prompt, sort_keys=True)
    if key not in seen:
      seen.add(key)
      out.append(example)
      if len(out) == num:
        return out
  raise ValueError(f"The test split has only {len(out)} distinct prompts; asked for {num}.")


# --- Advantages and the loss batch ---------------------------------------------------------------


def make_advantage_fn(objective) -> Callable[[types.AdvantageInputs], Tuple[jax.Array, jax.Array]]:
  """jit'd ``inputs -> (transformed rewards [P,G], token advantages [P,G,T])``."""

  def fn(inputs: types.AdvantageInputs):
    rewards = objective.reward_transform(inputs.rewards, inputs)
    inputs = dataclasses.replace(inputs, rewards=rewards)
    advantages = objective.advantage(inputs)
    if advantages.ndim == 2:
      advantages = advantages[..., None]
    return rewards, jax.lax.stop_gradient(advantages * inputs.mask)

  return jax.jit(fn)


# What the loop puts in ``AdvantageInputs`` (fields and ``extras``) for an advantage stage to read.
ADVANTAGE_INPUTS = ("rewards", "mask", "tokens", "lengths", "truncated", "token_rewards",
                    "old_logprobs", "ref_logprobs", "step")


def check_objective_inputs(objective) -> None:
  """Fails at start-up, not mid-run, when the objective's advantage stage reads an input this loop
  does not produce (ReMax's ``greedy_rewards``, LaSeR's ``self_rewards``)."""
  missing = sorted(set(getattr(objective.advantage, "reads", ())) - set(ADVANTAGE_INPUTS))
  if missing:
    raise NotImplementedError(
        f"Objective {objective.name!r} reads {missing}, which the RL loop does not produce yet "
        f"(it provides {list(ADVANTAGE_INPUTS)}); use the objective from your own loop.")


def _left_pad(x: np.ndarray, width: int, value) -> np.ndarray:
  """Left-pads the last axis of ``x`` to ``width``."""
  pad = [(0, 0)] * (x.ndim - 1) + [(width - x.shape[-1], 0)]
  return np.pad(x, pad, constant_values=value)


def _group_batch(rollout: types.Rollout, scored: rewards_host.RewardResult, num_prompts: int,
                 group_size: int, prompt_width: Optional[int], pad_id: int
                 ) -> Dict[str, np.ndarray]:
  """A round's rollout and rewards as group-major host arrays ``[P, G, ...]``.

  ``prompt_width`` left-pads prompts to one width so that rounds of dynamic sampling stack.
  """
  prompt_tokens, prompt_mask = np.asarray(rollout.prompt_tokens), np.asarray(rollout.prompt_mask)
  if prompt_width is not None:
    prompt_tokens = _left_pad(prompt_tokens, prompt_width, pad_id)
    prompt_mask = _left_pad(prompt_mask, prompt_width, False)
  flat = {
      "prompt_tokens": prompt_tokens, "prompt_mask": prompt_mask,
      "tokens": np.asarray(rollout.tokens), "logprobs": np.asarray(rollout.logprobs),
      "mask": np.asarray(rollout.mask), "lengths": np.asarray(rollout.lengths),
      "truncated": np.asarray(rollout.truncated, np.float32),
      "raw_rewards": scored.rewards, "reward_errors": scored.errors.astype(np.float32),
      "reward_timeouts": scored.timeouts.astype(np.float32),
  }
  return {k: v.reshape((num_prompts, group_size) + v.shape[1:]) for k, v in flat.items()}


def _fill_groups(kept: Dict[str, np.ndarray], filler: Dict[str, np.ndarray], num_prompts: int
                 ) -> Dict[str, np.ndarray]:
  """Pads a partial dynamic-sampling batch to ``num_prompts`` groups with masked-out groups.

  The filler groups (copies of the last round's) get a zero loss mask and zero rewards, so they
  add nothing to the loss or the gradient, and the step keeps one static shape.
  """
  have = len(kept["mask"]) if kept else 0
  if have == num_prompts:
    return kept
  need = num_prompts - have
  extra = {k: v[:need].copy() for k, v in filler.items()}
  extra["mask"][:] = 0
  extra["raw_rewards"][:] = 0
  if not kept:
    return extra
  return {k: np.concatenate([kept[k], extra[k]]) for k in kept}


def _group_metrics(rewards: np.ndarray, prefix: str = "") -> Dict[str, float]:
  """TRL-named reward statistics of ``[P, G]`` rewards."""
  return {
      f"{prefix}reward": float(rewards.mean()),
      f"{prefix}reward_std": float(rewards.std(axis=1, ddof=1).mean()) if rewards.shape[1] > 1
                             else 0.0,
      f"{prefix}frac_reward_zero_std": float((rewards.std(axis=1) == 0).mean()),
  }


def _length_metrics(lengths: np.ndarray, truncated: np.ndarray) -> Dict[str, float]:
  return {
      "completions/mean_length": float(lengths.mean()),
      "completions/min_length": float(lengths.min()),
      "completions/max_length": float(lengths.max()),
      "completions/clipped_ratio": float(truncated.mean()),
  }


def _mean_over_updates(per_update: Sequence[Dict[str, Any]]) -> Dict[str, float]:
  """Averages each metric over a step's optimizer updates (min/max names: min/max of them)."""
  out = {}
  for name in per_update[0]:
    values = np.asarray([float(m[name]) for m in per_update])
    if name.endswith("min"):
      out[name] = float(values.min())
    elif name.endswith("max"):
      out[name] = float(values.max())
    else:
      out[name] = float(values.mean())
  return out


# --- The loop ------------------------------------------------------------------------------------


def _stream(source, seed: int, position: int) -> Iterator[task_lib.Example]:
  """The training stream, positioned after ``position`` consumed examples.

  A finite source is repeated in epochs, epoch ``e`` drawn with seed ``seed + e`` (a fresh
  shuffle), so the stream is infinite and a pure function of ``(seed, position)``.
  """
  epochs = (example for epoch in itertools.count()
            for example in source.examples("train", seed + epoch))
  return itertools.islice(epochs, position, None)


def _sft_batches(sampler: Sampler, tokenizer, stream: Iterator[task_lib.Example],
                 batch_size: int, target_length: int):
  """SFT batches: prompt ids and ``answer + eos`` (or ``metadata['sft_target']``) targets."""
  from rlvr_jax.train import data_stages as data_stages_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import sft  # pylint: disable=g-import-not-at-top
  from rlvr_jax.advantages import advantage_metrics  # pylint: disable=g-import-not-at-top
  while True:
    examples = [next(stream) for _ in range(batch_size)]
    prompt_tokens, prompt_mask = sampler.prompts(examples)
    targets = []
    for e in examples:
      text = e.metadata.get("sft_target", e.answer) if e.metadata else e.answer
      targets.append(tokenizer(text, add_special_tokens=False)["input_ids"] +
                     [tokenizer.eos_token_id])
    target_tokens, target_mask = sft.pad_targets(targets, target_length, sampler.pad_id)
    yield prompt_tokens, prompt_mask, target_tokens, target_mask


def train(config: ml_collections.ConfigDict, workdir: str) -> Dict[str, Any]:
  """Runs (or resumes) the experiment described by ``config`` in ``workdir``.

  Writes ``config.json``, ``metrics.jsonl``, ``summary.json`` and ``checkpoints/``. Returns the
  summary: held-out metrics before and after RL (``before/...``, ``after/...``), steps, runtime.

  Args:
    config: the resolved experiment config (see ``experiments/configs/default.py``).
    workdir: output directory; an existing checkpoint there is resumed.
  """
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import metrics_writer  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import data_stages as data_stages_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import sft  # pylint: disable=g-import-not-at-top
  from rlvr_jax.advantages import advantage_metrics  # pylint: disable=g-import-not-at-top

  start_time = time.time()
  os.makedirs(workdir, exist_ok=True)
  rl = config.rl
  if jax.process_index() == 0:
    metrics_writer.MetricsWriter(workdir, jsonl=False, tensorboard=False).write_config(config)

  seed_key = jax.random.key(config.seed)
  init_key, sample_key, eval_key = jax.random.split(seed_key, 3)
  tokenizer = build_tokenizer(config)
  model_config, params = build_model(config, tokenizer, init_key)
  source = build_task(config)
  objective = presets.get(rl.objective, **dict(rl.get("objective_overrides", {})))
  check_objective_inputs(objective)
  mesh = mesh_lib.from_config(config.mesh)
  sampler = Sampler(model_config, tokenizer, tuple(config.data.prompt_buckets),
                    rl.max_new_tokens, bool(config.data.get("add_bos", False)))
  scorer = rewards_host.RewardScorer(config.reward.num_workers, config.reward.timeout_s,
                                     config.reward.get("failure_reward", 0.0),
                                     tuple(config.reward.get("verifier_modules", ())))
  heldout = heldout_examples(source, config.eval.num_prompts, config.eval.seed)

  def run_eval(params_) -> Dict[str, float]:
    return evaluate(params_, sampler, scorer, heldout, eval_key,
                    num_samples=config.eval.num_samples, temperature=rl.temperature,
                    top_p=rl.get("top_p"), batch_size=config.eval.batch_size,
                    greedy=config.eval.get("greedy", True))

  # Resume, or start (with the optional supervised warm-up).
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     max_to_keep=config.checkpoint.keep)
  tx, schedule = state_lib.make_optimizer(config.optimizer)
  from rlvr_jax.models import partition  # pylint: disable=g-import-not-at-top
  param_specs = partition.param_partition_specs(params, mesh)
  resume_step = ckpt.latest_step()
  extras: Dict[str, Any] = {}
  if resume_step is None:
    if config.sft.num_steps > 0:
      sft_optimizer = ml_collections.ConfigDict(config.sft.optimizer.to_dict())
      if not sft_optimizer.get("decay_steps"):
        # Decay over the whole warm-up by default (a cosine decay to 0 converges far better
        # than a constant rate in few steps).
        sft_optimizer.decay_steps = config.sft.num_steps - sft_optimizer.get("warmup_steps", 0)
      sft_tx, _ = state_lib.make_optimizer(sft_optimizer)
      sft_stream = _stream(source, config.sft.seed, 0)
      params = sft.train(
          params, tx=sft_tx,
          logprob_fn=step_lib.model_logprob_fn(model_config, temperature=1.0,
                                               chunk_size=rl.chunk_size, return_entropy=False),
          batches=_sft_batches(sampler, tokenizer, sft_stream, config.sft.batch_size,
                               rl.max_new_tokens),
          num_steps=config.sft.num_steps,
          log_fn=lambda s, m: _print(f"sft step {s}/{config.sft.num_steps}: {_fmt(m)}"),
          log_every=config.sft.get("log_every", 50))
    before = run_eval(params) if config.eval.num_prompts else {}
    if before:
      _print(f"held-out before RL: {_fmt(before)}")
    extras = {"data_position": 0, "before": before}
  state, shardings = state_lib.init_sharded(params, tx, param_specs, mesh,
                                            with_reference=objective.needs_reference)
  if resume_step is not None:
    state, extras = ckpt.restore(resume_step,
                                 abstract_state=checkpoint_lib.abstract_state(state, shardings))
    _print(f"resumed from step {resume_step}")
  start_step = int(resume_step or 0)
  data_position = int(extras.get("data_position", 0))
  writer = metrics_writer.MetricsWriter(workdir, enabled=jax.process_index() == 0)
  writer.truncate_after(start_step)
  progress = metrics_writer.ProgressBar(rl.num_steps, initial=start_step,
                                        keys=("reward", "loss"), every=config.log_every)

  # The jit'd pieces.
  group_size = rl.num_samples
  logprob_fn = step_lib.model_logprob_fn(model_config, temperature=rl.temperature,
                                         chunk_size=rl.chunk_size, return_entropy=True)
  update_fn = step_lib.make_update_fn(
      objective, tx, logprob_fn, num_micro_batches=rl.num_micro_batches,
      group_size=group_size if objective.whole_groups else None, schedule=schedule)
  batch_sharding = mesh_lib.batch_sharding(mesh)
  update = step_lib.jit_update(update_fn, shardings, batch_sharding)
  score = jax.jit(step_lib.make_score_fn(
      step_lib.model_logprob_fn(model_config, temperature=rl.temperature,
                                chunk_size=rl.chunk_size, return_entropy=False),
      rl.num_micro_batches))
  advantage_fn = make_advantage_fn(objective)
  stream = _stream(source, config.seed, data_position)
  num_prompts = rl.num_prompts
  mini_prompts = num_prompts // rl.num_mini_batches
  if mini_prompts * rl.num_mini_batches != num_prompts:
    raise ValueError("rl.num_prompts must be a multiple of rl.num_mini_batches.")

  dynamic = config.rl.get("dynamic_sampling", {}) or {}
  max_bucket = max(config.data.prompt_buckets)

  def collect(step: int, position: int):
    """Generation rounds of one step: ``(group batch [P, G, ...], all rounds' raw rewards,
    texts, new data position, rounds, kept groups)``."""
    state = data_stages_lib.DynamicSamplingState()
    all_rewards, all_groups = [], []
    for round_index in itertools.count():
      examples = [next(stream) for _ in range(num_prompts)]
      position += num_prompts
      key = jax.random.fold_in(jax.random.fold_in(sample_key, step), round_index)
      rollout, texts = sampler(state_params[0], examples, key, num_samples=group_size,
                               temperature=rl.temperature, top_p=rl.get("top_p"),
                               top_k=rl.get("top_k"))
      rollout = jax.tree.map(_fetch, rollout)
      t_reward = time.time()
      scored = scorer(texts, [e for e in examples for _ in range(group_size)])
      timing["reward"] += time.time() - t_reward
      group = _group_batch(rollout, scored, num_prompts, group_size,
                           max_bucket if dynamic.get("enabled") else None, sampler.pad_id)
      all_rewards.append(group["raw_rewards"])
      all_groups.append(group)
      if not dynamic.get("enabled"):
        return group, all_groups, position, 1, num_prompts
      state = data_stages_lib.filter_and_accumulate(state, group, group["raw_rewards"])
      if state.done(num_prompts, int(dynamic.get("max_rounds", 0))):
        break
    kept = data_stages_lib.take_batch(state, num_prompts, allow_partial=True)
    return (_fill_groups(kept, all_groups[-1], num_prompts), all_groups, position,
            state.num_rounds, min(state.num_kept, num_prompts))

  state_params = [None]
  timing = {"reward": 0.0}
  for step in range(start_step, rl.num_steps):
    t0 = time.time()
    timing["reward"] = 0.0
    state_params[0] = state.params
    group, rounds, data_position, num_rounds, num_kept = collect(step, data_position)
    t1 = time.time()

    flat = {k: v.reshape((num_prompts * group_size,) + v.shape[2:]) for k, v in group.items()}
    t = flat["tokens"].shape[1]
    mask = flat["mask"]
    if rl.get("overlong_filter"):
      mask = data_stages_lib.overlong_filter(mask, flat["truncated"])
    # Old and reference log-probs come before the advantages: KL-in-reward estimators (RLOO,
    # REINFORCE++) read them there.
    args = (flat["prompt_tokens"], flat["prompt_mask"], flat["tokens"], mask)
    if rl.recompute_old_logprobs:
      old_logprobs = _fetch(score(state.params, *args)[0])
    else:
      old_logprobs = flat["logprobs"]
    if objective.needs_reference:
      ref_logprobs = _fetch(score(state.ref_params, *args)[0])
    else:
      ref_logprobs = np.zeros_like(mask)
    per_group = lambda x: jnp.asarray(x, jnp.float32).reshape((num_prompts, group_size, t))
    inputs = types.AdvantageInputs(
        rewards=jnp.asarray(group["raw_rewards"]), mask=jnp.asarray(group["mask"]),
        tokens=jnp.asarray(group["tokens"]), lengths=jnp.asarray(group["lengths"]),
        truncated=jnp.asarray(group["truncated"]),
        token_rewards=jnp.zeros((num_prompts, group_size, t), jnp.float32),
        extras={"old_logprobs": per_group(old_logprobs), "ref_logprobs": per_group(ref_logprobs),
                "step": jnp.asarray(step, jnp.int32)})
    rewards, advantages = advantage_fn(inputs)
    full = step_lib.TrainBatch(
        prompt_tokens=flat["prompt_tokens"], prompt_mask=flat["prompt_mask"],
        completion_tokens=flat["tokens"],
        loss=types.LossBatch(
            mask=mask.astype(np.float32),
            advantages=np.asarray(advantages, np.float32).reshape(mask.shape),
            old_logprobs=np.asarray(old_logprobs, np.float32),
            ref_logprobs=np.asarray(ref_logprobs, np.float32),
            rollout_logprobs=flat["logprobs"].astype(np.float32),
            rewards=np.asarray(rewards, np.float32).reshape(-1),
            correct=(flat["raw_rewards"] >= 1.0).astype(np.float32),
            group_ids=np.repeat(np.arange(num_prompts, dtype=np.int32), group_size),
            truncated=flat["truncated"].astype(np.float32)))
    t2 = time.time()

    # num_iterations passes over shuffled mini-batches of whole groups.
    order_rng = np.random.default_rng([config.seed, step])
    update_metrics: List[Dict[str, Any]] = []
    for _ in range(rl.num_iterations):
      groups = order_rng.permutation(num_prompts)
      for i in range(rl.num_mini_batches):
        rows = (groups[i * mini_prompts:(i + 1) * mini_prompts, None] * group_size
                + np.arange(group_size)[None]).reshape(-1)
        mini = jax.tree.map(lambda x: x[rows], full)
        # Every process holds the whole (identical) batch; each contributes its block of rows.
        state, m = update(state, mesh_lib.host_local_to_global(mesh_lib.process_rows(mini), mesh))
        update_metrics.append(m)
    if rl.get("ref_refresh_steps", 0) and (step + 1) % rl.ref_refresh_steps == 0:
      state = state.replace(ref_params=jax.tree.map(jnp.copy, state.params))
    update_metrics = jax.device_get(update_metrics)
    t3 = time.time()

    metrics = _mean_over_updates(update_metrics)
    generated = {k: np.concatenate([r[k] for r in rounds]) for k in
                 ("raw_rewards", "lengths", "truncated")}
    metrics.update(_group_metrics(generated["raw_rewards"]))
    metrics["rewards/verifier/mean"] = float(generated["raw_rewards"].mean())
    metrics["rewards/verifier/std"] = float(generated["raw_rewards"].std())
    metrics["reward_errors"] = float(sum(r["reward_errors"].sum() for r in rounds))
    metrics["reward_timeouts"] = float(sum(r["reward_timeouts"].sum() for r in rounds))
    metrics.update(_length_metrics(generated["lengths"], generated["truncated"]))
    metrics.update({k: float(v) for k, v in advantage_metrics(
        rewards, advantages, group["mask"]).items() if k.startswith("advantages/")})
    num_generated = float(generated["lengths"].sum())
    metrics.update({
        "time/rollout": t1 - t0 - timing["reward"], "time/reward": timing["reward"],
        "time/advantage": t2 - t1, "time/update": t3 - t2,
        "tokens/generated_per_s": num_generated / max(t1 - t0 - timing["reward"], 1e-9),
        "tokens/trained_per_s": rl.num_iterations * float(mask.sum()) / max(t3 - t2, 1e-9),
        "num_tokens": num_generated, "data_position": float(data_position),
    })
    if dynamic.get("enabled"):
      metrics["dynamic_sampling/rounds"] = float(num_rounds)
      metrics["dynamic_sampling/kept_groups"] = float(num_kept)
    if config.eval.every and (step + 1) % config.eval.every == 0 and step + 1 < rl.num_steps:
      metrics.update({f"eval/{k}": v for k, v in run_eval(state.params).items()})
    writer.write(step + 1, metrics)
    if jax.process_index() == 0:
      progress.update(step + 1, metrics)
    if config.checkpoint.every and ((step + 1) % config.checkpoint.every == 0
                                    or step + 1 == rl.num_steps):
      ckpt.save(step + 1, state, {"data_position": data_position,
                                  "before": extras.get("before", {}),
                                  "config": checkpoint_lib.to_jsonable(config)})

  after = run_eval(state.params) if config.eval.num_prompts else {}
  ckpt.close()
  scorer.close()
  writer.close()
  before = extras.get("before", {})
  summary = {
      "steps": int(rl.num_steps),
      "runtime_s": time.time() - start_time,
      **{f"before/{k}": v for k, v in before.items()},
      **{f"after/{k}": v for k, v in after.items()},
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2, sort_keys=True)
  return summary


def format_summary(summary: Dict[str, Any]) -> str:
  """Human-readable before/after lines of a :func:`train` summary."""
  lines = [f"RL steps: {summary['steps']}, runtime {summary['runtime_s']:.0f}s"]
  for key in ("pass@1", "greedy_accuracy"):
    if f"before/{key}" in summary:
      before, after = summary[f"before/{key}"], summary[f"after/{key}"]
      lines.append(f"held-out {key}: before RL {100 * before:.1f}%  after RL {100 * after:.1f}%  "
                   f"({100 * (after - before):+.1f} points)")
  return "\n".join(lines)
