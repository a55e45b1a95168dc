"""Collecting a step's groups: one generation, or DAPO's dynamic sampling.

Plain collection takes ``P`` examples from the training stream, samples ``G`` completions each and
scores them. **DAPO dynamic sampling** (arXiv 2503.14476, eq. 11 and Algorithm 1; verl's
``filter_groups``) keeps generating rounds of ``P`` prompts and drops groups whose rewards are
all equal (all correct or all wrong), until ``P`` groups survive or ``max_rounds`` rounds were
used; a short batch is filled with masked copies (:func:`fill_groups`) so that the update's shape
stays static.

Config (``config.rl.dynamic_sampling``): ``enabled``, ``max_rounds`` (0: no cap).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.train import prng
from rlvr_jax.train.stages import base


def zero_variance_groups(rewards: np.ndarray, *, atol: float = 0.0) -> np.ndarray:
  """``[P]`` bool: True where a group's rewards are all equal, ``max_g R - min_g R <= atol``.

  With binary correctness this is DAPO's "all correct or all wrong" (eq. 11); for other rewards
  it is verl's rule of identical metric values (``std == 0``), with ``atol`` for float noise.
  """
  rewards = base.check_rewards(rewards)
  return np.ptp(rewards, axis=1) <= atol


@dataclasses.dataclass(frozen=True)
class DynamicSamplingState:
  """Groups kept so far by DAPO dynamic sampling, and the round count.

  Attributes:
    batch: the kept groups (mapping of arrays with leading group axis), or None before any kept.
    num_kept: number of kept groups (may exceed ``target_groups`` until :func:`take_batch`).
    num_rounds: generation rounds consumed.
    num_generated: groups generated over all rounds (``num_kept / num_generated`` is the
      survival rate to log).
  """

  batch: Optional[Dict[str, np.ndarray]] = None
  num_kept: int = 0
  num_rounds: int = 0
  num_generated: int = 0

  def full(self, target_groups: int) -> bool:
    """At least ``target_groups`` groups were kept."""
    return self.num_kept >= target_groups

  def done(self, target_groups: int, max_rounds: int) -> bool:
    """Stop generating: the batch is full, or ``max_rounds > 0`` rounds were used."""
    return self.full(target_groups) or (max_rounds > 0 and self.num_rounds >= max_rounds)


def filter_and_accumulate(state: DynamicSamplingState, batch: base.GroupBatch,
                          rewards: np.ndarray, *, atol: float = 0.0) -> DynamicSamplingState:
  """One round of DAPO dynamic sampling: keep the groups with reward variance, append them.

  As verl's ``filter_groups`` (``std > 0 or len == 1``), single-sample groups (``G == 1``) are
  always kept: they have no variance to test.

  Args:
    state: the accumulation so far (start from ``DynamicSamplingState()``).
    batch: this round's groups, arrays with leading axis ``P`` (trailing shapes must match
      earlier rounds, so pad generation to one static length).
    rewards: ``[P, G]`` rewards used for the filter (usually correctness or the shaped reward).
    atol: tolerance of :func:`zero_variance_groups`.

  Returns:
    The new state; ``state.done(target_groups, max_rounds)`` tells the loop whether to generate
    another round.
  """
  rewards = base.check_rewards(rewards)
  base.check_group_batch(batch, rewards.shape[0])
  keep = ~zero_variance_groups(rewards, atol=atol) | (rewards.shape[1] == 1)
  kept = {k: np.asarray(v)[keep] for k, v in batch.items()}
  if state.batch is None:
    merged = kept
  else:
    if set(state.batch) != set(kept):
      raise ValueError(f"Round keys {sorted(kept)} differ from earlier rounds "
                       f"{sorted(state.batch)}.")
    merged = {k: np.concatenate([state.batch[k], kept[k]], axis=0) for k in kept}
  return DynamicSamplingState(batch=merged, num_kept=state.num_kept + int(keep.sum()),
                              num_rounds=state.num_rounds + 1,
                              num_generated=state.num_generated + rewards.shape[0])


def take_batch(state: DynamicSamplingState, target_groups: int, *,
               allow_partial: bool = False) -> Dict[str, np.ndarray]:
  """The first ``target_groups`` kept groups (verl keeps the earliest ones).

  Args:
    state: after the loop stopped generating.
    target_groups: the train batch size in groups.
    allow_partial: when fewer groups survived (the round cap was hit), return them all instead of
      raising. verl raises in that case ("data too difficult"); a smaller batch still trains
      correctly here because aggregation uses the batch's own global counts.

  Raises:
    RuntimeError: fewer than ``target_groups`` groups and not ``allow_partial``.
  """
  if state.num_kept < target_groups and not allow_partial:
    raise RuntimeError(
        f"Dynamic sampling kept {state.num_kept}/{target_groups} groups after "
        f"{state.num_rounds} rounds ({state.num_generated} generated); raise max_rounds, "
        "use allow_partial, or check whether the data is too hard/easy.")
  if state.batch is None:
    return {}
  return {k: v[:target_groups] for k, v in state.batch.items()}


def fill_groups(kept: Dict[str, np.ndarray], filler: Dict[str, np.ndarray], num_prompts: int
                ) -> Dict[str, np.ndarray]:
  """Pads a partial dynamic-sampling batch to ``num_prompts`` groups with masked-out groups.

  The filler groups (copies of the last round's) get a zero mask and zero rewards, so they add
  nothing to the loss or the gradient, and the step keeps one static shape.
  """
  have = len(kept["mask"]) if kept else 0
  if have == num_prompts:
    return kept
  extra = {k: v[:num_prompts - have].copy() for k, v in filler.items()}
  extra["mask"][:] = 0
  extra["raw_rewards"][:] = 0
  if not kept:
    return extra
  return {k: np.concatenate([kept[k], extra[k]]) for k in kept}


@dataclasses.dataclass(frozen=True)
class Collected:
  """A step's collected groups.

  Attributes:
    group: the group batch ``[P, G, ...]`` the stages start from.
    examples: every example drawn this step; ``group["example_id"]`` indexes them.
    rounds: every generated round's group batch (the step's reward and length metrics cover all
      generated samples, kept or not).
    position: the training stream's position after the step.
    metrics: ``dynamic_sampling/rounds`` and ``dynamic_sampling/kept_groups`` when enabled.
  """

  group: base.GroupBatch
  examples: List[task_lib.Example]
  rounds: List[base.GroupBatch]
  position: int
  metrics: Dict[str, float]


def _mean_metrics(per_round: List[Dict[str, float]]) -> Dict[str, float]:
  """Each key's mean over the rounds that logged it."""
  keys = {k for m in per_round for k in m}
  return {k: float(np.mean([m[k] for m in per_round if k in m])) for k in sorted(keys)}


def collect(stream: Iterator[task_lib.Example], position: int, *, step: int, params: Any,
            run: base.RunInfo, scorer: base.TimedScorer, sample_key: jax.Array,
            prompt_width: Optional[int], dynamic_sampling: Any,
            generate: Optional[Callable[..., base.GroupBatch]] = None,
            rescore: Optional[Callable[..., Tuple[base.GroupBatch, base.Metrics]]] = None
            ) -> Collected:
  """Generates and scores the step's groups (``dynamic_sampling``: its config entry).

  ``generate(params, examples, example_ids, rng) -> group batch`` replaces one round's
  sampling and scoring (multi-turn episodes: :mod:`.multiturn`). ``rescore(group, examples) ->
  (group, metrics)`` runs on every round right after scoring, before the filter (the
  group-reward hook, :mod:`.group_rewards`); its metrics are averaged over the rounds."""
  state = DynamicSamplingState()
  rounds, examples, rescore_metrics = [], [], []
  p, g = run.num_prompts, run.group_size

  def sample_and_score(params, batch, ids, rng):
    # Generated on the run's mesh; the host gets what scoring and the group batch read.
    rollout, texts = run.sampler.sample(params, batch, rng, num_samples=g, on_host=True)
    scored = scorer(texts, [e for e in batch for _ in range(g)])
    return base.group_batch(rollout, scored, ids, g, prompt_width=prompt_width,
                            pad_id=run.sampler.pad_id)

  generate = generate or sample_and_score
  for round_index in itertools.count():
    batch = [next(stream) for _ in range(p)]
    ids = list(range(len(examples), len(examples) + p))
    examples += batch
    position += p
    group = generate(params, batch, ids, prng.round_key(sample_key, step, round_index))
    if rescore is not None:
      group, round_metrics = rescore(group, examples)
      rescore_metrics.append(round_metrics)
    rounds.append(group)
    if not dynamic_sampling.enabled:
      return Collected(group, examples, rounds, position, _mean_metrics(rescore_metrics))
    state = filter_and_accumulate(state, group, group["raw_rewards"])
    if state.done(p, dynamic_sampling.max_rounds):
      break
  kept = take_batch(state, p, allow_partial=True)
  metrics = {**_mean_metrics(rescore_metrics),
             "dynamic_sampling/rounds": float(state.num_rounds),
             "dynamic_sampling/kept_groups": float(min(state.num_kept, p))}
  return Collected(fill_groups(kept, rounds[-1], p), examples, rounds, position, metrics)
