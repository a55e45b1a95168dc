"""ViSurf: the ground-truth completion as one more member of every group (arXiv 2510.10606).

The reference answer ``y*`` (:func:`gold_completion`, tokenised by :func:`completion_arrays`) is
appended as sample ``G+1`` of each group (:func:`inject_ground_truth`), scored by the verifier,
with teacher-forced log-probs under the sampling policy as its behaviour log-probs (it is
off-policy: its ratio is not a true importance ratio). Group-normalised advantages over ``G+1``
samples then give the label an SFT-like positive update.

*Experimental*: only the injection itself is stated in the paper's abstract; its three
reward-control strategies could not be verified and are not applied. No config keys.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Tuple

import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train.stages import base

DEFAULTS: Dict[str, Any] = {}


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


class Visurf(base.Stage):
  """The ground-truth completion as sample ``G+1`` of every group, scored and teacher-forced."""

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    del settings
    self.sampler = run.sampler

  def width(self, width: int) -> int:
    return width + 1

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    tokenizer = self.sampler.tokenizer
    num_prompts = group["raw_rewards"].shape[0]
    examples = [ctx.examples[i] for i in group["example_id"][:, 0]]
    ids = [tokenizer(gold_completion(e), add_special_tokens=False)["input_ids"]
           + [tokenizer.eos_token_id] for e in examples]
    gold = completion_arrays(ids, group["tokens"].shape[2], self.sampler.pad_id)
    texts = text_sampler.decode_completions(tokenizer, gold["tokens"], gold["lengths"])
    scored = ctx.scorer(texts, examples)
    live = group["mask"].sum(axis=(1, 2)) > 0  # filler groups stay fully masked
    reference = {
        "prompt_tokens": group["prompt_tokens"][:, 0], "prompt_mask": group["prompt_mask"][:, 0],
        "tokens": gold["tokens"], "mask": gold["mask"] * live[:, None],
        "in_loss": np.ones(num_prompts, np.float32), "lengths": gold["lengths"],
        "truncated": gold["truncated"],
        "logprobs": np.zeros(gold["mask"].shape, np.float32),  # teacher-forced below
        "raw_rewards": np.asarray(scored.rewards, np.float32),
        "reward_errors": np.asarray(scored.errors, np.float32),
        "reward_timeouts": np.asarray(scored.timeouts, np.float32),
        "example_id": group["example_id"][:, 0], "valid": np.ones(num_prompts, bool),
        "hint_level": np.zeros(num_prompts, np.int32)}
    group = inject_ground_truth({k: v for k, v in group.items() if k != "is_injected"},
                                reference)
    # y* was not sampled: its behaviour log-probs are teacher-forced under the sampling policy.
    scored_logprobs = ctx.group_logprobs(group)
    group["logprobs"][:, -1] = scored_logprobs[:, -1] * group["mask"][:, -1]
    metrics = {"visurf/gold_reward": float(scored.rewards[live].mean()) if live.any() else 0.0,
               "visurf/gold_truncated": float(gold["truncated"].mean())}
    return group, metrics
