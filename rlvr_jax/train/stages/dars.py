"""DARS: difficulty-adaptive rollout sampling (arXiv 2508.13755; ``yangzhch6/DARS``
``ray_dars_trainer.py``).

Stage 1 is the step's main generation (``G`` samples per prompt). Prompts with accuracy below 0.5
get extra samples (:func:`dars_extra_rollouts`, ET or HW schedule) up to ``n_max`` per prompt;
the extra samples join their group (:func:`dars_merge`), groups are padded to ``n_max`` with
``valid=False`` slots (static shapes), and only prompts whose combined accuracy is in
``(0, upper)`` stay in the loss (:func:`dars_keep_mask`). The advantage stage then runs once per
distinct group size (:mod:`rlvr_jax.train.batch`).

Config (``config.rl.stages.dars``): ``schedule`` ``"ET"``/``"HW"``; ``n_max`` (0: 4G for ET,
8G for HW, the repository's defaults); ``use_std`` (whether the advantage divides by the group
std, which changes the schedule's target); ``upper`` (keep prompts with accuracy below it).
DARS changes group sizes, so it excludes dynamic sampling, Scaf-GRPO and ViSurf.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np

from rlvr_jax.train.stages import base

DEFAULTS = dict(schedule="ET", n_max=0, use_std=False, upper=1.0)


def dars_extra_rollouts(accuracy: np.ndarray, group_size: int, n_max: int, *,
                        schedule: str = "ET", use_std: bool = False, zero_accuracy_eps: float = 1e-6) -> np.ndarray:
  """Extra rollouts per prompt, DARS (arXiv 2508.13755) stage 2.

  With ``S(a) = 2a(1-a)`` (``use_std=False``; GRPO without std, ``A_peak = N/2``) or
  ``S(a) = 2 sqrt(a(1-a))`` (``use_std=True``, ``A_peak = N``), a group of accuracy ``a`` has
  total absolute advantage ``N S(a)``. DARS tops hard prompts up towards the peak:

  * ``a <= zero_accuracy_eps`` is treated as ``a = 0.5 / N``; ``a >= 0.5`` gets no extra samples;
  * ET (equal treatment): ``dN = (A_peak - N S(a)) / S(a)``;
  * HW (hardness weighted): ``dN = (2 (1 - a) A_peak - N S(a)) / S(a)``;
  * ``dN = min(ceil(dN), n_max - N)``.

  Worked examples (N=8, no std): a=1/8 → ET 11, HW 24; a=3/8 → ET 1, HW 3. Checked against
  ``schedule_ET``/``schedule_HW`` of the DARS code (same formula, same plain ``ceil``).

  Args:
    accuracy: ``[P]`` stage-1 accuracy of each prompt's ``group_size`` samples.
    group_size: ``N``, stage-1 samples per prompt.
    n_max: cap on total samples per prompt.
    schedule: ``"ET"`` or ``"HW"``.
    use_std: whether the advantage divides by the group std.
    zero_accuracy_eps: accuracies at or below this count as zero.

  Returns:
    ``[P]`` int64 extra samples, in ``[0, n_max - group_size]``.
  """
  if schedule not in ("ET", "HW"):
    raise ValueError(f"schedule must be 'ET' or 'HW', got {schedule!r}.")
  if n_max < group_size:
    raise ValueError(f"n_max ({n_max}) must be >= group_size ({group_size}).")
  acc = np.asarray(accuracy, dtype=np.float64)
  if acc.ndim != 1:
    raise ValueError(f"accuracy must be [P], got shape {acc.shape}.")
  a = np.where(acc <= zero_accuracy_eps, 0.5 / group_size, acc)
  # Clip away from {0, 1} only to keep the division finite where the result is discarded.
  a_safe = np.clip(a, 1e-12, 1 - 1e-12)
  if use_std:
    s = 2.0 * np.sqrt(a_safe * (1.0 - a_safe))
    peak = float(group_size)
  else:
    s = 2.0 * a_safe * (1.0 - a_safe)
    peak = 0.5 * group_size
  target = peak if schedule == "ET" else 2.0 * (1.0 - a_safe) * peak
  dn = np.ceil((target - group_size * s) / s)
  dn = np.where(a >= 0.5, 0.0, np.maximum(dn, 0.0))
  return np.minimum(dn, n_max - group_size).astype(np.int64)


def dars_keep_mask(accuracy: np.ndarray, upper: float = 1.0) -> np.ndarray:
  """``[P]`` bool: DARS keeps prompts whose combined accuracy is in ``(0, upper)``."""
  acc = np.asarray(accuracy, dtype=np.float64)
  return (acc > 0.0) & (acc < upper)


def pad_groups(groups: Sequence[np.ndarray], size: int,
               fill: Any = 0) -> Tuple[np.ndarray, np.ndarray]:
  """Packs variable-size groups into ``[P, size, ...]`` plus a ``[P, size]`` validity mask.

  Group ``p`` (``groups[p]`` of shape ``[n_p, ...]``, ``n_p <= size``) fills rows ``:n_p``;
  the rest is ``fill`` with mask False. Static shapes for the jit'd advantage stage, whose
  group statistics must then be masked means.
  """
  if not groups:
    raise ValueError("pad_groups needs at least one group.")
  groups = [np.asarray(g) for g in groups]
  trailing = groups[0].shape[1:]
  out = np.full((len(groups), size) + trailing, fill, dtype=groups[0].dtype)
  valid = np.zeros((len(groups), size), dtype=bool)
  for p, g in enumerate(groups):
    if g.shape[1:] != trailing:
      raise ValueError(f"group {p} has trailing shape {g.shape[1:]}, expected {trailing}.")
    if g.shape[0] > size:
      raise ValueError(f"group {p} has {g.shape[0]} samples > size {size}.")
    out[p, :g.shape[0]] = g
    valid[p, :g.shape[0]] = True
  return out, valid


def dars_merge(stage1: base.GroupBatch, extra: base.GroupBatch, owner: np.ndarray,
               size: int) -> Dict[str, np.ndarray]:
  """DARS stage 3: each prompt's extra rollouts appended to its stage-1 group, padded to ``size``.

  Args:
    stage1: group batch ``[P, N, ...]``.
    extra: the extra samples as flat rows ``[E, ...]`` (same keys as ``stage1``).
    owner: ``[E]`` int, the prompt (group index) each extra row belongs to; rows keep their order.
    size: the padded group size (``n_max``).

  Returns:
    ``[P, size, ...]`` arrays (group ``p`` holds its ``N`` stage-1 samples, then its extra ones,
    then zeros) plus ``valid`` ``[P, size]`` bool, True on real samples (a prefix of each row).
  """
  owner = np.asarray(owner)
  num_groups = next(iter(stage1.values())).shape[0]
  if set(stage1) != set(extra):
    raise ValueError(f"stage1 and extra keys differ: {sorted(set(stage1) ^ set(extra))}.")
  base.check_group_batch(stage1, num_groups)
  base.check_group_batch(extra, owner.shape[0])
  out, valid = {}, None
  for key in stage1:
    groups = [np.concatenate([np.asarray(stage1[key][p]), np.asarray(extra[key])[owner == p]])
              for p in range(num_groups)]
    out[key], valid = pad_groups(groups, size)
  out["valid"] = valid
  return out


class Dars(base.Stage):
  """Extra rollouts for hard prompts, groups padded to ``n_max``, DARS's keep-mask."""

  stream_id = 0
  stacks_generations = True
  excludes = ("dynamic_sampling", "scaf", "visurf")

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    self.schedule = settings["schedule"]
    if self.schedule not in ("ET", "HW"):
      raise ValueError(f"config.rl.stages.dars.schedule must be 'ET' or 'HW', got "
                       f"{self.schedule!r}.")
    self.group_size = run.group_size
    self.n_max = settings["n_max"] or (4 if self.schedule == "ET" else 8) * run.group_size
    if self.n_max < run.group_size:
      raise ValueError(f"config.rl.stages.dars.n_max ({self.n_max}) must be >= num_samples.")
    self.use_std = settings["use_std"]
    self.upper = settings["upper"]

  def width(self, width: int) -> int:
    return self.n_max

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    accuracy = (group["raw_rewards"] >= 1.0).mean(axis=1)
    extra_n = dars_extra_rollouts(accuracy, self.group_size, self.n_max,
                                  schedule=self.schedule, use_std=self.use_std)
    owner = np.repeat(np.arange(len(accuracy)), extra_n)
    if len(owner):
      ids = group["example_id"][owner, 0]
      extra = ctx.sample_one([ctx.examples[i] for i in ids], ids, self.stream_id)
      extra = {k: v[:, 0] for k, v in extra.items()}
    else:
      extra = {k: v[:0, 0] for k, v in group.items()}
    merged = dars_merge(group, extra, owner, self.n_max)
    valid = merged["valid"]
    correct = (merged["raw_rewards"] >= 1.0) & valid
    combined = correct.sum(axis=1) / valid.sum(axis=1)
    keep = dars_keep_mask(combined, self.upper)
    merged["mask"] = merged["mask"] * keep[:, None, None]
    metrics = {"dars/extra_rollouts": float(extra_n.sum()),
               "dars/hard_prompts": float((extra_n > 0).sum()),
               "dars/mean_group_size": float(valid.sum(axis=1).mean()),
               "dars/kept_groups": float(keep.sum()),
               "dars/accuracy_before": float(accuracy.mean()),
               "dars/accuracy_after": float(combined.mean())}
    return merged, metrics
