"""The trainer's group-reward hook: group-level reward functions on every generated round.

Switched on by ``config.rl.stages.group_rewards.enabled``. Unlike the other stages it runs
**inside collection**, on each generated round right after the per-sample verifier and before
DAPO's dynamic-sampling filter (:func:`rlvr_jax.train.stages.dynamic_sampling.collect`, its
``rescore`` argument), so the filter tests the rewards that will be trained on. It builds a
:class:`rlvr_jax.rewards.group.RewardBatch` (examples, rendered prompts, completion texts and
tokens, verifier rewards, and a :class:`PolicyHandle` that scores token rows teacher-forced under
the sampling policy, batched, on the mesh), calls the configured functions
(:func:`rlvr_jax.rewards.group.compute_group_rewards`) and writes:

* ``raw_rewards`` ``[P, G]``: ``combine="replace"``: the functions' weighted sum;
  ``combine="add"``: ``verifier_weight · verifier + sum``. A sample that every function failed
  on gets the stage's ``failure_reward`` (replace) and counts in ``reward_errors``.
* ``token_rewards`` ``[P, G, T]`` when a function returns per-token rewards: their placement
  minus the outcome placement of their sum (as multi-turn per-turn rewards,
  :mod:`.multiturn`), so token-return estimators see each part on its own token and sequence
  estimators see the sum in ``raw_rewards``.
* ``verifier_rewards`` ``[P, G]``: the verifier's own rewards, kept for diagnostics.
* ``in_loss`` 0 on the groups a function drops (RLPR's std filter).
* the functions' extra ``columns`` (VeriFree's ``answer_mask``, ``answer_weights``, and its
  spliced ``tokens``, ``mask``, ``logprobs``).

Config (``config.rl.stages.group_rewards``): ``functions``, a dict ``{instance name: {"function":
registered name (default: the instance name), "weight": 1.0, **the factory's keyword
arguments}}``; ``combine`` (``"replace"`` or ``"add"``); ``verifier_weight``; ``missing`` (the
:func:`rlvr_jax.rewards.combine.weighted_sum` policy); ``failure_reward``; ``modules``, modules
to import first because they register functions (``rlvr_jax.rewards.judge``'s ``"judge"``, your
own). Samples of DARS, Scaf-GRPO, ViSurf and
ReMax's greedy baseline are scored by the verifier alone, so those stages are refused alongside;
multi-turn runs are refused too.
"""

from __future__ import annotations

import importlib
import types
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from rlvr_jax import advantages as advantages_lib
from rlvr_jax.data import templates
from rlvr_jax.rewards import group as group_lib
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import prng
from rlvr_jax.train.stages import base

DEFAULTS = dict(functions={}, combine="replace", verifier_weight=1.0, missing="zero",
                failure_reward=0.0, modules=())
# Loss inputs the built-in functions provide (VeriFree's answer term, read by the `verifree`
# objective that importing rlvr_jax.objectives.answer_likelihood registers).
LOSS_COLUMNS = ("answer_mask", "answer_weights")
# Group arrays a function may replace through its columns (VeriFree's spliced sequence).
REPLACEABLE = ("tokens", "mask", "logprobs", "lengths")


def _bucket(n: int) -> int:
  """The next power of two >= n (>= 1): one compilation per bucket, not per step."""
  return 1 << max(0, int(n) - 1).bit_length()


class PolicyHandle(group_lib.PolicyScorer):
  """:class:`rlvr_jax.rewards.group.PolicyScorer` on a step's :class:`~.base.StepContext`.

  :meth:`logprobs` left-pads contexts to a power of two of at least the largest prompt bucket,
  right-pads continuations to a power of two of at least ``MIN_LENGTH``, and scores rows in
  chunks of ``rows`` (the update's row count, padded by repetition), one jit'd call per chunk
  under the sampling policy at the sampling temperature: a run compiles a few shapes, not one
  per step.
  """

  MIN_LENGTH = 8

  def __init__(self, ctx: base.StepContext, rows: int, stream_id: int, first_chunk: int = 0):
    self.ctx, self.rows, self.stream_id = ctx, rows, stream_id
    # Generation chunks count on across the step's rounds: no two rounds share a key.
    self.next_chunk = first_chunk
    self.sampler = ctx.run.sampler
    self.tokenizer = self.sampler.tokenizer
    self.calls = 0

  def logprobs(self, contexts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
               ) -> np.ndarray:
    if len(contexts) != len(continuations):
      raise ValueError(f"{len(contexts)} contexts for {len(continuations)} continuations")
    n = len(contexts)
    longest = max([len(c) for c in continuations] + [0])
    if n == 0 or longest == 0:
      return np.zeros((n, longest), np.float32)
    width = _bucket(max([len(c) for c in contexts] + [self.ctx.run.max_prompt_length]))
    length = _bucket(max(longest, self.MIN_LENGTH))
    pad = self.sampler.pad_id
    out = np.zeros((n, longest), np.float32)
    for start in range(0, n, self.rows):
      idx = list(range(start, min(start + self.rows, n)))
      idx += [idx[-1]] * (self.rows - len(idx))
      rows = {"prompt_tokens": np.full((self.rows, width), pad, np.int32),
              "prompt_mask": np.zeros((self.rows, width), bool),
              "tokens": np.full((self.rows, length), pad, np.int32),
              "mask": np.zeros((self.rows, length), np.float32)}
      for r, i in enumerate(idx):
        ctx_ids, cont = list(contexts[i]), list(continuations[i])
        if ctx_ids:
          rows["prompt_tokens"][r, width - len(ctx_ids):] = ctx_ids
          rows["prompt_mask"][r, width - len(ctx_ids):] = True
        rows["tokens"][r, :len(cont)] = cont
        rows["mask"][r, :len(cont)] = 1.0
      scored = np.asarray(self.ctx.logprobs_fn(self.ctx.params, rows, False), np.float32)
      self.calls += 1
      real = min(self.rows, n - start)
      for r in range(real):
        k = len(continuations[start + r])
        out[start + r, :k] = scored[r, :k]
    return out

  def sample(self, prompts: Sequence[Any], num_samples: int) -> List[List[str]]:
    chunk = self.rows // num_samples if self.rows % num_samples == 0 else len(prompts)
    texts: List[str] = []
    for start in range(0, len(prompts), chunk):
      part, real = text_sampler.pad_by_repetition(
          [types.SimpleNamespace(prompt=q) for q in prompts[start:start + chunk]], chunk)
      key = prng.stage_key(self.ctx.sample_key, self.ctx.step, self.stream_id, self.next_chunk)
      self.next_chunk += 1
      _, out = self.sampler.sample(self.ctx.params, part, key, num_samples=num_samples)
      texts += out[:real * num_samples]
    return [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]

  def encode(self, text: str) -> List[int]:
    return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

  def decode(self, ids: Sequence[int]) -> str:
    return self.tokenizer.decode(list(ids), skip_special_tokens=True)

  def encode_prompt(self, prompt: Any) -> List[int]:
    return text_sampler.prompt_token_ids(self.tokenizer, prompt, add_bos=self.sampler.add_bos)

  def model(self) -> Tuple[Any, Any, Any, bool]:
    return self.sampler.model_config, self.ctx.params, self.tokenizer, self.sampler.add_bos


def reward_batch(ctx: base.StepContext, group: base.GroupBatch, policy: Any
                 ) -> group_lib.RewardBatch:
  """The :class:`~rlvr_jax.rewards.group.RewardBatch` of a collected round ``[P, G, ...]``."""
  tokenizer = ctx.run.sampler.tokenizer
  examples = [ctx.examples[i] for i in group["example_id"][:, 0]]
  p, g, _ = group["tokens"].shape
  texts = text_sampler.decode_completions(tokenizer, group["tokens"].reshape(p * g, -1),
                                          group["lengths"].reshape(-1))
  return group_lib.RewardBatch(
      examples=examples, prompts=[templates.render(e.prompt, tokenizer) for e in examples],
      completions=[texts[i * g:(i + 1) * g] for i in range(p)],
      tokens=group["tokens"], mask=group["mask"],
      verifier_rewards=group["raw_rewards"].astype(np.float32),
      truncated=group["truncated"].astype(np.float32),
      prompt_tokens=group["prompt_tokens"][:, 0], prompt_mask=group["prompt_mask"][:, 0],
      logprobs=group["logprobs"], pad_id=ctx.run.sampler.pad_id, policy=policy, step=ctx.step)


def place_token_rewards(token_rewards: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """``token_rewards [P, G, T]`` minus the outcome placement of their masked sum: the input the
  advantage stage adds to ``outcome_to_token_rewards(raw_rewards)``, so that token-return
  estimators see each token's own reward once and the sum is not counted twice."""
  placed = np.asarray(token_rewards, np.float32) * mask
  outcome = advantages_lib.outcome_to_token_rewards(placed.sum(-1), mask)
  return (placed - np.asarray(outcome)).astype(np.float32)


class GroupRewards(base.Stage):
  """Rescores each generated round with the configured group reward functions."""

  scores_rounds = True
  stream_id = 4  # Co-Reward's generations of the rephrased questions
  excludes = ("dars", "scaf", "visurf", "remax")

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    if run.episodes is not None:
      raise ValueError("config.rl.stages.group_rewards runs on single-turn collection; "
                       "multi-turn runs place per-turn rewards through their environment.")
    if not settings["functions"]:
      raise ValueError("config.rl.stages.group_rewards.functions is empty: name at least one "
                       f"function ({group_lib.names()}).")
    for module in settings["modules"]:
      importlib.import_module(module)
    self.functions = []
    for name, spec in dict(settings["functions"]).items():
      spec = dict(spec)
      registered = spec.pop("function", name)
      weight = float(spec.pop("weight", 1.0))
      self.functions.append(group_lib.GroupRewardFunction(
          name, group_lib.build(registered, **spec), weight))
    self.combine = settings["combine"]
    if self.combine not in ("replace", "add"):
      raise ValueError(f"config.rl.stages.group_rewards.combine must be 'replace' or 'add', got "
                       f"{self.combine!r}.")
    self.verifier_weight = float(settings["verifier_weight"])
    self.missing = settings["missing"]
    self.failure_reward = float(settings["failure_reward"])
    self.rows = run.num_prompts * run.group_size
    self._chunks = (-1, 0)  # (step, generation chunks its rounds have drawn)
    self.scores_all_positions = any(getattr(f.fn, "scores_all_positions", False)
                                    for f in self.functions)

  def state_dict(self) -> Dict[str, Any]:
    """The ``state`` dicts of the functions that keep one (e.g. RLPR's EMA threshold), by name."""
    return {f.name: dict(f.fn.state) for f in self.functions if hasattr(f.fn, "state")}

  def load_state_dict(self, state: Dict[str, Any]) -> None:
    """Puts saved function states back; a saved function the config no longer has is an
    error (the resumed run would silently start it afresh otherwise)."""
    holders = {f.name: f.fn.state for f in self.functions if hasattr(f.fn, "state")}
    unknown = sorted(set(state) - set(holders))
    if unknown:
      raise ValueError(f"the checkpoint holds state of group reward functions {unknown}, which "
                       f"this config's stateful functions {sorted(holders)} do not include")
    for name, saved in state.items():
      holders[name].update(saved)

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    if ctx.step != self._chunks[0]:
      self._chunks = (ctx.step, 0)
    policy = PolicyHandle(ctx, self.rows, self.stream_id, first_chunk=self._chunks[1])
    batch = reward_batch(ctx, group, policy)
    out = group_lib.compute_group_rewards(self.functions, batch, missing=self.missing)
    self._chunks = (ctx.step, policy.next_chunk)
    rewards, failed = group_lib.combine_with_verifier(
        batch.verifier_rewards, out, mode=self.combine, verifier_weight=self.verifier_weight,
        failure_reward=self.failure_reward)
    group = dict(group, verifier_rewards=batch.verifier_rewards, raw_rewards=rewards,
                 reward_errors=np.maximum(group["reward_errors"], failed).astype(np.float32))
    for key, value in out.columns.items():
      if key in group and key not in REPLACEABLE:
        raise ValueError(f"a group reward function returned column {key!r}, which the group "
                         f"batch already has (replaceable: {REPLACEABLE}).")
      if key in REPLACEABLE and np.shape(value) != np.shape(group[key]):
        raise ValueError(f"column {key!r} must keep shape {np.shape(group[key])}, got "
                         f"{np.shape(value)}.")
      group[key] = np.asarray(value, group[key].dtype) if key in group else np.asarray(value)
    # Always present (zeros without per-token functions): dynamic sampling stacks rounds by key.
    group["token_rewards"] = place_token_rewards(out.token_rewards, group["mask"])
    if out.drop_groups.any():
      group["in_loss"] = np.where(out.drop_groups[:, None], 0.0, group["in_loss"]).astype(
          np.float32)
    metrics = dict(out.metrics)
    metrics.update({
        "group_rewards/verifier_mean": float(batch.verifier_rewards.mean()),
        "group_rewards/reward_mean": float(rewards.mean()),
        "group_rewards/failed_samples": float(failed.sum()),
        "group_rewards/dropped_groups": float(out.drop_groups.sum()),
        "group_rewards/scoring_calls": float(policy.calls),
    })
    return group, metrics
