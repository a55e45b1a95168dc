"""From a step's group batch to the objective's inputs: advantages and the update's batch.

:func:`advantage_inputs` and :func:`train_batch` turn the group batch (``[P, W, ...]`` host arrays, see
:mod:`rlvr_jax.train.stages.base`) and the old/reference log-probs into

* :class:`~rlvr_jax.types.AdvantageInputs` for the objective's reward transform and advantage
  estimator (run jit'd by :func:`group_advantages`), and
* the update's :class:`~rlvr_jax.train.step.TrainBatch` of ``P·W`` rows.

What an objective may read is fixed here, in one place: :data:`ADVANTAGE_INPUTS` and
:data:`LOSS_INPUTS`, plus whatever the run's stages provide (a group array named like an input the
objective reads goes to ``AdvantageInputs.extras`` or ``LossBatch.extras``).
:func:`check_objective_inputs` compares the objective's ``advantage_reads``/``loss_reads`` with
them at start-up.

Two choices here remove work that would change nothing (``docs/training.md``, *Efficiency*):

* :func:`old_logprobs_source`: where the old (behaviour) log-probs come from, so a teacher-forced
  pass runs only when the sampler's own log-probs are not the update's;
* :func:`trim_padding`: the scoring passes and the update read a completion axis cut to a
  power-of-two width holding the step's longest completion, not ``max_new_tokens`` columns of
  padding, and prompts cut back to the smallest bucket that holds them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import types
from rlvr_jax.train import step as step_lib
from rlvr_jax.train.stages import base

# Always provided to the reward transform and the advantage estimator.
ADVANTAGE_INPUTS = frozenset(
    [f.name for f in dataclasses.fields(types.AdvantageInputs) if f.name != "extras"]
    + ["old_logprobs", "ref_logprobs", "step", "correct"])

# Always provided to the loss: the LossBatch fields, the policy's log-probs and entropy, and the
# (weighted) advantages.
LOSS_INPUTS = frozenset(
    [f.name for f in dataclasses.fields(types.LossBatch) if f.name != "extras"]
    + ["logprobs", "entropy", "advantages"])


# Old log-probs: the sampler's (``"rollout"``), the update's own, detached (``"policy"``), or a
# teacher-forced pass under the sampling params before the update (``"recompute"``).
OLD_LOGPROB_SOURCES = ("rollout", "policy", "recompute")

# Widths the completion axis is trimmed to: powers of two from this one (and the full width).
MIN_COMPLETION_WIDTH = 32


def rollout_logprobs_exact(model_dtype: str, *, top_p: Optional[float], top_k: Optional[int],
                           lora_dropout: float, backend: Optional[str] = None) -> bool:
  """Whether the sampler's log-probs are what the update computes, to float32 rounding.

  True for float32 compute with float32 matmuls (a CPU, or ``jax_default_matmul_precision`` set
  to ``"float32"``/``"highest"``: GPUs run float32 matmuls as TF32 and TPUs as bfloat16 by
  default), plain temperature sampling (top-k/top-p log-probs are those of the truncated
  distribution) and no LoRA dropout (the update's forward pass drops adapter units, the
  sampler's does not). Measured on SmolLM2-135M-Instruct (``benchmarks/vs_trl.py
  --which=logprob_gap``, 888 and 1119 sampled tokens): float32 on a CPU, at most 3.2e-5 apart;
  bfloat16, 0.026 on average and up to 0.26 (a PPO ratio up to 29% off, beyond ε = 0.2).
  """
  if model_dtype != "float32" or top_p is not None or top_k is not None or lora_dropout:
    return False
  backend = backend or jax.default_backend()
  precision = str(jax.config.jax_default_matmul_precision or "").lower()
  return backend == "cpu" or precision in ("float32", "highest")


def old_logprobs_source(config: Any, objective: Any, *, backend: Optional[str] = None) -> str:
  """Where a run's old log-probs come from (:data:`OLD_LOGPROB_SOURCES`).

  ``config.rl.recompute_old_logprobs``: True recomputes, False takes the sampler's, None (the
  default) chooses: the sampler's when they are exact
  (:func:`rollout_logprobs_exact`); else, with one update per rollout, the update's own log-probs
  with the gradient stopped (the policy that sampled *is* the one being updated, so the PPO ratio
  is exactly 1 whatever the precision: TRL's choice when ``num_iterations == 1``, which skips its
  old-log-prob pass); else a teacher-forced pass (verl's ``actor.compute_log_prob``). An
  advantage stage that reads ``old_logprobs`` (KL in the reward) gets a pass in that last case
  too, since it runs before the update.
  """
  rl = config.rl
  if rl.recompute_old_logprobs is not None:
    return "recompute" if rl.recompute_old_logprobs else "rollout"
  if rollout_logprobs_exact(config.model.dtype, top_p=rl.top_p, top_k=rl.top_k,
                            lora_dropout=config.lora.dropout if config.lora.rank else 0.0,
                            backend=backend):
    return "rollout"
  if (rl.num_iterations * rl.num_mini_batches == 1
      and "old_logprobs" not in objective.advantage_reads):
    return "policy"
  return "recompute"


def completion_width(group: Mapping[str, np.ndarray],
                     min_width: int = MIN_COMPLETION_WIDTH) -> int:
  """The completion width a step's scoring and update need: the smallest power of two
  ``>= min_width`` that holds every column the loss or the attention reads (``mask``, and a
  multi-turn group's ``attention_mask``), capped at the group's width ``T``.

  At most ``log2(T / min_width) + 2`` widths, so at most that many compilations of each jit'd
  pass per prompt width; a step with a truncated completion keeps ``T``.
  """
  used = np.asarray(group["mask"]) > 0
  if "attention_mask" in group:
    used |= np.asarray(group["attention_mask"]) > 0
  full = used.shape[-1]
  columns = np.flatnonzero(used.reshape(-1, full).any(axis=0))
  longest = int(columns[-1]) + 1 if columns.size else 1
  width = min_width
  while width < longest:
    width *= 2
  return min(width, full)


def prompt_width(group: Mapping[str, np.ndarray], buckets: Iterable[int]) -> int:
  """The smallest prompt bucket that holds the group's longest prompt (left-padded), capped at
  the group's prompt width: a step that stacks generations pads every prompt to the largest
  bucket, which its scoring and update need not read."""
  mask = np.asarray(group["prompt_mask"])
  full = mask.shape[-1]
  real = np.flatnonzero(mask.reshape(-1, full).any(axis=0))
  longest = full - int(real[0]) if real.size else 1
  return min([b for b in buckets if b >= longest] + [full])


def trim_padding(group: Mapping[str, np.ndarray], prompt_buckets: Iterable[int], *,
                 completions: bool = True) -> Dict[str, np.ndarray]:
  """``group`` with the padding no pass reads cut off: the prompt axis from the left to
  :func:`prompt_width`, and (``completions``) the completion axis from the right to
  :func:`completion_width`.

  Every ``[P, W, T, ...]`` array but the prompts' is cut on its third axis (tokens, log-probs,
  masks, token rewards, a stage's per-token columns such as VeriFree's ``answer_mask``), so the
  teacher-forced passes, the advantages and the update read the cut widths. The dropped columns
  carry no mask: positions count real tokens only and attention skips masked ones, so the
  log-probs of the kept columns are the same up to float rounding, and every loss and advantage
  term is masked, so the loss and its gradient are unchanged (``tests/train/test_batch_trim.py``).
  Not for LaSeR's groups (``completions=False``): its ``z_c`` column sits outside the mask.
  """
  p, w, t = np.shape(group["tokens"])[:3]
  length = np.shape(group["prompt_tokens"])[-1]
  keep_prompt = prompt_width(group, prompt_buckets)
  keep = completion_width(group) if completions else t
  if keep_prompt >= length and keep >= t:
    return dict(group)
  out = dict(group)
  for key in ("prompt_tokens", "prompt_mask"):
    out[key] = np.asarray(group[key])[..., length - keep_prompt:]
  if keep < t:
    for key, value in group.items():
      if key not in ("prompt_tokens", "prompt_mask") and np.ndim(value) >= 3 and (
          np.shape(value)[:3] == (p, w, t)):
        out[key] = np.asarray(value)[:, :, :keep]
  return out


def check_objective_inputs(objective, provided: Iterable[str]) -> None:
  """Fails at start-up, not mid-run, when the objective reads an input that neither the loop nor
  a registered stage produces (THR's ``thr`` token rewards; a user objective's own ``extras``)."""
  provided = set(provided)
  missing = ((set(objective.advantage_reads) - ADVANTAGE_INPUTS - provided)
             | (set(objective.loss_reads) - LOSS_INPUTS - provided))
  if missing:
    raise NotImplementedError(
        f"Objective {objective.name!r} reads {sorted(missing)}, which the RL loop does not "
        f"produce (always: advantage side {sorted(ADVANTAGE_INPUTS)}, loss side "
        f"{sorted(LOSS_INPUTS)}; from stages: {sorted(provided)}). Register a stage that "
        "provides it (docs/add_your_own_method.md) or use the objective from your own loop.")


def make_advantage_fn(objective) -> Callable[[types.AdvantageInputs], Tuple[jax.Array, jax.Array]]:
  """jit'd ``inputs -> (transformed rewards [P,G], token advantages [P,G,T])``."""

  def fn(inputs: types.AdvantageInputs):
    rewards = objective.reward_transform(inputs.rewards, inputs)
    inputs = dataclasses.replace(inputs, rewards=rewards)
    advantages = objective.advantage(inputs)
    if advantages.ndim == 2:
      advantages = advantages[..., None]
    return rewards, jax.lax.stop_gradient(jnp.where(inputs.mask > 0, advantages, 0.0))

  return jax.jit(fn)


def group_advantages(advantage_fn, inputs: types.AdvantageInputs, valid: np.ndarray
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """The advantage stage on groups of their real size (``valid [P, W]``, a prefix of each row).

  Groups of equal size go through ``advantage_fn`` together, padded by repetition to ``P`` groups:
  one compilation per distinct size (at most ``W - G + 1`` with DARS), never per step. Without
  padding slots, one call.
  """
  sizes = valid.sum(axis=1)
  if (sizes == valid.shape[1]).all():
    rewards, advantages = advantage_fn(inputs)
    return np.asarray(rewards, np.float32), np.asarray(advantages, np.float32)
  num_prompts = valid.shape[0]
  rewards = np.zeros(valid.shape, np.float32)
  advantages = np.zeros(np.shape(inputs.mask), np.float32)
  for n in np.unique(sizes):
    rows = np.flatnonzero(sizes == n)
    padded = np.concatenate([rows, np.full(num_prompts - len(rows), rows[0])])

    def take(x, rows=padded, n=int(n)):
      x = np.asarray(x)
      return jnp.asarray(x[rows][:, :n]) if x.ndim >= 2 else jnp.asarray(x[rows])

    part = jax.tree.map(take, dataclasses.replace(
        inputs, extras={k: v for k, v in inputs.extras.items() if k != "step"}))
    part = dataclasses.replace(part, extras={**part.extras, "step": inputs.extras["step"]})
    r, a = advantage_fn(part)
    rewards[rows, :n] = np.asarray(r)[:len(rows)]
    advantages[rows, :n] = np.asarray(a)[:len(rows)]
  return rewards, advantages


def loss_mask(group: Mapping[str, np.ndarray]) -> np.ndarray:
  """``[P, W, T]``: the completion mask of samples that stay in the loss."""
  return group["mask"] * group["in_loss"][..., None]


def effective_truncated(group: Mapping[str, np.ndarray]) -> np.ndarray:
  """``[P, W]``: truncated, or out of the batch (no loss token: a filler group, DARS padding or a
  dropped group, a filtered sequence), which per-sequence terms must skip alike."""
  out_of_batch = loss_mask(group).sum(axis=2) == 0
  return np.maximum(group["truncated"], out_of_batch).astype(np.float32)


def advantage_inputs(group: Mapping[str, np.ndarray], old_logprobs: np.ndarray,
                     ref_logprobs: np.ndarray, step: int, reads: Iterable[str]
                     ) -> types.AdvantageInputs:
  """The advantage stage's inputs; group arrays named in ``reads`` become ``extras``."""
  extras = {k: group[k] for k in reads if k in group and k not in ADVANTAGE_INPUTS}
  p, w, t = group["mask"].shape
  return types.AdvantageInputs(
      rewards=group["raw_rewards"].astype(np.float32), mask=group["mask"].astype(np.float32),
      tokens=group["tokens"], lengths=group["lengths"], truncated=effective_truncated(group),
      token_rewards=np.asarray(group.get("token_rewards", np.zeros((p, w, t))), np.float32),
      extras={"old_logprobs": old_logprobs, "ref_logprobs": ref_logprobs,
              "correct": (group["raw_rewards"] >= 1.0).astype(np.float32),
              "step": jnp.asarray(step, jnp.int32), **extras})


def train_batch(group: Mapping[str, np.ndarray], rewards: np.ndarray, advantages: np.ndarray,
                old_logprobs: np.ndarray, ref_logprobs: np.ndarray, reads: Iterable[str]
                ) -> step_lib.TrainBatch:
  """The update's ``P·W`` rows; group arrays named in ``reads`` become ``LossBatch.extras``; a
  multi-turn group's ``attention_mask`` becomes the ``completion_mask`` the update attends to."""
  p, w = group["raw_rewards"].shape
  rows = lambda x: np.asarray(x).reshape((p * w,) + np.shape(x)[2:])
  flat = base.flatten({k: group[k] for k in reads if k in group and k not in LOSS_INPUTS},
                      (p, w))
  return step_lib.TrainBatch(
      prompt_tokens=rows(group["prompt_tokens"]), prompt_mask=rows(group["prompt_mask"]),
      completion_tokens=rows(group["tokens"]),
      completion_mask=(rows(group["attention_mask"]).astype(np.float32)
                       if "attention_mask" in group else None),
      loss=types.LossBatch(
          mask=rows(loss_mask(group)).astype(np.float32),
          advantages=rows(advantages).astype(np.float32),
          old_logprobs=rows(old_logprobs).astype(np.float32),
          ref_logprobs=rows(ref_logprobs).astype(np.float32),
          rollout_logprobs=rows(group["logprobs"]).astype(np.float32),
          rewards=rows(rewards).astype(np.float32),
          correct=rows(group["raw_rewards"] >= 1.0).astype(np.float32),
          group_ids=np.repeat(np.arange(p, dtype=np.int32), w),
          truncated=rows(effective_truncated(group)),
          extras=flat))


def minibatch_rows(order: np.ndarray, index: int, num_mini_batches: int, width: int
                   ) -> np.ndarray:
  """Row indices of mini-batch ``index``: whole groups ``order[i·P/M:(i+1)·P/M]`` of ``width``."""
  per = len(order) // num_mini_batches
  groups = order[index * per:(index + 1) * per]
  return (groups[:, None] * width + np.arange(width)[None]).reshape(-1)


def take_rows(batch: Any, rows: np.ndarray) -> Any:
  """The rows ``rows`` of every leaf of a host batch pytree."""
  return jax.tree.map(lambda x: x[rows], batch)

