"""The RL loop: prompts → rollouts → rewards → data stages → advantages → updates → eval → checkpoint.

One step of :func:`train` (all config fields under ``config.rl`` unless named):

1. take ``num_prompts`` examples ``P`` from the task's ``"train"`` stream (its position is saved
   in checkpoints, so a resumed run continues with the same examples);
2. render and tokenise the prompts (chat template when the prompt is chat messages), left-pad to a
   bucket, and ``generate`` ``num_samples`` ``G`` completions each (jit; PRNG key
   ``fold_in(seed_key, step)``, so a step's samples depend only on the seed, step and params);
3. decode and score every completion on the host (:class:`RewardScorer`: worker processes, a
   per-completion timeout; a failure costs one reward);
4. data stages (host functions of ``data_stages``, each on when its ``config.rl`` dict is
   non-empty): DAPO dynamic sampling (``dynamic_sampling``), DARS extra rollouts and keep-mask
   (``dars``), Scaf-GRPO hinted replacement (``scaf``), ViSurf ground-truth injection
   (``visurf``), overlong filtering (``overlong_filter``); LaSeR's ``z_c`` token after each
   finished response when the objective reads ``self_rewards``;
5. old log-probs from the sampler, or recomputed with the current params
   (``recompute_old_logprobs``; always for ViSurf's injected sample); reference log-probs only when
   ``objective.needs_reference``; ReMax's greedy rewards (one greedy rollout per prompt) and LaSeR's
   self-rewards (``z_c``'s old-policy log-prob) when the objective reads them;
6. the objective's reward transform and advantage estimator (jit) on ``[P, W]`` groups;
7. ``num_iterations`` passes, each over ``num_mini_batches`` shuffled mini-batches of whole groups,
   one optimizer step per mini-batch (:mod:`rlvr_jax.train.step`, micro-batched);
8. metrics (TRL names where they exist; ``dars/``, ``scaf/``, ``visurf/``, ``remax/``, ``laser/``
   per stage), periodic held-out evaluation and checkpoints.

Static shapes: the update sees ``P·W`` rows of ``T`` tokens every step, ``W = n_max`` with DARS
(padding slots masked), ``G + 1`` with ViSurf, else ``G``; ``T`` gains one column for LaSeR's
``z_c``. Stage generations (DARS's extra samples, Scaf-GRPO's hinted ones) draw one sample per
request in chunks of ``P·G`` prompts, the main generation's row count (one more compilation per
prompt bucket). With DARS the advantage stage runs once per distinct group size (groups padded by
repetition to ``P``), so it compiles once per size, not per step. See ``docs/training.md``.

Held-out evaluation (:func:`evaluate`): on ``eval.num_prompts`` distinct ``"test"`` prompts (never in
the training stream, see :mod:`rlvr_jax.data.procedural`), ``pass@1`` is the mean verifier score of
``eval.num_samples`` completions per prompt sampled at the training temperature (the unbiased
pass@1 estimate, averaged over prompts), and ``greedy_accuracy`` the score of one greedy completion.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
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


# The policy after the supervised warm-up, written to the workdir (``config.sft.init_from`` of
# another run can start from it).
WARMUP_PARAMS_FILE = "warmup_params.msgpack"


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

  ``config.model.dtype``/``param_dtype`` set the compute/parameter dtypes,
  ``config.model.attention`` the training attention kernel (``"einsum"`` or ``"flash"``) and
  ``config.remat`` (``"full"``, or ``"dots"`` to keep matmul outputs) rematerialises each decoder
  block. A random preset takes ``config.model.overrides``
  and its vocabulary size from the tokenizer (rounded up to a multiple of 8).
  """
  from rlvr_jax.models import config as model_config_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.models import transformer  # pylint: disable=g-import-not-at-top
  remat = config.get("remat", "none")
  if remat not in ("none", "full", "dots"):
    raise ValueError(f"config.remat must be 'none', 'full' or 'dots', got {remat!r}")
  dtypes = dict(dtype=config.model.get("dtype", "float32"),
                param_dtype=config.model.get("param_dtype", "float32"),
                remat=remat != "none", remat_policy="dots" if remat == "dots" else "nothing",
                attention=config.model.get("attention", "einsum"))
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


# What the loop puts in ``AdvantageInputs`` (fields and ``extras``) for an advantage stage to read:
# ``greedy_rewards`` [P] (ReMax) and ``self_rewards`` [P, G] (LaSeR) only for objectives that read
# them, since each costs a generation or a forward pass.
ADVANTAGE_INPUTS = ("rewards", "mask", "tokens", "lengths", "truncated", "token_rewards",
                    "old_logprobs", "ref_logprobs", "step", "greedy_rewards", "self_rewards")


# What the loss can read: the ``LossBatch`` fields, the policy's ``logprobs`` and ``entropy``, the
# (weighted) ``advantages``, and LaSeR's ``extras`` (when the advantage stage reads
# ``self_rewards``).
LOSS_INPUTS = tuple(f.name for f in dataclasses.fields(types.LossBatch) if f.name != "extras") + (
    "logprobs", "entropy", "advantages", "selfreward_position", "selfreward_weights")


def check_objective_inputs(objective) -> None:
  """Fails at start-up, not mid-run, when the objective's advantage stage or loss reads an input
  this loop does not produce (THR's ``thr`` token rewards; a user objective's own ``extras``)."""
  missing_adv = set(getattr(objective.advantage, "reads", ())) - set(ADVANTAGE_INPUTS)
  missing_loss = set(getattr(getattr(objective, "loss", None), "reads", ())) - set(LOSS_INPUTS)
  if missing_adv or missing_loss:
    raise NotImplementedError(
        f"Objective {objective.name!r} reads {sorted(missing_adv | missing_loss)}, which the RL "
        f"loop does not produce (advantage inputs {list(ADVANTAGE_INPUTS)}, loss inputs "
        f"{list(LOSS_INPUTS)}); use the objective from your own loop.")


def _reads(objective, name: str) -> bool:
  return name in set(getattr(objective.advantage, "reads", ()))


def _stage_dict(rl: ml_collections.ConfigDict, name: str) -> Dict[str, Any]:
  """``config.rl.<name>`` as a dict; absent, empty or ``enabled=False`` is ``{}`` (off)."""
  value = rl.get(name, None) or {}
  value = value.to_dict() if isinstance(value, ml_collections.ConfigDict) else dict(value)
  if not value or value.pop("enabled", True) is False:
    return {}
  return dict(value, enabled=True)


def _with_defaults(name: str, given: Dict[str, Any], defaults: Dict[str, Any]) -> Dict[str, Any]:
  given = {k: v for k, v in given.items() if k != "enabled"}
  unknown = sorted(set(given) - set(defaults))
  if unknown:
    raise ValueError(f"config.rl.{name} has unknown keys {unknown}; known: {sorted(defaults)}.")
  return {**defaults, **given}


@dataclasses.dataclass(frozen=True)
class StageSettings:
  """The data stages a run uses, with their defaults filled in (see ``docs/training.md``).

  Attributes:
    dars: DARS settings (``schedule``, ``n_max``, ``use_std``, ``upper``) or None.
    scaf: Scaf-GRPO settings (``warmup_steps``, ``parts_per_tier``) or None.
    visurf: ViSurf settings (no keys yet; ``{}`` when on) or None.
    greedy: ReMax's greedy rollout per prompt (the objective reads ``greedy_rewards``).
    laser: LaSeR settings (``token_id``, ``beta_v``, ``c_ref``, ``temperature``) or None.
    group_width: samples per group in the update batch: ``n_max`` (DARS), ``G + 1`` (ViSurf)
      or ``G``.
  """

  dars: Optional[Dict[str, Any]]
  scaf: Optional[Dict[str, Any]]
  visurf: Optional[Dict[str, Any]]
  greedy: bool
  laser: Optional[Dict[str, Any]]
  group_width: int


def self_reward_token_id(tokenizer, token: Any = None) -> int:
  """LaSeR's ``z_c`` id: ``token`` (an id or a token string) if given, else the first of Qwen's
  ``<|vision_start|>`` (151652, the official choice), Llama-3's ``<|reserved_special_token_0|>``
  (128002) and the tokenizer's ``unk_token`` found in the vocabulary."""
  if isinstance(token, int):
    return token
  vocab = tokenizer.get_vocab()
  candidates = [token] if token else ["<|vision_start|>", "<|reserved_special_token_0|>",
                                      tokenizer.unk_token]
  for candidate in candidates:
    if candidate is not None and candidate in vocab:
      return int(vocab[candidate])
  raise ValueError(f"No self-reward token among {candidates} in the vocabulary; set "
                   "config.rl.laser.token to a rarely used token (string or id).")


def resolve_stages(config: ml_collections.ConfigDict, objective, tokenizer) -> StageSettings:
  """Reads ``config.rl.{dars,scaf,visurf,laser}`` and the objective's inputs; checks combinations.

  Raises:
    ValueError: unknown keys, or stages that cannot be combined (DARS changes group sizes, so it
      excludes dynamic sampling, Scaf-GRPO and ViSurf).
  """
  rl = config.rl
  group_size = rl.num_samples
  dars = _stage_dict(rl, "dars")
  if dars:
    schedule = dars.get("schedule", "ET")
    dars = _with_defaults("dars", dars, dict(
        schedule=schedule, n_max=(4 if schedule == "ET" else 8) * group_size, use_std=False,
        upper=1.0))
    if dars["n_max"] < group_size:
      raise ValueError(f"config.rl.dars.n_max ({dars['n_max']}) must be >= num_samples.")
  scaf = _stage_dict(rl, "scaf")
  scaf = _with_defaults("scaf", scaf, dict(warmup_steps=50, parts_per_tier=4)) if scaf else None
  visurf = _stage_dict(rl, "visurf")
  visurf = _with_defaults("visurf", visurf, {}) if visurf else None
  dynamic = (rl.get("dynamic_sampling", {}) or {}).get("enabled")
  if dars and (scaf or visurf is not None or dynamic):
    raise ValueError("DARS cannot be combined with dynamic sampling, Scaf-GRPO or ViSurf: it "
                     "changes the group sizes they rely on.")
  laser = None
  if _reads(objective, "self_rewards"):
    from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
    given = _stage_dict(rl, "laser")
    params = {k: v.default for k, v in inspect.signature(presets.laser).parameters.items()
              if k in ("beta_v", "c_ref", "temperature")}
    if rl.objective == "laser":
      overlap = sorted(set(given) & set(params))
      if overlap:
        raise ValueError(f"Set {overlap} in config.rl.objective_overrides (the laser preset's "
                         "loss reads them there), not in config.rl.laser.")
      params.update({k: v for k, v in dict(rl.get("objective_overrides", {})).items()
                     if k in params})
    laser = _with_defaults("laser", given, {**params, "token": None})
    if laser["temperature"] != rl.temperature:
      raise ValueError(f"LaSeR's temperature ({laser['temperature']}) must equal "
                       f"config.rl.temperature ({rl.temperature}): it undoes the log-probs' "
                       "temperature scaling.")
    laser["token_id"] = self_reward_token_id(tokenizer, laser.pop("token"))
  width = dars["n_max"] if dars else group_size + (1 if visurf is not None else 0)
  return StageSettings(dars=dars or None, scaf=scaf, visurf=visurf,
                       greedy=_reads(objective, "greedy_rewards"), laser=laser,
                       group_width=width)


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
      # ``Rollout.mask`` in numpy: jnp here would compile per row count (stage chunks vary).
      "mask": (np.arange(np.shape(rollout.tokens)[1])[None]
               < np.asarray(rollout.lengths)[:, None]).astype(np.float32),
      "lengths": np.asarray(rollout.lengths),
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


# Offset of the PRNG streams of stage generations (DARS 0, Scaf-GRPO 1, ReMax greedy 2) from
# those of the dynamic-sampling rounds (0, 1, ...), which it never reaches.
_STAGE_STREAM = 1 << 20


def _with_stage_keys(group: Dict[str, np.ndarray], ids: Sequence[int]) -> Dict[str, np.ndarray]:
  """Adds the per-sample keys the data stages read and write, ``[P, G]`` each: ``example_id``
  (index into the step's examples), ``valid`` (False on DARS padding), ``hint_level`` (Scaf-GRPO,
  0 = none) and ``is_injected`` (ViSurf)."""
  p, g = group["raw_rewards"].shape
  ids = np.asarray(ids, np.int64)
  return {**group, "example_id": np.repeat(ids[:, None], g, axis=1),
          "valid": np.ones((p, g), bool), "hint_level": np.zeros((p, g), np.int32),
          "is_injected": np.zeros((p, g), bool)}


def score_all_positions(fn: step_lib.LogprobFn) -> step_lib.LogprobFn:
  """A log-prob function that scores every completion position whatever mask it is given.

  Log-probs are causal, so the values at real positions do not change; the loss still applies its
  own mask. For terms that read a position outside the loss mask (LaSeR's ``z_c``).
  """

  def wrapped(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
    return fn(params, prompt_tokens, prompt_mask, completion_tokens,
              jnp.ones_like(completion_mask))

  return wrapped


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


def train(config: ml_collections.ConfigDict, workdir: str, *,
          batch_callback: Optional[Callable[[int, Dict[str, Any]], None]] = None
          ) -> Dict[str, Any]:
  """Runs (or resumes) the experiment described by ``config`` in ``workdir``.

  Writes ``config.json``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/`` and, after a
  supervised warm-up, ``warmup_params.msgpack`` (see ``config.sft.init_from``). Returns the
  summary: held-out metrics before and after RL (``before/...``, ``after/...``), steps, runtime.

  Args:
    config: the resolved experiment config (see ``experiments/configs/default.py``).
    workdir: output directory; an existing checkpoint there is resumed.
    batch_callback: optional ``fn(step, batch)``, called on process 0 and the others alike with
      each step's assembled host batch before the updates (for tests and debugging):
      ``group`` (the group-major host arrays ``[P, W, ...]`` after the data stages),
      ``batch`` (the :class:`~rlvr_jax.train.step.TrainBatch` of ``P·W`` rows),
      ``advantage_inputs`` (the :class:`~rlvr_jax.types.AdvantageInputs`) and ``examples`` (the
      step's examples, indexed by ``group['example_id']``) and ``params`` (those the step
      sampled and scored with; the update donates their buffers, so use them inside the call).
  """
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import metrics_writer  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import data_stages as data_stages_lib  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import sft  # pylint: disable=g-import-not-at-top
  from rlvr_jax.advantages import advantage_metrics  # pylint: disable=g-import-not-at-top
  from rlvr_jax.objectives import regularizers  # pylint: disable=g-import-not-at-top

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
    init_from = config.sft.get("init_from", "")
    if init_from:  # a saved warm-up (e.g. another run's warmup_params.msgpack): no SFT here
      params = checkpoint_lib.load_params(init_from, params)
      _print(f"initial policy read from {init_from}")
    elif config.sft.num_steps > 0:
      sft_optimizer = ml_collections.ConfigDict(config.sft.optimizer.to_dict())
      if not sft_optimizer.get("decay_steps"):
        # Decay over the whole warm-up by default (a cosine decay to 0 converges far better
        # than a constant rate in few steps).
        sft_optimizer.decay_steps = config.sft.num_steps - sft_optimizer.get("warmup_steps", 0)
      sft_tx, _ = state_lib.make_optimizer(sft_optimizer)
      sft_stream = _stream(source, config.sft.seed, 0)
      sft_steps = [config.sft.num_steps]
      stop_fn = None
      target = config.sft.get("target_pass_at_1", 0.0)
      if target:
        # Stop the warm-up once the policy solves ``target`` of a probe of *training* prompts
        # (sampled as in RL): the step at which a tiny model learns its task varies a lot with
        # the seed, the accuracy reached much less. The probe batches have the held-out
        # evaluation's shapes, so they compile once for both.
        probe = list(itertools.islice(source.examples("train", config.sft.get("probe_seed", 1)),
                                      config.sft.get("probe_prompts", 100)))

        def stop_fn(step, params_):
          probe_metrics = evaluate(
              params_, sampler, scorer, probe, jax.random.fold_in(eval_key, step),
              num_samples=config.eval.num_samples, temperature=rl.temperature,
              top_p=rl.get("top_p"), batch_size=config.eval.batch_size, greedy=False)
          _print(f"sft step {step}: probe pass@1 {probe_metrics['pass@1']:.3f} "
                 f"(stop at {target})")
          reached = probe_metrics["pass@1"] >= target
          if reached:  # otherwise the warm-up goes on, possibly to all num_steps
            sft_steps[0] = step
          return reached

      params = sft.train(
          params, tx=sft_tx,
          logprob_fn=step_lib.model_logprob_fn(model_config, temperature=1.0,
                                               chunk_size=rl.chunk_size, return_entropy=False),
          batches=_sft_batches(sampler, tokenizer, sft_stream, config.sft.batch_size,
                               rl.max_new_tokens),
          num_steps=config.sft.num_steps,
          log_fn=lambda s, m: _print(f"sft step {s}/{config.sft.num_steps}: {_fmt(m)}"),
          log_every=config.sft.get("log_every", 50),
          stop_fn=stop_fn, stop_every=config.sft.get("check_every", 50))
      if jax.process_index() == 0:
        checkpoint_lib.save_params(os.path.join(workdir, WARMUP_PARAMS_FILE), params)
    before = run_eval(params) if config.eval.num_prompts else {}
    if config.sft.num_steps > 0 and not init_from:
      before["sft_steps"] = sft_steps[0]
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

  # The jit'd pieces. Every stage keeps the update's shapes static: groups of ``width`` samples
  # (DARS pads to n_max with masked slots) and ``t`` completion columns (+1 for LaSeR's z_c).
  group_size = rl.num_samples
  stages = resolve_stages(config, objective, tokenizer)
  width = stages.group_width
  logprob_fn = step_lib.model_logprob_fn(model_config, temperature=rl.temperature,
                                         chunk_size=rl.chunk_size, return_entropy=True)
  if stages.laser:
    # The LaSeR loss reads the log-prob of z_c, which sits outside the loss mask.
    logprob_fn = score_all_positions(logprob_fn)
  update_fn = step_lib.make_update_fn(
      objective, tx, logprob_fn, num_micro_batches=rl.num_micro_batches,
      group_size=width if objective.whole_groups else None, schedule=schedule)
  batch_sharding = mesh_lib.batch_sharding(mesh)
  update = step_lib.jit_update(update_fn, shardings, batch_sharding)
  score_logprob_fn = step_lib.model_logprob_fn(model_config, temperature=rl.temperature,
                                               chunk_size=rl.chunk_size, return_entropy=False)
  score = jax.jit(step_lib.make_score_fn(score_logprob_fn, rl.num_micro_batches))
  score_all = (jax.jit(step_lib.make_score_fn(score_all_positions(score_logprob_fn),
                                              rl.num_micro_batches))
               if stages.laser else None)
  advantage_fn = make_advantage_fn(objective)
  stream = _stream(source, config.seed, data_position)
  num_prompts = rl.num_prompts
  mini_prompts = num_prompts // rl.num_mini_batches
  if mini_prompts * rl.num_mini_batches != num_prompts:
    raise ValueError("rl.num_prompts must be a multiple of rl.num_mini_batches.")
  if (mini_prompts * width) % mesh_lib.batch_divisor(mesh):
    raise ValueError(
        f"A mini-batch of {mini_prompts} groups x {width} samples does not divide over the "
        f"{mesh_lib.batch_divisor(mesh)} batch shards of the mesh; change rl.num_prompts or "
        "rl.num_mini_batches (ViSurf's groups have num_samples + 1 samples, DARS's n_max).")

  dynamic = config.rl.get("dynamic_sampling", {}) or {}
  max_bucket = max(config.data.prompt_buckets)
  # Stages that stack groups from several generations pad every prompt to the largest bucket.
  prompt_width = (max_bucket if dynamic.get("enabled") or stages.dars or stages.scaf else None)

  def single_samples(step: int, examples: Sequence[task_lib.Example], ids: Sequence[int],
                     stream_id: int) -> Dict[str, np.ndarray]:
    """One scored sample per example, ``[len(examples), 1, ...]``, generated in chunks of
    ``P·G`` prompts (the last padded by repetition): the main generation's row count, so the
    memory is the same and it compiles once per run."""
    chunk_size = num_prompts * group_size
    chunks = []
    for c, start in enumerate(range(0, len(examples), chunk_size)):
      chunk = list(examples[start:start + chunk_size])
      real = len(chunk)
      chunk += [chunk[-1]] * (chunk_size - real)
      key = jax.random.fold_in(
          jax.random.fold_in(jax.random.fold_in(sample_key, step), _STAGE_STREAM + stream_id), c)
      rollout, texts = sampler(state_params[0], chunk, key, num_samples=1,
                               temperature=rl.temperature, top_p=rl.get("top_p"),
                               top_k=rl.get("top_k"))
      rollout = jax.tree.map(lambda x: _fetch(x)[:real], rollout)
      t_reward = time.time()
      scored = scorer(texts[:real], chunk[:real])
      timing["reward"] += time.time() - t_reward
      chunks.append(_with_stage_keys(
          _group_batch(rollout, scored, real, 1, prompt_width, sampler.pad_id),
          ids[start:start + real]))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

  def collect(step: int, position: int):
    """Generation rounds of one step: ``(group batch [P, G, ...], all rounds' groups, the step's
    examples (indexed by ``example_id``), new data position, rounds, kept groups)``."""
    state = data_stages_lib.DynamicSamplingState()
    all_groups, examples_seen = [], []
    for round_index in itertools.count():
      examples = [next(stream) for _ in range(num_prompts)]
      ids = range(len(examples_seen), len(examples_seen) + num_prompts)
      examples_seen += examples
      position += num_prompts
      key = jax.random.fold_in(jax.random.fold_in(sample_key, step), round_index)
      rollout, texts = sampler(state_params[0], examples, key, num_samples=group_size,
                               temperature=rl.temperature, top_p=rl.get("top_p"),
                               top_k=rl.get("top_k"))
      rollout = jax.tree.map(_fetch, rollout)
      t_reward = time.time()
      scored = scorer(texts, [e for e in examples for _ in range(group_size)])
      timing["reward"] += time.time() - t_reward
      group = _with_stage_keys(
          _group_batch(rollout, scored, num_prompts, group_size, prompt_width, sampler.pad_id),
          ids)
      all_groups.append(group)
      if not dynamic.get("enabled"):
        return group, all_groups, examples_seen, position, 1, num_prompts
      state = data_stages_lib.filter_and_accumulate(state, group, group["raw_rewards"])
      if state.done(num_prompts, int(dynamic.get("max_rounds", 0))):
        break
    kept = data_stages_lib.take_batch(state, num_prompts, allow_partial=True)
    return (_fill_groups(kept, all_groups[-1], num_prompts), all_groups, examples_seen, position,
            state.num_rounds, min(state.num_kept, num_prompts))

  def run_dars(step, group, examples):
    """DARS: extra rollouts for hard prompts, groups padded to ``n_max``, keep-mask."""
    settings = stages.dars
    accuracy = (group["raw_rewards"] >= 1.0).mean(axis=1)
    extra_n = data_stages_lib.dars_extra_rollouts(
        accuracy, group_size, settings["n_max"], schedule=settings["schedule"],
        use_std=settings["use_std"])
    owner = np.repeat(np.arange(num_prompts), extra_n)
    if len(owner):
      ids = group["example_id"][owner, 0]
      extra = single_samples(step, [examples[i] for i in ids], ids, 0)
      extra = {k: v[:, 0] for k, v in extra.items()}
    else:
      extra = {k: v[:0, 0] for k, v in group.items()}
    merged = data_stages_lib.dars_merge(group, extra, owner, settings["n_max"])
    valid = merged["valid"]
    correct = (merged["raw_rewards"] >= 1.0) & valid
    combined = correct.sum(axis=1) / valid.sum(axis=1)
    keep = data_stages_lib.dars_keep_mask(combined, settings["upper"])
    merged["mask"] = merged["mask"] * keep[:, None, None]
    metrics = {"dars/extra_rollouts": float(extra_n.sum()),
               "dars/hard_prompts": float((extra_n > 0).sum()),
               "dars/mean_group_size": float(valid.sum(axis=1).mean()),
               "dars/kept_groups": float(keep.sum()),
               "dars/accuracy_before": float(accuracy.mean()),
               "dars/accuracy_after": float(combined.mean())}
    return merged, metrics

  def run_scaf(step, group, examples):
    """Scaf-GRPO: all-zero groups after the warm-up get hinted re-rollouts; the minimal solving
    hint level replaces sample 0."""
    settings = stages.scaf
    hard = data_stages_lib.scaf_hint_groups(group["raw_rewards"], step + 1,
                                            warmup_steps=settings["warmup_steps"])
    hard &= group["mask"].sum(axis=(1, 2)) > 0  # not a masked filler group
    requests = []  # (group index, level, hinted example)
    no_hints = too_long = 0
    for p in np.flatnonzero(hard):
      example = examples[group["example_id"][p, 0]]
      hints = data_stages_lib.procedural_hints(example)
      if hints is None:
        no_hints += 1
        continue
      for level, hinted in data_stages_lib.scaf_hinted_examples(
          example, hints, parts_per_tier=settings["parts_per_tier"]):
        if len(prompt_token_ids(tokenizer, hinted, add_bos=sampler.add_bos)) > max_bucket:
          too_long += 1
          continue
        requests.append((p, level, hinted))
    replaced, levels = 0, []
    if requests:
      # One sample per hint level, as the reference code (it regenerates one row per level).
      hinted = single_samples(step, [r[2] for r in requests],
                              [group["example_id"][r[0], 0] for r in requests], 1)
      hinted = {k: v[:, 0] for k, v in hinted.items()}
      owners = np.array([r[0] for r in requests])
      request_levels = np.array([r[1] for r in requests])
      group = {k: v.copy() for k, v in group.items()}
      for p in np.unique(owners):
        rows = np.flatnonzero(owners == p)
        best = data_stages_lib.scaf_select(request_levels[rows], hinted["raw_rewards"][rows])
        if best < 0:
          continue
        replacement = {k: v[rows[best]] for k, v in hinted.items()}
        replacement["hint_level"] = np.asarray(request_levels[rows[best]], np.int32)
        new = data_stages_lib.scaf_replace({k: v[p] for k, v in group.items()}, replacement)
        for k in group:
          group[k][p] = new[k]
        replaced += 1
        levels.append(request_levels[rows[best]])
    metrics = {"scaf/hard_groups": float(hard.sum()), "scaf/replaced": float(replaced),
               "scaf/no_hints": float(no_hints), "scaf/hints_too_long": float(too_long),
               "scaf/mean_level": float(np.mean(levels)) if levels else 0.0}
    return group, metrics

  def run_visurf(group, examples):
    """ViSurf: the ground-truth completion as sample ``G+1`` of every group, scored."""
    group_examples = [examples[i] for i in group["example_id"][:, 0]]
    ids = [tokenizer(data_stages_lib.gold_completion(e), add_special_tokens=False)["input_ids"]
           + [tokenizer.eos_token_id] for e in group_examples]
    gold = data_stages_lib.completion_arrays(ids, group["tokens"].shape[2], sampler.pad_id)
    texts = decode_completions(tokenizer, gold["tokens"], gold["lengths"])
    t_reward = time.time()
    scored = scorer(texts, group_examples)
    timing["reward"] += time.time() - t_reward
    reference = {
        "prompt_tokens": group["prompt_tokens"][:, 0], "prompt_mask": group["prompt_mask"][:, 0],
        "tokens": gold["tokens"], "mask": gold["mask"], "lengths": gold["lengths"],
        "truncated": gold["truncated"],
        # Filled with teacher-forced log-probs below (the sampler did not produce y*).
        "logprobs": np.zeros(gold["mask"].shape, np.float32),
        "raw_rewards": scored.rewards, "reward_errors": scored.errors.astype(np.float32),
        "reward_timeouts": scored.timeouts.astype(np.float32),
        "example_id": group["example_id"][:, 0], "valid": np.ones(num_prompts, bool),
        "hint_level": np.zeros(num_prompts, np.int32), "is_injected": np.ones(num_prompts, bool)}
    live = group["mask"].sum(axis=(1, 2)) > 0  # filler groups stay fully masked
    reference["mask"] = reference["mask"] * live[:, None]
    group = data_stages_lib.inject_ground_truth(group, reference)
    metrics = {"visurf/gold_reward": float(scored.rewards[live].mean()) if live.any() else 0.0,
               "visurf/gold_truncated": float(gold["truncated"].mean())}
    return group, metrics

  def greedy_rewards(step, group, examples) -> np.ndarray:
    """ReMax's baseline: the verifier's score of one greedy completion per group's prompt."""
    group_examples = [examples[i] for i in group["example_id"][:, 0]]
    key = jax.random.fold_in(jax.random.fold_in(sample_key, step), _STAGE_STREAM + 2)
    _, texts = sampler(state_params[0], group_examples, key, num_samples=1, temperature=0.0)
    t_reward = time.time()
    rewards = scorer(texts, group_examples).rewards
    timing["reward"] += time.time() - t_reward
    return np.asarray(rewards, np.float32)

  def advantages_by_group_size(inputs: types.AdvantageInputs, valid: np.ndarray):
    """The jit'd advantage stage on groups of their real size: one call per distinct size, with
    the groups of that size padded (by repetition) to ``P`` groups, so one compilation per size
    (at most ``n_max - G + 1``), never per step. Without padding (all groups full), one call."""
    sizes = valid.sum(axis=1)
    if (sizes == valid.shape[1]).all():
      rewards, advantages = advantage_fn(inputs)
      return np.asarray(rewards, np.float32), np.asarray(advantages, np.float32)
    rewards = np.zeros(valid.shape, np.float32)
    advantages = np.zeros(inputs.mask.shape, np.float32)
    for n in np.unique(sizes):
      rows = np.flatnonzero(sizes == n)
      padded = np.concatenate([rows, np.full(num_prompts - len(rows), rows[0])])

      def take(x, rows=padded, n=int(n)):
        x = np.asarray(x)
        return jnp.asarray(x[rows][:, :n]) if x.ndim >= 2 else jnp.asarray(x[rows])

      part = types.AdvantageInputs(
          rewards=take(inputs.rewards), mask=take(inputs.mask), tokens=take(inputs.tokens),
          lengths=take(inputs.lengths), truncated=take(inputs.truncated),
          token_rewards=take(inputs.token_rewards),
          extras={k: (v if np.ndim(v) == 0 else take(v)) for k, v in inputs.extras.items()})
      r, a = advantage_fn(part)
      rewards[rows, :n] = np.asarray(r)[:len(rows)]
      advantages[rows, :n] = np.asarray(a)[:len(rows)]
    return rewards, advantages

  state_params = [None]
  timing = {"reward": 0.0}
  for step in range(start_step, rl.num_steps):
    t0 = time.time()
    timing["reward"] = 0.0
    state_params[0] = state.params
    group, rounds, examples, data_position, num_rounds, num_kept = collect(step, data_position)
    stage_metrics: Dict[str, float] = {}
    generated_rounds = list(rounds)
    if stages.dars:
      group, m = run_dars(step, group, examples)
      stage_metrics.update(m)
    if stages.scaf:
      group, m = run_scaf(step, group, examples)
      stage_metrics.update(m)
    if stages.visurf is not None:
      group, m = run_visurf(group, examples)
      stage_metrics.update(m)
    t1 = time.time()

    rows = num_prompts * width
    flat = {k: v.reshape((rows,) + v.shape[2:]) for k, v in group.items()}
    # ``group_mask``: the completion mask the advantage stage sees (overlong filtering only
    # removes sequences from the loss); ``mask``: the loss mask.
    group_mask = flat["mask"]
    mask = group_mask
    if rl.get("overlong_filter"):
      mask = data_stages_lib.overlong_filter(mask, flat["truncated"])
    tokens = flat["tokens"]
    rollout_logprobs = flat["logprobs"]
    loss_extras: Dict[str, np.ndarray] = {}
    adv_extras: Dict[str, Any] = {}
    # A row without loss tokens (filler group, DARS padding or dropped group, filtered sequence)
    # is out of the batch; LaSeR's per-sequence loss must skip it like a truncated one.
    out_of_batch = (mask.sum(axis=1) == 0).astype(np.float32)
    truncated = np.maximum(flat["truncated"], out_of_batch)
    if stages.laser:
      tokens, positions = data_stages_lib.append_self_reward_token(
          tokens, flat["lengths"], truncated, stages.laser["token_id"], sampler.pad_id)
      mask = np.pad(mask, ((0, 0), (0, 1)))
      group_mask = np.pad(group_mask, ((0, 0), (0, 1)))
      rollout_logprobs = np.pad(rollout_logprobs, ((0, 0), (0, 1)))
    t = tokens.shape[1]
    # Old and reference log-probs come before the advantages: KL-in-reward estimators (RLOO,
    # REINFORCE++) read them there.
    args = (flat["prompt_tokens"], flat["prompt_mask"], tokens, mask)
    old_logprobs = rollout_logprobs
    if stages.laser:
      scored_logprobs = _fetch(score_all(state.params, *args)[0])
      self_rewards = data_stages_lib.laser_self_rewards(
          scored_logprobs, positions, truncated, beta_v=stages.laser["beta_v"],
          c_ref=stages.laser["c_ref"], temperature=stages.laser["temperature"])
      scored_logprobs = scored_logprobs * (mask > 0)
      adv_extras["self_rewards"] = self_rewards.reshape(num_prompts, width)
      correct = (flat["raw_rewards"] >= 1.0).astype(np.float32)
      loss_extras["selfreward_position"] = positions
      loss_extras["selfreward_weights"] = np.asarray(
          regularizers.laser_class_weights(correct, truncated), np.float32)
      stage_metrics["laser/self_reward_mean"] = float(
          self_rewards[truncated < 0.5].mean()) if (truncated < 0.5).any() else 0.0
    elif rl.recompute_old_logprobs or stages.visurf is not None:
      scored_logprobs = _fetch(score(state.params, *args)[0])
    if rl.recompute_old_logprobs:
      old_logprobs = scored_logprobs
    elif stages.visurf is not None:
      # y* is off-policy: its "old" log-probs are teacher-forced under the current params.
      old_logprobs = np.where(flat["is_injected"][:, None], scored_logprobs, rollout_logprobs)
    if objective.needs_reference:
      ref_logprobs = _fetch(score(state.ref_params, *args)[0])
    else:
      ref_logprobs = np.zeros_like(mask)
    if stages.greedy:
      adv_extras["greedy_rewards"] = greedy_rewards(step, group, examples)
      stage_metrics["remax/greedy_reward"] = float(adv_extras["greedy_rewards"].mean())
    per_group = lambda x: np.asarray(x, np.float32).reshape((num_prompts, width, t))
    group_mask = per_group(group_mask)
    inputs = types.AdvantageInputs(
        rewards=group["raw_rewards"].astype(np.float32), mask=group_mask,
        tokens=tokens.reshape((num_prompts, width, t)), lengths=group["lengths"],
        truncated=truncated.reshape(num_prompts, width),
        token_rewards=np.zeros((num_prompts, width, t), np.float32),
        extras={"old_logprobs": per_group(old_logprobs), "ref_logprobs": per_group(ref_logprobs),
                "step": jnp.asarray(step, jnp.int32), **adv_extras})
    rewards, advantages = advantages_by_group_size(inputs, group["valid"])
    full = step_lib.TrainBatch(
        prompt_tokens=flat["prompt_tokens"], prompt_mask=flat["prompt_mask"],
        completion_tokens=tokens,
        loss=types.LossBatch(
            mask=mask.astype(np.float32),
            advantages=advantages.reshape(mask.shape),
            old_logprobs=np.asarray(old_logprobs, np.float32),
            ref_logprobs=np.asarray(ref_logprobs, np.float32),
            rollout_logprobs=rollout_logprobs.astype(np.float32),
            rewards=rewards.reshape(-1),
            correct=(flat["raw_rewards"] >= 1.0).astype(np.float32),
            group_ids=np.repeat(np.arange(num_prompts, dtype=np.int32), width),
            truncated=truncated.astype(np.float32),
            extras=loss_extras))
    if batch_callback is not None:
      batch_callback(step, dict(group=group, batch=full, advantage_inputs=inputs,
                                examples=examples, params=state_params[0]))
    t2 = time.time()

    # num_iterations passes over shuffled mini-batches of whole groups.
    order_rng = np.random.default_rng([config.seed, step])
    update_metrics: List[Dict[str, Any]] = []
    for _ in range(rl.num_iterations):
      groups = order_rng.permutation(num_prompts)
      for i in range(rl.num_mini_batches):
        rows = (groups[i * mini_prompts:(i + 1) * mini_prompts, None] * width
                + np.arange(width)[None]).reshape(-1)
        mini = jax.tree.map(lambda x: x[rows], full)
        # Every process holds the whole (identical) batch; each contributes its block of rows.
        state, m = update(state, mesh_lib.host_local_to_global(mesh_lib.process_rows(mini), mesh))
        update_metrics.append(m)
    if rl.get("ref_refresh_steps", 0) and (step + 1) % rl.ref_refresh_steps == 0:
      state = state.replace(ref_params=jax.tree.map(jnp.copy, state.params))
    update_metrics = jax.device_get(update_metrics)
    t3 = time.time()

    metrics = _mean_over_updates(update_metrics)
    generated = {k: np.concatenate([r[k] for r in generated_rounds]) for k in
                 ("raw_rewards", "lengths", "truncated")}
    metrics.update(_group_metrics(generated["raw_rewards"]))
    metrics["rewards/verifier/mean"] = float(generated["raw_rewards"].mean())
    metrics["rewards/verifier/std"] = float(generated["raw_rewards"].std())
    metrics["reward_errors"] = float(sum(r["reward_errors"].sum() for r in generated_rounds))
    metrics["reward_timeouts"] = float(sum(r["reward_timeouts"].sum() for r in generated_rounds))
    metrics.update(_length_metrics(generated["lengths"], generated["truncated"]))
    metrics.update({k: float(v) for k, v in advantage_metrics(
        rewards, advantages, group_mask).items() if k.startswith("advantages/")})
    num_generated = float(generated["lengths"].sum())
    metrics.update({
        "time/rollout": t1 - t0 - timing["reward"], "time/reward": timing["reward"],
        "time/advantage": t2 - t1, "time/update": t3 - t2,
        "tokens/generated_per_s": num_generated / max(t1 - t0 - timing["reward"], 1e-9),
        "tokens/trained_per_s": rl.num_iterations * float(mask.sum()) / max(t3 - t2, 1e-9),
        "num_tokens": num_generated, "data_position": float(data_position),
    })
    metrics.update(stage_metrics)
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
  if "before/sft_steps" in summary:
    lines.append(f"supervised warm-up: {summary['before/sft_steps']} steps")
  for key in ("pass@1", "greedy_accuracy"):
    if f"before/{key}" in summary:
      before, after = summary[f"before/{key}"], summary[f"after/{key}"]
      lines.append(f"held-out {key}: before RL {100 * before:.1f}%  after RL {100 * after:.1f}%  "
                   f"({100 * (after - before):+.1f} points)")
  return "\n".join(lines)
