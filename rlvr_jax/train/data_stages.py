"""Host-side data/group stages (stage D of ``specs/objectives.md`` §3): numpy in, numpy out.

They run between generation and the advantage stage, outside ``jit``, on group-major arrays:
``rewards`` is ``[P, G]`` (prompt ``p``'s ``G`` samples) and a *group batch* is a mapping of
numpy arrays whose leading axis is the group axis ``P`` (e.g. ``tokens [P, G, T]``,
``logprobs [P, G, T]``, ``rewards [P, G]``, ``example_index [P]``). No model code here: the
train loop generates and scores, these functions decide what to keep, add or regenerate.

Stages:

* **DAPO dynamic sampling** (arXiv 2503.14476, eq. 11 and Algorithm 1; verl's
  ``filter_groups``): drop groups whose rewards are all equal (all correct or all wrong), keep
  generating until ``target_groups`` groups survive, at most ``max_rounds`` generation rounds.
  :func:`filter_and_accumulate` is the pure step the loop calls after each round.
* **DARS** difficulty-adaptive rollout sampling (arXiv 2508.13755, ``yangzhch6/DARS``
  ``ray_dars_trainer.py``): :func:`dars_extra_rollouts` says how many extra samples each prompt
  gets, :func:`dars_keep_mask` which prompts survive, :func:`pad_groups` packs the resulting
  variable-size groups into a static ``[P, n_max]`` layout with a validity mask, and
  :func:`dars_merge` appends each prompt's extra rollouts to its group in that layout.
* **Scaf-GRPO** hints (arXiv 2510.19807, ``dvlab-research/Scaf-GRPO``): :func:`scaf_hint_groups`
  picks all-zero groups after the warm-up, :func:`scaf_hint_prompts` builds the cumulative hinted
  prompts (:func:`scaf_hinted_examples` as hinted examples, text or chat), :func:`scaf_select` the
  minimal solving hint level, :func:`scaf_replace` swaps it in; :func:`procedural_hints` reads
  ``metadata['hints']`` or derives cheap hints for the procedural tasks.
* **ViSurf** ground-truth injection (arXiv 2510.10606): :func:`inject_ground_truth` adds the
  reference answer (:func:`gold_completion`, tokenised by :func:`completion_arrays`) as sample
  ``G+1`` with an ``is_injected`` flag. *Experimental*: only the injection itself is stated in
  the paper's abstract; its three reward-control strategies could not be verified and are not
  implemented.
* **LaSeR** self-reward inputs (arXiv 2510.14943): :func:`append_self_reward_token` places
  ``z_c`` after each finished response, :func:`laser_self_rewards` turns its old-policy log-prob
  into ``r_s``.
* **Overlong filtering** (DAPO §3.4): :func:`overlong_filter` removes truncated sequences from
  the loss mask; :func:`mask_prefix_tokens` removes a per-sequence completion prefix (e.g. hint
  tokens forced at the start of a completion).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rlvr_jax.data import task as task_lib

GroupBatch = Mapping[str, np.ndarray]


def _check_rewards(rewards: Any, name: str = "rewards") -> np.ndarray:
  rewards = np.asarray(rewards, dtype=np.float64)
  if rewards.ndim != 2:
    raise ValueError(f"{name} must be [P, G], got shape {rewards.shape}.")
  return rewards


def _check_group_batch(batch: GroupBatch, num_groups: int) -> None:
  for key, value in batch.items():
    if np.shape(value)[:1] != (num_groups,):
      raise ValueError(f"batch[{key!r}] must have leading (group) dimension {num_groups}, "
                       f"got shape {np.shape(value)}.")


# --- DAPO dynamic sampling ------------------------------------------------------------------------


def zero_variance_groups(rewards: np.ndarray, *, atol: float = 0.0) -> np.ndarray:
  """``[P]`` bool: True where a group's rewards are all equal, ``max_g R - min_g R <= atol``.

  With binary correctness this is DAPO's "all correct or all wrong" (eq. 11); for other rewards
  it is verl's rule of identical metric values (``std == 0``), with ``atol`` for float noise.
  """
  rewards = _check_rewards(rewards)
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


def filter_and_accumulate(state: DynamicSamplingState, batch: GroupBatch, rewards: np.ndarray, *,
                          atol: float = 0.0) -> DynamicSamplingState:
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
  rewards = _check_rewards(rewards)
  _check_group_batch(batch, rewards.shape[0])
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


# --- DARS -----------------------------------------------------------------------------------------


def dars_extra_rollouts(accuracy: np.ndarray, n: int, n_max: int, *, schedule: str = "ET",
                        use_std: bool = False, zero_accuracy_eps: float = 1e-6) -> np.ndarray:
  """Extra rollouts per prompt, DARS (arXiv 2508.13755) stage 2.

  With ``S(a) = 2a(1-a)`` (``use_std=False``; GRPO without std, ``A_peak = N/2``) or
  ``S(a) = 2 sqrt(a(1-a))`` (``use_std=True``, ``A_peak = N``), a group of accuracy ``a`` has
  total absolute advantage ``N S(a)``. DARS tops hard prompts up towards the peak:

  * ``a <= zero_accuracy_eps`` is treated as ``a = 0.5 / N``; ``a >= 0.5`` gets no extra samples;
  * ET (equal treatment): ``dN = (A_peak - N S(a)) / S(a)``;
  * HW (hardness weighted): ``dN = (2 (1 - a) A_peak - N S(a)) / S(a)``;
  * ``dN = min(ceil(dN), n_max - n)``.

  Worked examples (N=8, no std): a=1/8 → ET 11, HW 24; a=3/8 → ET 1, HW 3. Checked against
  ``schedule_ET``/``schedule_HW`` of the DARS code (same formula, same plain ``ceil``).

  Args:
    accuracy: ``[P]`` stage-1 accuracy of each prompt's ``n`` samples.
    n: stage-1 samples per prompt.
    n_max: cap on total samples per prompt.
    schedule: ``"ET"`` or ``"HW"``.
    use_std: whether the advantage divides by the group std.
    zero_accuracy_eps: accuracies at or below this count as zero.

  Returns:
    ``[P]`` int64 extra samples, in ``[0, n_max - n]``.
  """
  if schedule not in ("ET", "HW"):
    raise ValueError(f"schedule must be 'ET' or 'HW', got {schedule!r}.")
  if n_max < n:
    raise ValueError(f"n_max ({n_max}) must be >= n ({n}).")
  acc = np.asarray(accuracy, dtype=np.float64)
  if acc.ndim != 1:
    raise ValueError(f"accuracy must be [P], got shape {acc.shape}.")
  a = np.where(acc <= zero_accuracy_eps, 0.5 / n, acc)
  # Clip away from {0, 1} only to keep the division finite where the result is discarded.
  a_safe = np.clip(a, 1e-12, 1 - 1e-12)
  if use_std:
    s = 2.0 * np.sqrt(a_safe * (1.0 - a_safe))
    peak = float(n)
  else:
    s = 2.0 * a_safe * (1.0 - a_safe)
    peak = 0.5 * n
  target = peak if schedule == "ET" else 2.0 * (1.0 - a_safe) * peak
  dn = np.ceil((target - n * s) / s)
  dn = np.where(a >= 0.5, 0.0, np.maximum(dn, 0.0))
  return np.minimum(dn, n_max - n).astype(np.int64)


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


def dars_merge(stage1: GroupBatch, extra: GroupBatch, owner: np.ndarray,
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
  _check_group_batch(stage1, num_groups)
  _check_group_batch(extra, owner.shape[0])
  out, valid = {}, None
  for key in stage1:
    groups = [np.concatenate([np.asarray(stage1[key][p]), np.asarray(extra[key])[owner == p]])
              for p in range(num_groups)]
    out[key], valid = pad_groups(groups, size)
  out["valid"] = valid
  return out


# --- Scaf-GRPO ------------------------------------------------------------------------------------

# The tiers of the released code (Planning is commented out there): levels 1-4 Knowledge,
# 5-8 Solution, each adding one more hint part.
SCAF_TIERS: Tuple[Tuple[str, str], ...] = (
    ("knowledge", "Knowledge Hints"), ("solution", "Solution Hints"))
SCAF_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."


def scaf_hint_groups(rewards: np.ndarray, step: int, *, warmup_steps: int = 50) -> np.ndarray:
  """``[P]`` bool: groups that get hints, i.e. all ``G`` rewards are 0 and ``step > warmup_steps``.

  Scaf-GRPO's guidance exemption: before ``warmup_steps`` no group gets hints.
  """
  rewards = _check_rewards(rewards)
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


def scaf_replace(group: GroupBatch, replacement: Mapping[str, np.ndarray], *,
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


def procedural_hints(example: task_lib.Example) -> Optional[Dict[str, List[str]]]:
  """Scaf-GRPO hints of an example: ``metadata['hints']`` when present, else cheap hints derived
  from the gold answer for the procedural tasks, else None (the group is not hinted).

  * ``procedural/integer`` (arithmetic): knowledge ``"{n} characters."``; solution parts
    ``"Starts {answer[:k]}."`` for growing ``k`` (the last gives it all). Short, because the
    char-level demo's prompts are short (the hinted prompt must fit ``data.prompt_buckets``).
  * ``procedural/countdown``: knowledge ``"Use each number at most once."``; solution parts:
    growing quarters of ``metadata['solution']``.

  These stand in for the paper's LLM-written hints (the mechanism, not the hint quality, is
  what they exercise); a dataset task must provide ``metadata['hints']``
  (``{"knowledge": [...], "solution": [...]}``).
  """
  metadata = example.metadata or {}
  if "hints" in metadata:
    return {k: list(v) for k, v in metadata["hints"].items()}
  answer = str(example.answer)
  if example.verifier == "procedural/integer":
    return {"knowledge": [f"{len(answer)} characters."],
            "solution": [f"Starts {answer[:k]}." for k in range(1, len(answer) + 1)]}
  if example.verifier == "procedural/countdown" and metadata.get("solution"):
    solution = str(metadata["solution"])
    cuts = [max(1, -(-k * len(solution) // 4)) for k in range(1, 5)]
    return {"knowledge": ["Use each number at most once."],
            "solution": [f"Begin with {solution[:c]}" for c in cuts]}
  return None


# --- ViSurf ---------------------------------------------------------------------------------------


def inject_ground_truth(batch: GroupBatch,
                        reference: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Appends the ground-truth sample to every group: ``[P, G, ...]`` → ``[P, G+1, ...]``.

  ViSurf (arXiv 2510.10606) treats the reference response ``y*`` as one more member of the group,
  so group-normalised advantages over ``G+1`` samples give the label an SFT-like positive update.
  ``reference[k]`` is ``[P, ...]`` (one reference per prompt, tokenised and padded like the
  rollouts); the output gains ``is_injected`` ``[P, G+1]`` bool, True in the last column. The
  caller scores the injected sample with the verifier and computes its old log-probs with a
  teacher-forced forward pass (it is off-policy: its ratio is not a true importance ratio).

  Experimental: the paper's reward-control strategies are unverified and not applied here.
  """
  if not batch:
    raise ValueError("inject_ground_truth needs a non-empty batch.")
  missing = set(batch) ^ set(reference)
  if missing:
    raise ValueError(f"batch and reference keys differ: {sorted(missing)}.")
  out = {}
  num_groups = None
  for key, value in batch.items():
    value = np.asarray(value)
    ref = np.asarray(reference[key], dtype=value.dtype)
    if value.ndim < 2 or ref.shape != value.shape[:1] + value.shape[2:]:
      raise ValueError(f"batch[{key!r}] {value.shape} must be [P, G, ...] and reference "
                       f"[P, ...]; got reference {ref.shape}.")
    num_groups = value.shape[0]
    out[key] = np.concatenate([value, ref[:, None]], axis=1)
  size = next(iter(out.values())).shape[1]
  is_injected = np.zeros((num_groups, size), dtype=bool)
  is_injected[:, -1] = True
  out["is_injected"] = is_injected
  return out


def gold_completion(example: task_lib.Example) -> str:
  """ViSurf's ground-truth completion ``y*``: ``metadata['sft_target']`` when the task provides
  one (the answer rendered in the task's answer format, as the SFT warm-up uses), else the
  bare gold answer (the procedural tasks' completion format)."""
  metadata = example.metadata or {}
  return str(metadata.get("sft_target", example.answer))


def completion_arrays(token_ids: Sequence[Sequence[int]], width: int,
                      pad_id: int) -> Dict[str, np.ndarray]:
  """Token-id lists (stop token included) as rollout-like arrays of ``width`` columns.

  Returns ``tokens [N, width]`` int32 (``pad_id`` after the end), ``lengths [N]`` int32
  (``min(len, width)``), ``mask [N, width]`` float32 and ``truncated [N]`` float32 (1 where the
  sequence did not fit, as a rollout cut at ``max_new_tokens``).
  """
  n = len(token_ids)
  tokens = np.full((n, width), pad_id, np.int32)
  lengths = np.zeros(n, np.int32)
  truncated = np.zeros(n, np.float32)
  for i, ids in enumerate(token_ids):
    ids = list(ids)
    lengths[i] = min(len(ids), width)
    truncated[i] = float(len(ids) > width)
    tokens[i, :lengths[i]] = ids[:lengths[i]]
  mask = (np.arange(width)[None] < lengths[:, None]).astype(np.float32)
  return {"tokens": tokens, "lengths": lengths, "mask": mask, "truncated": truncated}


# --- LaSeR ----------------------------------------------------------------------------------------


def append_self_reward_token(tokens: np.ndarray, lengths: np.ndarray, truncated: np.ndarray,
                             token_id: int, pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
  """LaSeR (arXiv 2510.14943): the token ``z_c`` right after each finished response's stop token.

  ``tokens [B, T]`` gain one column: ``[B, T+1]``. A finished response (``truncated`` 0) of
  ``lengths[b]`` tokens (stop token included) gets ``z_c`` at position ``lengths[b]``, so the
  teacher-forced log-prob there is ``log π(z_c | q, o_b, eos)``; a truncated one gets nothing
  (the official code appends ``z_c`` to finished responses only) and position ``T``, a pad column.

  Returns:
    ``(tokens [B, T+1] int32, positions [B] int32)``.
  """
  tokens = np.asarray(tokens)
  lengths = np.asarray(lengths)
  truncated = np.asarray(truncated).astype(bool)
  if tokens.ndim != 2 or lengths.shape != tokens.shape[:1] or truncated.shape != lengths.shape:
    raise ValueError(f"tokens must be [B, T], lengths and truncated [B]; got {tokens.shape}, "
                     f"{lengths.shape}, {truncated.shape}.")
  b, t = tokens.shape
  out = np.concatenate([tokens, np.full((b, 1), pad_id, tokens.dtype)], axis=1).astype(np.int32)
  positions = np.where(truncated, t, lengths).astype(np.int32)
  finished = np.flatnonzero(~truncated)
  out[finished, positions[finished]] = token_id
  return out, positions


def laser_self_rewards(token_logprobs: np.ndarray, positions: np.ndarray, truncated: np.ndarray,
                       *, beta_v: float, c_ref: float, temperature: float) -> np.ndarray:
  """LaSeR self-rewards ``r_s = β_v·(T·log π_old(z_c | q, o, eos) − c_ref)`` ``[B]`` float32.

  ``token_logprobs [B, T+1]`` are the old policy's teacher-forced (temperature-scaled) log-probs
  of the sequences from :func:`append_self_reward_token`; ``positions`` its ``z_c`` positions.
  Truncated responses score 0 (they have no ``z_c``; ``advantages.mix_self_reward`` also zeroes
  them).
  """
  token_logprobs = np.asarray(token_logprobs, np.float64)
  positions = np.asarray(positions)
  lp = np.take_along_axis(token_logprobs, positions[:, None].astype(np.int64), axis=1)[:, 0]
  r_s = beta_v * (temperature * lp - c_ref)
  return np.where(np.asarray(truncated).astype(bool), 0.0, r_s).astype(np.float32)


# --- Loss-mask stages -----------------------------------------------------------------------------


def overlong_filter(mask: np.ndarray, truncated: np.ndarray) -> np.ndarray:
  """``mask [B, T]`` with the rows of truncated sequences (``truncated [B]`` true) zeroed.

  DAPO's overlong filtering: a sequence cut at ``max_new_tokens`` has no final answer to judge,
  so it is removed from the loss (and, through the global counts, from the normaliser).
  """
  mask = np.asarray(mask)
  truncated = np.asarray(truncated).astype(bool)
  if mask.ndim != 2 or truncated.shape != mask.shape[:1]:
    raise ValueError(f"mask must be [B, T] and truncated [B]; got {mask.shape}, {truncated.shape}.")
  return np.where(truncated[:, None], np.zeros_like(mask), mask)


def mask_prefix_tokens(mask: np.ndarray, prefix_lengths: np.ndarray) -> np.ndarray:
  """``mask [B, T]`` with the first ``prefix_lengths[b]`` completion tokens of each row zeroed.

  For tokens that were forced rather than sampled (e.g. a hint placed at the start of the
  completion): they condition the rest but carry no loss.
  """
  mask = np.asarray(mask)
  prefix_lengths = np.asarray(prefix_lengths)
  if mask.ndim != 2 or prefix_lengths.shape != mask.shape[:1]:
    raise ValueError(f"mask must be [B, T] and prefix_lengths [B]; got {mask.shape}, "
                     f"{prefix_lengths.shape}.")
  t = np.arange(mask.shape[1])
  return np.where(t[None, :] < prefix_lengths[:, None], np.zeros_like(mask), mask)


def group_stage_metrics(rewards: np.ndarray) -> Dict[str, float]:
  """Per-step group statistics: ``frac_reward_zero_std`` (TRL's name), all-correct and
  all-wrong fractions, for ``rewards [P, G]`` with binary correctness."""
  rewards = _check_rewards(rewards)
  return {
      "frac_reward_zero_std": float(zero_variance_groups(rewards).mean()),
      "groups/all_correct": float(np.all(rewards > 0, axis=1).mean()),
      "groups/all_wrong": float(np.all(rewards <= 0, axis=1).mean()),
  }
