"""Scaf-GRPO: hinted re-rollouts for groups the policy cannot solve (arXiv 2510.19807;
``dvlab-research/Scaf-GRPO``).

After ``warmup_steps`` (the guidance exemption), a group whose ``G`` rewards are all 0
(:func:`scaf_hint_groups`) gets one sample per hint level (:func:`scaf_hinted_examples`, cumulative
hints in two tiers, Knowledge then Solution, as the released code); the lowest level that solves
it (:func:`scaf_select`) replaces sample 0 of the group, prompt included (:func:`scaf_replace`),
so the hint conditions the sample and never enters the loss. Hints come from
``metadata['hints']`` (``{"knowledge": [...], "solution": [...]}``) or, for the procedural tasks,
from :func:`rlvr_jax.data.procedural.scaf_hints`.

Config (``config.rl.stages.scaf``): ``warmup_steps``, ``parts_per_tier``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rlvr_jax.data import procedural
from rlvr_jax.data import task as task_lib
from rlvr_jax.train.stages import base

DEFAULTS = dict(warmup_steps=50, parts_per_tier=4)


# The tiers of the released code (Planning is commented out there): levels 1-4 Knowledge,
# 5-8 Solution, each adding one more hint part.
SCAF_TIERS: Tuple[Tuple[str, str], ...] = (
    ("knowledge", "Knowledge Hints"), ("solution", "Solution Hints"))
SCAF_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


def scaf_hint_groups(rewards: np.ndarray, step: int, *, warmup_steps: int = 50) -> np.ndarray:
  """``[P]`` bool: groups that get hints, i.e. all ``G`` rewards are 0 and ``step > warmup_steps``.

  Scaf-GRPO's guidance exemption: before ``warmup_steps`` no group gets hints.
  """
  rewards = base.check_rewards(rewards)
  if step <= warmup_steps:
    return np.zeros(rewards.shape[0], dtype=bool)
  return np.all(rewards == 0.0, axis=1)


@dataclasses.dataclass(frozen=True)
class HintedPrompt:
  """One hinted variant of a question: ``level`` counts from 1 across tiers."""

  level: int
  tier: str
  prompt: List[Dict[str, str]]


def scaf_hint_prompts(question: str, hints: Mapping[str, Sequence[str]], *,
                      tiers: Sequence[Tuple[str, str]] = SCAF_TIERS, parts_per_tier: int = 4,
                      system: Optional[str] = SCAF_SYSTEM_PROMPT) -> List[HintedPrompt]:
  """The cumulative hinted prompts of one question, lowest level first.

  For each tier ``(key, label)`` and ``k = 1..parts_per_tier``, the user turn is
  ``"Question: {question}\\n{label}: " + " ".join(hints[key][:k])``; levels count on across
  tiers (1-4 Knowledge, 5-8 Solution by default). A tier with fewer parts repeats its full hint
  for the remaining ``k``, as slicing does in the reference code.

  Args:
    question: the bare problem text.
    hints: tier key → list of hint parts (e.g. from the dataset's ``metadata``).
    tiers: ``(key, label)`` pairs in escalation order; a missing key is an error.
    parts_per_tier: variants per tier.
    system: system message, None for none.
  """
  out = []
  level = 1
  for key, label in tiers:
    if key not in hints:
      raise KeyError(f"hints has no tier {key!r}; got {sorted(hints)}.")
    parts = list(hints[key])
    for k in range(1, parts_per_tier + 1):
      content = f"Question: {question}\n{label}: {' '.join(parts[:k])}"
      messages = [{"role": "system", "content": system}] if system else []
      messages.append({"role": "user", "content": content})
      out.append(HintedPrompt(level=level, tier=key, prompt=messages))
      level += 1
  return out


def scaf_select(levels: np.ndarray, rewards: np.ndarray) -> int:
  """Index of the sample with the *lowest* hint level among the correct ones (``reward > 0``);
  the first such index on ties; -1 when no hinted sample succeeded."""
  levels = np.asarray(levels)
  rewards = np.asarray(rewards, dtype=np.float64)
  if levels.shape != rewards.shape or levels.ndim != 1:
    raise ValueError(f"levels {levels.shape} and rewards {rewards.shape} must be equal [N].")
  ok = np.flatnonzero(rewards > 0)
  if ok.size == 0:
    return -1
  return int(ok[np.argmin(levels[ok])])  # argmin returns the first minimum


def scaf_replace(group: base.GroupBatch, replacement: Mapping[str, np.ndarray], *,
                 index: int = 0) -> Dict[str, np.ndarray]:
  """Replaces sample ``index`` of one group (``replace_num = 1``) with the hinted sample.

  Every array of ``group`` has leading axis ``G``; ``replacement`` has the same keys with that
  axis dropped. Replace the *whole* sample, prompt tokens included: the hint is then part of the
  conditioning prompt, so it never enters the loss (the loss mask covers completion tokens only)
  and old/ref/current log-probs are all computed on ``q + hint`` (the reference default,
  ``replace_hint_prompt=False``). The caller recomputes the group's rewards and advantages.
  """
  missing = set(group) ^ set(replacement)
  if missing:
    raise ValueError(f"group and replacement keys differ: {sorted(missing)}.")
  out = {}
  for key, value in group.items():
    value = np.array(value, copy=True)
    new = np.asarray(replacement[key])
    if value.shape[1:] != new.shape:
      raise ValueError(f"replacement[{key!r}] has shape {new.shape}, expected {value.shape[1:]} "
                       "(pad the hinted prompt to the group's prompt bucket).")
    value[index] = new
    out[key] = value
  return out


def scaf_hinted_examples(example: task_lib.Example, hints: Mapping[str, Sequence[str]], *,
                         tiers: Sequence[Tuple[str, str]] = SCAF_TIERS,
                         parts_per_tier: int = 4) -> List[Tuple[int, task_lib.Example]]:
  """``(level, hinted example)`` pairs of one example, lowest level first.

  Chat prompts follow the reference code: the last user turn becomes
  ``"Question: {question}\n{label}: {parts}"`` (:func:`scaf_hint_prompts`), the other messages
  (the task's own system prompt) are kept. Plain-text prompts (completion-style, e.g.
  ``"12+7="``) get the hint *before* the question, ``"{label}: {parts}\n{prompt}"``, so the
  completion still continues the question; this placement is ours, the reference has only chat.
  The answer, verifier and metadata are unchanged: the verifier scores the hinted completion
  against the same gold answer.
  """
  prompt = example.prompt
  if isinstance(prompt, str):
    question = prompt
  else:
    users = [i for i, m in enumerate(prompt) if m.get("role") == "user"]
    if not users:
      raise ValueError("A chat prompt needs a user message to attach hints to.")
    question = prompt[users[-1]]["content"]
  out = []
  for hinted in scaf_hint_prompts(question, hints, tiers=tiers, parts_per_tier=parts_per_tier,
                                  system=None):
    content = hinted.prompt[-1]["content"]
    if isinstance(prompt, str):
      hint_line = content.split("\n", 1)[1]  # "{label}: {parts}"
      new_prompt: task_lib.Prompt = f"{hint_line}\n{prompt}"
    else:
      new_prompt = [dict(m) for m in prompt]
      new_prompt[users[-1]]["content"] = content
    out.append((hinted.level, dataclasses.replace(example, prompt=new_prompt)))
  return out


def example_hints(example: task_lib.Example) -> Optional[Dict[str, List[str]]]:
  """The example's hint tiers: ``metadata['hints']``, else the procedural tasks' derived hints
  (:func:`rlvr_jax.data.procedural.scaf_hints`), else None (the group is not hinted)."""
  metadata = example.metadata or {}
  if "hints" in metadata:
    return {k: list(v) for k, v in metadata["hints"].items()}
  return procedural.scaf_hints(example)


class Scaf(base.Stage):
  """Hinted re-rollouts of all-zero groups; the minimal solving hint level replaces sample 0."""

  stream_id = 1
  stacks_generations = True

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    self.warmup_steps = settings["warmup_steps"]
    self.parts_per_tier = settings["parts_per_tier"]
    self.sampler = run.sampler
    self.max_prompt_length = run.max_prompt_length

  def _requests(self, ctx: base.StepContext, group: base.GroupBatch, hard: np.ndarray):
    """``([(group index, level, hinted example)], no_hints, too_long)``."""
    requests, no_hints, too_long = [], 0, 0
    for p in np.flatnonzero(hard):
      example = ctx.examples[group["example_id"][p, 0]]
      hints = example_hints(example)
      if hints is None:
        no_hints += 1
        continue
      for level, hinted in scaf_hinted_examples(example, hints,
                                                parts_per_tier=self.parts_per_tier):
        if self.sampler.prompt_length(hinted.prompt) > self.max_prompt_length:
          too_long += 1
        else:
          requests.append((p, level, hinted))
    return requests, no_hints, too_long

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    hard = scaf_hint_groups(group["raw_rewards"], ctx.step + 1, warmup_steps=self.warmup_steps)
    hard &= group["mask"].sum(axis=(1, 2)) > 0  # not a masked filler group
    requests, no_hints, too_long = self._requests(ctx, group, hard)
    levels = []
    if requests:
      # One sample per hint level, as the reference code (it regenerates one row per level).
      hinted = ctx.sample_one([r[2] for r in requests],
                              [group["example_id"][r[0], 0] for r in requests], self.stream_id)
      hinted = {k: v[:, 0] for k, v in hinted.items()}
      owners = np.array([r[0] for r in requests])
      request_levels = np.array([r[1] for r in requests])
      group = {k: v.copy() for k, v in group.items()}
      for p in np.unique(owners):
        rows = np.flatnonzero(owners == p)
        best = scaf_select(request_levels[rows], hinted["raw_rewards"][rows])
        if best < 0:
          continue
        replacement = {k: v[rows[best]] for k, v in hinted.items()}
        replacement["hint_level"] = np.asarray(request_levels[rows[best]], np.int32)
        new = scaf_replace({k: v[p] for k, v in group.items()}, replacement)
        for k in group:
          group[k][p] = new[k]
        levels.append(request_levels[rows[best]])
    metrics = {"scaf/hard_groups": float(hard.sum()), "scaf/replaced": float(len(levels)),
               "scaf/no_hints": float(no_hints), "scaf/hints_too_long": float(too_long),
               "scaf/mean_level": float(np.mean(levels)) if levels else 0.0}
    return group, metrics
