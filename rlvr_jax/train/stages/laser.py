"""LaSeR's self-reward inputs (arXiv 2510.14943): the ``z_c`` token and ``r_s``.

An input provider, on when the objective reads ``self_rewards`` (the ``laser`` preset). After
each finished response's stop token it appends LaSeR's ``z_c`` token
(:func:`append_self_reward_token`; one more completion column, outside the loss mask), scores it
under the sampling policy, and provides:

* ``self_rewards`` ``[P, W]``: ``r_s = β_v·(T·log π_old(z_c | q, o, eos) − c_ref)``
  (:func:`laser_self_rewards`), for the advantage mixing;
* ``selfreward_position`` ``[P, W]``: where ``z_c`` sits, for the loss's self-reward MSE;
* ``selfreward_weights`` ``[P, W]``: the class-balanced weights over the whole batch
  (:func:`rlvr_jax.objectives.regularizers.laser_class_weights`), so micro-batches agree.

``β_v``, ``c_ref`` and the temperature are the objective's own (``objective.hparams``, as the
loss reads them), else the ``laser`` preset's defaults. Config (``config.rl.stages.laser``):
``token``, the ``z_c`` token (a string or id; empty: Qwen's ``<|vision_start|>``, the official
choice, then Llama-3's ``<|reserved_special_token_0|>``, then the tokenizer's ``unk_token``).
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from rlvr_jax.objectives import presets
from rlvr_jax.objectives import regularizers
from rlvr_jax.train.stages import base

DEFAULTS = dict(token="")
_HPARAMS = ("beta_v", "c_ref", "temperature")


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
                   "config.rl.stages.laser.token to a rarely used token (string or id).")


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


class SelfRewards(base.Stage):
  """Appends ``z_c`` and provides ``self_rewards``, ``selfreward_position``,
  ``selfreward_weights``."""

  extra_columns = 1
  scores_all_positions = True  # the loss reads z_c's log-prob, outside the loss mask
  provides = ("self_rewards", "selfreward_position", "selfreward_weights")

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    hparams = dict(getattr(run.objective, "hparams", {}) or {})
    defaults = presets.defaults("laser")
    self.beta_v, self.c_ref, self.temperature = (hparams.get(k, defaults[k]) for k in _HPARAMS)
    if self.temperature != run.temperature:
      raise ValueError(f"LaSeR's temperature ({self.temperature}) must equal "
                       f"config.rl.temperature ({run.temperature}): it undoes the log-probs' "
                       "temperature scaling.")
    token = settings["token"]
    self.token_id = self_reward_token_id(run.sampler.tokenizer,
                                         int(token) if str(token).isdigit() else token or None)
    self.pad_id = run.sampler.pad_id

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    p, w, t = group["tokens"].shape
    # A sample without loss tokens (a filler group, DARS padding or a dropped group, an
    # overlong-filtered sequence) is out of the batch: like a truncated one, it has no z_c.
    out_of_batch = (group["mask"] * group["in_loss"][..., None]).sum(axis=2) == 0
    truncated = np.maximum(group["truncated"], out_of_batch).reshape(-1)
    tokens, positions = append_self_reward_token(
        group["tokens"].reshape(p * w, t), group["lengths"].reshape(-1), truncated,
        self.token_id, self.pad_id)
    group = dict(group, tokens=tokens.reshape(p, w, t + 1),
                 mask=np.pad(group["mask"], ((0, 0), (0, 0), (0, 1))),
                 logprobs=np.pad(group["logprobs"], ((0, 0), (0, 0), (0, 1))))
    scored = ctx.group_logprobs(group, all_positions=True).reshape(p * w, t + 1)
    self_rewards = laser_self_rewards(scored, positions, truncated, beta_v=self.beta_v,
                                      c_ref=self.c_ref, temperature=self.temperature)
    correct = (group["raw_rewards"].reshape(-1) >= 1.0).astype(np.float32)
    weights = np.asarray(regularizers.laser_class_weights(correct, truncated), np.float32)
    finished = truncated < 0.5
    group.update(self_rewards=self_rewards.reshape(p, w),
                 selfreward_position=positions.reshape(p, w),
                 selfreward_weights=weights.reshape(p, w))
    metrics = {"laser/self_reward_mean":
               float(self_rewards[finished].mean()) if finished.any() else 0.0}
    return group, metrics
