"""Surrogates (stage S): the differentiated part of a policy objective.

Each surrogate is a pure function of the current policy's log-probs of the sampled tokens
``logprobs`` ``[B, T]`` (the only argument that carries gradient) and constants: ``old_logprobs``
(behaviour policy), ``advantages`` (already broadcast to ``[B, T]``), ``mask``, correctness labels,
group ids. Constants are wrapped in ``jax.lax.stop_gradient`` inside every function, so passing
traced values by mistake cannot leak gradient into them.

Every function returns ``(loss, diagnostics)``:

* ``loss`` is the per-token loss ``[B, T]`` (to be aggregated by ``aggregation``), or a
  per-sequence loss ``[B]`` for sequence objectives (GMPO, PACS), or a per-group loss stored on the
  first sequence of each group (REAL). Losses are minimised (``L = -J``).
* ``diagnostics`` maps metric names to per-token ``[B, T]`` (or per-sequence ``[B]``) float arrays;
  ``rlvr_jax.objectives.metrics.summarize`` reduces them with the global counts (mean by default,
  masked min/max for names ending in ``min``/``max``). Names follow TRL where TRL has one
  (``clip_ratio/low_mean``, ``clip_ratio/high_mean``, ``clip_ratio/region_mean``).

Log-ratios are clamped before ``exp`` (``log_ratio_clamp``, verl's ±20; GSPO's ≤10): the forward
value stays finite for any input, and a clamped token gets zero gradient. Surrogates that take a
``mask`` sum over tokens by select (``masked``), never ``x * mask``, so inf/NaN on a masked position
cannot reach a sequence sum; token-level ones leave masked positions to the aggregation, and the
objective (``loss_stages.Loss``) zeroes the constants there before calling them.
"""

from __future__ import annotations

from typing import Optional, Union

import jax
import jax.numpy as jnp

Array = jax.Array
Diagnostics = dict[str, Array]
sg = jax.lax.stop_gradient


def check_token_shapes(name: str, **arrays: Array) -> None:
  """Raises ``ValueError`` naming ``name`` unless all ``arrays`` share one ``[B, T]`` shape."""
  shapes = {k: tuple(v.shape) for k, v in arrays.items()}
  first = next(iter(shapes.values()))
  if len(first) != 2 or any(s != first for s in shapes.values()):
    raise ValueError(f"{name}: expected arrays of one shape [B, T], got {shapes}")


def _check_per_sequence(name: str, batch: int, **arrays: Array) -> None:
  for k, v in arrays.items():
    if v.shape != (batch,):
      raise ValueError(f"{name}: {k} must have shape [B]=({batch},), got {v.shape}")


def masked(x: Array, mask: Array) -> Array:
  """``m·x`` by select: 0 where ``mask == 0`` even if ``x`` is inf/NaN there (``inf·0`` is NaN),
  with an exactly zero gradient at those positions."""
  return jnp.where(mask > 0, x * mask, 0.0)


def _log_ratio(logprobs: Array, old_logprobs: Array, clamp: float) -> Array:
  return jnp.clip(logprobs - sg(old_logprobs), -clamp, clamp)


def _approx_kl(logprobs: Array, old_logprobs: Array) -> Array:
  # verl's ``ppo_kl`` diagnostic: mean of (old - current) over tokens.
  return sg(old_logprobs - logprobs)


def _clip_fractions(low: Array, high: Array) -> Diagnostics:
  low = low.astype(jnp.float32)
  high = high.astype(jnp.float32)
  return {
      "clip_ratio/low_mean": low,
      "clip_ratio/high_mean": high,
      "clip_ratio/region_mean": jnp.maximum(low, high),
  }


def _local_groups(group_ids: Array) -> Array:
  """Maps arbitrary group ids ``[B]`` to segment ids in ``[0, B)``: each sequence's group is named
  by the index of the group's first sequence (a ``[B, B]`` comparison; no sort, jit-friendly)."""
  same = group_ids[:, None] == group_ids[None, :]
  return jnp.argmax(same, axis=1)


def _sequence_mean_log_ratio(logprobs: Array, old_logprobs: Array, mask: Array,
                             clamp: float) -> tuple[Array, Array]:
  lengths = jnp.sum(mask, axis=-1)
  log_ratio = masked(_log_ratio(logprobs, old_logprobs, clamp), mask)
  # GSPO (arXiv 2507.18071 §4) clamps T_i >= 1 so that empty sequences do not divide by zero.
  return jnp.sum(log_ratio, axis=-1) / jnp.maximum(lengths, 1.0), lengths


def reinforce(logprobs: Array, advantages: Array) -> tuple[Array, Diagnostics]:
  """Plain REINFORCE: ``l_{i,t} = -sg(A_{i,t}) · lp_{i,t}`` (Williams 1992; ReMax arXiv 2310.10505).

  Also verl ``loss_mode='gpg'`` and the on-policy limit of every ratio surrogate below.
  """
  check_token_shapes("reinforce", logprobs=logprobs, advantages=advantages)
  return -sg(advantages) * logprobs, {}


def _pessimistic_clip(ratio: Array, advantages: Array, epsilon_low: float,
                      epsilon_high: float) -> tuple[Array, Diagnostics]:
  """PPO's ``max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high))`` per token, with TRL's clip fractions
  (``ρ < 1−ε_low ∧ A < 0``, ``ρ > 1+ε_high ∧ A > 0``); shared by token and sequence ratios."""
  loss = jnp.maximum(-advantages * ratio,
                     -advantages * jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high))
  ratio_value = sg(ratio)
  diagnostics = _clip_fractions((ratio_value < 1.0 - epsilon_low) & (advantages < 0),
                                (ratio_value > 1.0 + epsilon_high) & (advantages > 0))
  return loss, diagnostics


def ppo_clip(logprobs: Array, old_logprobs: Array, advantages: Array, *,
             epsilon_low: float = 0.2, epsilon_high: float = 0.2,
             dual_clip: Optional[float] = None,
             log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """Clipped surrogate with clip-higher and optional dual-clip.

  ``ρ = exp(clip(lp − lo, ±log_ratio_clamp))``;
  ``l = max(−Aρ, −A·clip(ρ, 1−ε_low, 1+ε_high))``; with dual-clip ``c > 1`` and ``A < 0``:
  ``l = min(l, −A·c)``.

  PPO: Schulman et al. 2017, arXiv 1707.06347; clip-higher: DAPO, arXiv 2503.14476 §3.1;
  dual-clip: Ye et al. 2019, arXiv 1912.09729. Matches verl ``loss_mode='vanilla'`` (which always
  applies ``clip_ratio_c=3``: pass ``dual_clip=3.0`` for parity) and TRL ``loss_type`` in
  ``{grpo, bnpo, dr_grpo, dapo}`` with ``epsilon``/``epsilon_high`` (TRL ``delta`` is not dual-clip).

  Diagnostics (TRL definitions): ``clip_ratio/low_mean`` = ``ρ < 1−ε_low ∧ A < 0``,
  ``clip_ratio/high_mean`` = ``ρ > 1+ε_high ∧ A > 0``, their union ``clip_ratio/region_mean``,
  ``clip_ratio/dual_mean`` (dual-clip bound active) and ``approx_kl`` (``lo − lp``).
  """
  check_token_shapes("ppo_clip", logprobs=logprobs, old_logprobs=old_logprobs,
                     advantages=advantages)
  if dual_clip is not None and dual_clip <= 1.0:
    raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
  advantages = sg(advantages)
  ratio = jnp.exp(_log_ratio(logprobs, old_logprobs, log_ratio_clamp))
  loss, diagnostics = _pessimistic_clip(ratio, advantages, epsilon_low, epsilon_high)
  if dual_clip is not None:
    bound = -advantages * dual_clip
    dual_active = (advantages < 0) & (bound < sg(loss))
    loss = jnp.where(advantages < 0, jnp.minimum(loss, bound), loss)
    diagnostics["clip_ratio/dual_mean"] = dual_active.astype(jnp.float32)
  diagnostics["approx_kl"] = _approx_kl(logprobs, old_logprobs)
  return loss, diagnostics


def gspo(logprobs: Array, old_logprobs: Array, advantages: Array, mask: Array, *,
         epsilon_low: float = 3e-4, epsilon_high: float = 4e-4,
         log_ratio_max: float = 10.0,
         log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """GSPO / GSPO-token: PPO clipping of the length-normalised sequence ratio (arXiv 2507.18071).

  ``log s_i = (1/T_i) Σ_t m·(lp − lo)``; token form
  ``log s_{i,t} = lp_{i,t} − sg(lp_{i,t}) + sg(log s_i)``, capped at ``log_ratio_max`` (verl: 10);
  ``l_{i,t} = max(−A_{i,t} s_{i,t}, −A_{i,t} clip(s_{i,t}, 1−ε_low, 1+ε_high))``.

  The value of ``s_{i,t}`` is ``s_i`` at every token, and with a sequence-level advantage and
  ``seq_mean_token_mean`` aggregation the loss and its gradient equal sequence-level GSPO, so one
  function serves both (as in verl ``loss_mode='gspo'``). Clipping is per sequence: a clipped
  sequence gives zero gradient on all its tokens. TRL ``importance_sampling_level='sequence'``.
  Defaults ε_low = 3e-4, ε_high = 4e-4 are the paper's (§5.1, as used in verl's example).
  """
  check_token_shapes("gspo", logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages,
                     mask=mask)
  advantages = sg(advantages)
  seq_log_ratio, _ = _sequence_mean_log_ratio(logprobs, old_logprobs, mask, log_ratio_clamp)
  log_s = logprobs - sg(logprobs) + sg(seq_log_ratio)[:, None]
  ratio = jnp.exp(jnp.minimum(log_s, log_ratio_max))
  loss, diagnostics = _pessimistic_clip(ratio, advantages, epsilon_low, epsilon_high)
  diagnostics["approx_kl"] = _approx_kl(logprobs, old_logprobs)
  return loss, diagnostics


def clipped_is_reinforce(logprobs: Array, old_logprobs: Array, advantages: Array, *,
                         lower: Union[None, float, Array] = None,
                         upper: Union[None, float, Array] = None,
                         out_of_range: str = "clip",
                         log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """REINFORCE with a clipped, detached importance weight (the CISPO/DISPO family).

  ``w = sg(clip(ρ, lower, upper) · M)``, ``l_{i,t} = −w · A_{i,t} · lp_{i,t}``, with bounds that are
  scalars or per-token arrays (``None`` = unbounded on that side) and the token mask ``M``:

  * ``out_of_range='clip'``: ``M = 1``; every token keeps a gradient (CISPO, arXiv 2506.13585).
  * ``out_of_range='mask_directional'``: ``M = 0`` where ``A > 0 ∧ ρ > upper`` or
    ``A < 0 ∧ ρ < lower`` (PPO's trust-region dropping; CISPO's "unified" masked form,
    [UNVERIFIED] against the MiniMax-M1 paper: experimental).
  * ``out_of_range='mask'``: ``M = 0`` wherever ``ρ`` is outside ``[lower, upper]``.

  Diagnostics: ``clip_ratio/low_mean`` (``ρ < lower``), ``clip_ratio/high_mean`` (``ρ > upper``),
  ``clip_ratio/region_mean``, ``approx_kl``.
  """
  check_token_shapes("clipped_is_reinforce", logprobs=logprobs, old_logprobs=old_logprobs,
                     advantages=advantages)
  if out_of_range not in ("clip", "mask", "mask_directional"):
    raise ValueError(f"out_of_range must be clip|mask|mask_directional, got {out_of_range!r}")
  advantages = sg(advantages)
  ratio = jnp.exp(sg(_log_ratio(logprobs, old_logprobs, log_ratio_clamp)))
  below = ratio < lower if lower is not None else jnp.zeros_like(ratio, bool)
  above = ratio > upper if upper is not None else jnp.zeros_like(ratio, bool)
  weight = jnp.clip(ratio, lower, upper)
  if out_of_range == "mask":
    weight = jnp.where(below | above, 0.0, weight)
  elif out_of_range == "mask_directional":
    weight = jnp.where((above & (advantages > 0)) | (below & (advantages < 0)), 0.0, weight)
  loss = -sg(weight) * advantages * logprobs
  diagnostics = _clip_fractions(below, above)
  diagnostics["approx_kl"] = _approx_kl(logprobs, old_logprobs)
  return loss, diagnostics


def cispo(logprobs: Array, old_logprobs: Array, advantages: Array, *,
          is_lower: float = 0.0, is_upper: float = 5.0, out_of_range: str = "clip",
          log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """CISPO (MiniMax-M1, arXiv 2506.13585): ``l = −sg(clip(ρ, is_lower, is_upper))·A·lp``.

  The bounds truncate the detached importance-sampling weight (they are not a trust region):
  the paper's ``clip(ρ, 1 − ε^IS_low, 1 + ε^IS_high)`` with ``is_lower = 1 − ε^IS_low`` and
  ``is_upper = 1 + ε^IS_high``. The paper sets ε^IS_low "large", i.e. no lower bound: the
  default ``is_lower=0.0`` (``ρ > 0``, so it never binds). The default cap ``is_upper=5.0`` is
  ScaleRL's (arXiv 2510.13786) and TRL ``loss_type='cispo', epsilon_high=5.0`` (TRL's
  ``epsilon_high`` is this absolute cap); verl ``loss_mode='cispo'`` is ``clip_ratio_low =
  1 − is_lower``, ``clip_ratio_high = is_upper − 1``. See ``clipped_is_reinforce`` for
  ``out_of_range``.
  """
  if not 0.0 <= is_lower <= is_upper:
    raise ValueError(f"cispo: need 0 <= is_lower <= is_upper, got {is_lower}, {is_upper}")
  return clipped_is_reinforce(logprobs, old_logprobs, advantages,
                              lower=is_lower if is_lower > 0 else None, upper=is_upper,
                              out_of_range=out_of_range, log_ratio_clamp=log_ratio_clamp)


def dispo(logprobs: Array, old_logprobs: Array, advantages: Array, correct: Array, *,
          epsilon_low_correct: float = 0.2, epsilon_high_correct: float = 0.28,
          epsilon_low_incorrect: float = 0.2, epsilon_high_incorrect: float = 0.28,
          out_of_range: str = "mask",
          log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """DISPO (arXiv 2602.00983), EXPERIMENTAL: clipped-IS REINFORCE with bounds by correctness.

  ``r^d_{i,t} = clip(ρ_{i,t}, 1 − ε⁻_{c_i}, 1 + ε⁺_{c_i})``, ``l = −sg(r^d·M)·A·lp``, four bounds
  ``(ε⁻, ε⁺)`` for correct and for incorrect responses ``c_i ∈ {0, 1}``.

  Confirmed from the abstract: REINFORCE-style, up- and down-clipping decoupled for correct and
  incorrect responses (four regimes), and CISPO is criticised for "permitting non-zero gradients
  outside the trust-region", hence the default ``out_of_range='mask'`` (zero gradient outside the
  bounds). NOT confirmed (the paper body was not available): the exact form of ``r^d`` and the
  paper's four default values; the defaults here are DAPO's clip range for both classes and must
  be set explicitly for a faithful run.
  """
  check_token_shapes("dispo", logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
  _check_per_sequence("dispo", logprobs.shape[0], correct=correct)
  is_correct = sg(correct)[:, None] > 0.5
  lower = jnp.where(is_correct, 1.0 - epsilon_low_correct, 1.0 - epsilon_low_incorrect)
  upper = jnp.where(is_correct, 1.0 + epsilon_high_correct, 1.0 + epsilon_high_incorrect)
  lower = jnp.broadcast_to(lower, logprobs.shape)
  upper = jnp.broadcast_to(upper, logprobs.shape)
  return clipped_is_reinforce(logprobs, old_logprobs, advantages, lower=lower, upper=upper,
                              out_of_range=out_of_range, log_ratio_clamp=log_ratio_clamp)


def sapo(logprobs: Array, old_logprobs: Array, advantages: Array, *,
         tau_pos: float = 1.0, tau_neg: float = 1.05,
         log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """SAPO soft gate (arXiv 2511.20347): ``l = −σ(τ(ρ − 1))·(4/τ)·A``, ``τ = τ_pos if A > 0 else τ_neg``.

  The gate's derivative at ``ρ = 1`` is 1, so on-policy SAPO has the REINFORCE gradient; far off
  policy the gradient decays smoothly instead of being cut. Defaults τ_pos = 1.0, τ_neg = 1.05 are
  the paper's (also verl ``tau_pos/tau_neg``, TRL ``sapo_temperature_pos/neg``).
  Diagnostic ``sapo/gate_mean``: the gate's gradient scale ``4σ(x)(1−σ(x))`` with ``x = τ(ρ−1)``
  (1 on-policy, towards 0 far off-policy).
  """
  check_token_shapes("sapo", logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages)
  if tau_pos <= 0 or tau_neg <= 0:
    raise ValueError(f"SAPO temperatures must be positive, got {tau_pos}, {tau_neg}")
  advantages = sg(advantages)
  ratio = jnp.exp(_log_ratio(logprobs, old_logprobs, log_ratio_clamp))
  tau = jnp.where(advantages > 0, tau_pos, tau_neg)
  gate = jax.nn.sigmoid(tau * (ratio - 1.0)) * 4.0 / tau
  loss = -gate * advantages
  x = sg(tau * (ratio - 1.0))
  diagnostics = {
      "sapo/gate_mean": 4.0 * jax.nn.sigmoid(x) * (1.0 - jax.nn.sigmoid(x)),
      "approx_kl": _approx_kl(logprobs, old_logprobs),
  }
  return loss, diagnostics


def gmpo(logprobs: Array, old_logprobs: Array, advantages: Array, mask: Array, *,
         log_clip_low: float = 0.4, log_clip_high: float = 0.4,
         log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """GMPO (arXiv 2507.20673): clipped geometric mean of token ratios, one loss per sequence ``[B]``.

  With ``σ_i = sign(A_i)`` and ``d = lp − lo``:
  ``J_i = A_i · exp(σ_i · mean_t min(σ_i d_t, σ_i clip(d_t, −c_low, c_high)))``, ``l_i = −J_i``.
  The clip acts on the token **log**-ratio ``d`` (``log_clip_low``/``log_clip_high``: the
  ratio range is ``(e^{−c_low}, e^{c_high})``, the paper's ``(e^{−0.4}, e^{0.4})``: defaults
  0.4/0.4, the official ``callsys/GMPO`` scripts' ``cliprange=0.4``; verl ``clip_ratio_low/high``),
  not on ``ρ − 1`` as PPO's ε, and it is "sign-aware": only the bound that limits the update in
  the advantage's direction binds.
  ``A_i`` is the token-mean of ``advantages`` over the sequence (its value for sequence-level
  estimators). verl ``loss_mode='geo_mean'``; aggregate with ``aggregation.sequence_mean``.
  """
  check_token_shapes("gmpo", logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages,
                     mask=mask)
  lengths = jnp.sum(mask, axis=-1)
  seq_adv = sg(jnp.sum(masked(advantages, mask), axis=-1) / jnp.maximum(lengths, 1.0))
  sign = jnp.sign(seq_adv)[:, None]
  log_ratio = _log_ratio(logprobs, old_logprobs, log_ratio_clamp)
  clipped = jnp.clip(log_ratio, -log_clip_low, log_clip_high)
  term = masked(jnp.minimum(sign * log_ratio, sign * clipped), mask)
  mean_term = jnp.sum(term, axis=-1) / jnp.maximum(lengths, 1.0)
  loss = -seq_adv * jnp.exp(sign[:, 0] * mean_term)
  value = sg(log_ratio)
  diagnostics = _clip_fractions((value < -log_clip_low) & (sign < 0),
                                (value > log_clip_high) & (sign > 0))
  diagnostics["approx_kl"] = _approx_kl(logprobs, old_logprobs)
  return loss, diagnostics


def kl_cov(logprobs: Array, old_logprobs: Array, advantages: Array, mask: Array, *,
           kl_cov_ratio: float = 2e-3, coef: float = 1.0,
           log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """KL-Cov (Cui et al., arXiv 2505.22617): unclipped ``−Aρ`` plus ``coef·|log ρ|`` on top-cov tokens.

  ``cov_{i,t} = (A − Ā)(lp − l̄p)`` (means over valid tokens of this (micro-)batch, no gradient);
  the ``k = max(1, ⌊kl_cov_ratio·N⌋)`` valid tokens with the largest covariance get the KL penalty.
  Statistics are local to the batch passed in, as in verl ``loss_mode='kl_cov'`` (defaults
  ``kl_cov_ratio=2e-3``, ``ppo_kl_coef=1.0``); under micro-batching the selection differs.
  """
  check_token_shapes("kl_cov", logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages,
                     mask=mask)
  advantages = sg(advantages)
  log_ratio = _log_ratio(logprobs, old_logprobs, log_ratio_clamp)
  ratio = jnp.exp(log_ratio)
  selected = _top_covariance(advantages, sg(logprobs), mask, kl_cov_ratio)
  loss = -advantages * ratio + jnp.where(selected, coef * jnp.abs(log_ratio), 0.0)
  diagnostics = {"kl_cov/selected_mean": selected.astype(jnp.float32),
                 "approx_kl": _approx_kl(logprobs, old_logprobs)}
  return loss, diagnostics


def token_covariance(advantages: Array, logprobs: Array, mask: Array) -> Array:
  """``(A − Ā)(lp − l̄p)`` per token, means over ``mask``-valid tokens (Clip-Cov/KL-Cov statistic);
  0 on masked tokens."""
  n = jnp.maximum(jnp.sum(mask), 1.0)
  adv_mean = jnp.sum(masked(advantages, mask)) / n
  lp_mean = jnp.sum(masked(logprobs, mask)) / n
  return jnp.where(mask > 0, (advantages - adv_mean) * (logprobs - lp_mean), 0.0)


def _top_covariance(advantages: Array, logprobs: Array, mask: Array, fraction: float) -> Array:
  cov = jnp.where(mask > 0, token_covariance(advantages, logprobs, mask), -jnp.inf)
  k = jnp.maximum(jnp.floor(fraction * jnp.sum(mask)), 1.0).astype(jnp.int32)
  threshold = jnp.sort(cov.ravel())[::-1][k - 1]
  return (cov >= threshold) & (mask > 0)


def real(logprobs: Array, old_logprobs: Array, mask: Array, correct: Array, group_ids: Array, *,
         tau: float = 0.5, log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """REAL, rewards as labels (arXiv 2602.05630): an anchored classification loss per group.

  Sequence logit ``s̄_k = (1/T_k) Σ_t m·(lp − lo)``; per group with positives ``O₊`` (``c = 1``) and
  negatives ``O₋`` (``c = 0``):
  ``L_g = log(1 + Σ_{O₊} e^{−s̄/τ}) + log(1 + Σ_{O₋} e^{s̄/τ})``.
  Groups lacking one of the classes are skipped (loss 0); empty sequences belong to no class.
  Returns ``[B]`` with ``L_g`` on the first sequence of each group (aggregate with
  ``aggregation.group_sum``); micro-batches must hold whole groups. τ = 0.5 and the labels
  ``reward == 1 / 0`` are from the official code (``Red-RL/REAL`` scripts, ``actor.tau=0.5``).
  """
  check_token_shapes("real", logprobs=logprobs, old_logprobs=old_logprobs, mask=mask)
  batch = logprobs.shape[0]
  _check_per_sequence("real", batch, correct=correct, group_ids=group_ids)
  seg = _local_groups(group_ids)
  score, lengths = _sequence_mean_log_ratio(logprobs, old_logprobs, mask, log_ratio_clamp)
  nonempty = lengths > 0
  correct = sg(correct)
  positive = nonempty & (correct > 0.5)
  negative = nonempty & (correct <= 0.5)
  has_pos = jax.ops.segment_max(positive.astype(jnp.int32), seg, batch) > 0
  has_neg = jax.ops.segment_max(negative.astype(jnp.int32), seg, batch) > 0
  valid = has_pos & has_neg

  def anchored_lse(logits: Array, member: Array) -> Array:
    # log(1 + Σ_{k∈group, member} e^{logit_k}), shifted by a constant for stability.
    member_logits = jnp.where(member, logits, -jnp.inf)
    shift = sg(jnp.maximum(jax.ops.segment_max(member_logits, seg, batch), 0.0))
    terms = jnp.where(member, jnp.exp(jnp.where(member, logits, 0.0) - shift[seg]), 0.0)
    return shift + jnp.log(jnp.exp(-shift) + jax.ops.segment_sum(terms, seg, batch))

  group_loss = anchored_lse(-score / tau, positive) + anchored_lse(score / tau, negative)
  group_loss = jnp.where(valid, group_loss, 0.0)
  first = jax.ops.segment_min(jnp.arange(batch), seg, batch)[seg] == jnp.arange(batch)
  loss = jnp.where(first, group_loss[seg], 0.0)
  diagnostics = {"real/score_mean": sg(score), "real/valid_group_mean": valid[seg].astype(
      jnp.float32)}
  return loss, diagnostics


def pacs(logprobs: Array, old_logprobs: Array, mask: Array, correct: Array, group_ids: Array, *,
         beta: float = 1.0, score: str = "sum", baseline: str = "rloo",
         class_balanced: bool = True, std_epsilon: float = 1e-6,
         log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """PACS (arXiv 2509.02522): score → leave-one-out → weighted BCE against correctness, ``[B]``.

  ``r̂_i = β·Σ_t m·(lp − lo)`` (``score='sum'``, the official ``reward_method='1'``) or
  ``β·mean_t m·(lp − lo)`` (``score='mean'``); ``ψ_i = r̂_i − (1/(G−1)) Σ_{j≠i} r̂_j``
  (``baseline='rloo'``; ``'grpo'``: group z-score with ddof=1 and ``std_epsilon`` outside the
  root; ``'none'``: ``ψ = r̂``); ``l_i = w_i·BCEWithLogits(ψ_i, c_i)``; class-balanced
  ``w_i = G/(2·n_{class(i)})`` when the group holds both classes, else 1. Gradient flows through
  every score inside ``ψ`` (the leave-one-out baseline included), as in the official code.
  Groups of size 1 get ``ψ = r̂`` under RLOO. Aggregate with ``aggregation.sequence_mean``;
  micro-batches must hold whole groups. The official code scores against the old (behaviour)
  policy, which is what ``old_logprobs`` holds.
  """
  check_token_shapes("pacs", logprobs=logprobs, old_logprobs=old_logprobs, mask=mask)
  batch = logprobs.shape[0]
  _check_per_sequence("pacs", batch, correct=correct, group_ids=group_ids)
  if score not in ("sum", "mean") or baseline not in ("rloo", "grpo", "none"):
    raise ValueError(f"pacs: bad score={score!r} or baseline={baseline!r}")
  seg = _local_groups(group_ids)
  log_ratio = masked(_log_ratio(logprobs, old_logprobs, log_ratio_clamp), mask)
  total = jnp.sum(log_ratio, axis=-1)
  if score == "mean":
    total = total / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
  r_hat = beta * total
  size = jax.ops.segment_sum(jnp.ones((batch,)), seg, batch)[seg]
  group_total = jax.ops.segment_sum(r_hat, seg, batch)[seg]
  if baseline == "rloo":
    psi = jnp.where(size > 1, r_hat - (group_total - r_hat) / jnp.maximum(size - 1.0, 1.0), r_hat)
  elif baseline == "grpo":
    mean = group_total / size
    var = jax.ops.segment_sum((r_hat - mean) ** 2, seg, batch)[seg] / jnp.maximum(size - 1.0, 1.0)
    psi = (r_hat - mean) / (jnp.sqrt(var) + std_epsilon)
  else:
    psi = r_hat
  label = sg(correct).astype(psi.dtype)
  bce = jax.nn.softplus(psi) - label * psi
  if class_balanced:
    n_pos = jax.ops.segment_sum(label, seg, batch)[seg]
    n_class = jnp.where(label > 0.5, n_pos, size - n_pos)
    both = (n_pos > 0) & (n_pos < size)
    weight = jnp.where(both, size / (2.0 * jnp.maximum(n_class, 1.0)), 1.0)
  else:
    weight = jnp.ones_like(bce)
  diagnostics = {"pacs/psi_mean": sg(psi), "pacs/prob_correct_mean": sg(jax.nn.sigmoid(psi))}
  return weight * bce, diagnostics
