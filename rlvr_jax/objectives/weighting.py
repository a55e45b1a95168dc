"""Token weighting (stage W): constant per-token multipliers, on the loss or on the advantages.

Every function returns ``(weights, diagnostics)``: ``weights`` ``[B, T]`` float32 carry no gradient
(they are stop-gradiented here) and multiply either the per-token loss (IS corrections, entropy
masks, Clip-Cov) or the advantages (THR); ``compose.token_weighting(fn, apply_to=...)`` chooses
(the objective zeroes them on masked positions, where a weight may be inf/NaN).
``diagnostics`` are per-token (or per-sequence ``[B]``) arrays reduced by ``metrics.summarize``:
names ending in ``min``/``max`` are masked min/max, the rest masked means over the global token
count.

Statistics that need the whole batch (an entropy quantile, a covariance mean) are computed over
the arrays passed in; under micro-batching pass a threshold precomputed on the full batch when
exact accumulation matters (``high_entropy_mask(threshold=...)``).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from rlvr_jax.objectives import surrogates

Array = jax.Array
Diagnostics = dict[str, Array]
sg = jax.lax.stop_gradient



def entropy_quantile_threshold(entropy: Array, mask: Array, *, top_quantile: float) -> Array:
  """The entropy value above which the top ``top_quantile`` fraction of valid tokens lie.

  ``q = quantile({H_{i,t} : m_{i,t} = 1}, 1 − top_quantile)`` with linear interpolation (as
  ``torch.quantile`` in TRL's ``get_high_entropy_mask``). No valid token gives ``+inf``.
  """
  surrogates.check_token_shapes("entropy_quantile_threshold", entropy=entropy, mask=mask)
  if not 0.0 < top_quantile <= 1.0:
    raise ValueError(f"top_quantile must be in (0, 1], got {top_quantile}")
  values = jnp.where(mask > 0, sg(entropy).astype(jnp.float32), jnp.nan)
  q = jnp.nanquantile(values, 1.0 - top_quantile)
  return jnp.where(jnp.isnan(q), jnp.inf, q)


def high_entropy_mask(entropy: Array, mask: Array, *, top_quantile: float = 0.2,
                      threshold: Optional[Array] = None) -> tuple[Array, Diagnostics]:
  """Keep only high-entropy "forking" tokens (Wang et al., arXiv 2506.01939): ``w = 1[H ≥ q]``.

  ``q = entropy_quantile_threshold(H, m, top_quantile)`` unless ``threshold`` is given (pass the
  full-batch threshold for micro-batch exactness). TRL ``top_entropy_quantile`` (the paper's 0.2),
  which multiplies the per-token loss by the mask and keeps the token-count denominator: use
  ``apply_to='loss'``. Diagnostic ``entropy/kept_mean``.
  """
  surrogates.check_token_shapes("high_entropy_mask", entropy=entropy, mask=mask)
  if threshold is None:
    threshold = entropy_quantile_threshold(entropy, mask, top_quantile=top_quantile)
  keep = (sg(entropy) >= sg(threshold)).astype(jnp.float32)
  return keep, {"entropy/kept_mean": keep}


def thr_reweight(thr: Array, mask: Array, *, p: float, tau: float = 0.0,
                 drop_non_dominant: bool = False) -> tuple[Array, Diagnostics]:
  """THR-guided advantage reweighting (arXiv 2510.03669), EXPERIMENTAL: apply to advantages.

  ``w_{i,t} = 1 + p·sign(THR_{i,t})`` on dominant tokens ``|THR| > τ``; other tokens keep weight 1
  (or 0 with ``drop_non_dominant=True``, the "THR-only" reading). ``p > 0`` amplifies positive-THR
  tokens (exploitation, greedy accuracy), ``p < 0`` negative-THR tokens (exploration, pass@k);
  confirmed from the abstract. The exact reweighting function, τ rule and defaults could not be
  read in the paper body: this is the spec's "natural reading", to be checked before relying on
  it. ``thr`` ``[B, T]`` comes from ``token_hidden_reward`` (or any influence score).
  """
  surrogates.check_token_shapes("thr_reweight", thr=thr, mask=mask)
  thr = sg(thr)
  dominant = jnp.abs(thr) > tau
  rest = 0.0 if drop_non_dominant else 1.0
  weights = jnp.where(dominant, 1.0 + p * jnp.sign(thr), rest)
  return weights, {"thr/dominant_mean": dominant.astype(jnp.float32)}


def token_hidden_reward(hidden: Array, prediction_error: Array, mask: Array, correct: Array, *,
                        group_size: int) -> Array:
  """NTHR-style token influence on a group's correct responses (arXiv 2510.03669), EXPERIMENTAL.

  Per group with correct set ``P``: ``M⁺ = Σ_{i∈P} Σ_k m_{i,k} g_{i,k} h_{i,k}ᵀ`` and
  ``s_{j,t} = g_{j,t}ᵀ M⁺ h_{j,t}``, where ``h`` ``[B, T, d]`` are final hidden states and ``g``
  ``[B, T, V']`` the prediction errors ``e_token − π_old(·)`` restricted to the group's vocabulary
  (the trainer computes both in a no-grad pass). Accumulates in float32. Returns ``[B, T]``
  (0 on padding). The form follows the NTHR predecessor as the spec records it; the paper's own
  normalisation is not confirmed.
  """
  if hidden.ndim != 3 or prediction_error.ndim != 3 or mask.ndim != 2:
    raise ValueError("token_hidden_reward: hidden [B,T,d], prediction_error [B,T,V'], mask [B,T]")
  batch, length = mask.shape
  if batch % group_size:
    raise ValueError(f"batch {batch} is not a multiple of group_size {group_size}")
  groups = batch // group_size
  h = sg(hidden).astype(jnp.float32).reshape(groups, group_size, length, -1)
  g = sg(prediction_error).astype(jnp.float32).reshape(groups, group_size, length, -1)
  m = sg(mask).astype(jnp.float32).reshape(groups, group_size, length)
  c = (sg(correct) > 0.5).astype(jnp.float32).reshape(groups, group_size)
  weight = m * c[:, :, None]
  m_plus = jnp.einsum("pgt,pgtv,pgtd->pvd", weight, g, h)
  score = jnp.einsum("pgtv,pvd,pgtd->pgt", g, m_plus, h)
  return (score * m).reshape(batch, length)


def rollout_importance_weights(old_logprobs: Array, rollout_logprobs: Array, mask: Array, *,
                               level: str = "token", mode: str = "truncate",
                               lower: Optional[float] = None, upper: float = 2.0,
                               log_ratio_clamp: float = 20.0) -> tuple[Array, Diagnostics]:
  """Rollout (sampler/trainer mismatch) importance correction, detached.

  ``log r_t = lo_t − lrollout_t`` (clamped); the ratio is per token (``level='token'``), the
  sequence product ``exp(Σ_t m·log r_t)`` (``'sequence'``, verl/TRL), or its geometric mean
  ``exp(mean_t log r_t)`` (``'geometric'``). ``mode='truncate'``: ``w = clip(r, lower, upper)``
  (TIS); ``mode='mask'``: ``w = r·1[lower ≤ r ≤ upper]`` (MIS / IcePop). For ``'geometric'`` only
  ``'mask'`` is defined: the geometric mean decides, and the untruncated token ratio is the weight
  (OpenRLHF ``seq-mask-tis``).

  Correspondence: verl ``rollout_is=token|sequence`` with ``rollout_is_threshold=upper`` is
  ``truncate``; TRL ``vllm_importance_sampling_mode`` ``token_truncate|token_mask|
  sequence_truncate|sequence_mask`` with ``clip_max=upper`` (TRL default 3.0, sequence_mask) is
  ``level × mode``; OpenRLHF ``tis`` / ``icepop`` / ``seq-mask-tis`` with ``[lower, upper]``.
  References: Yao et al. "Your efficient RL framework secretly brings you off-policy RL" (TIS);
  IcePop (Ring-1T, arXiv 2510.18855).

  Diagnostics (TRL names): ``sampling/importance_sampling_ratio/{mean,min,max}`` of the raw ratio,
  ``sampling/sampling_logp_difference/{mean,max}`` of ``|lo − lrollout|``,
  ``sampling/is_masked_mean`` (mask mode: fraction of tokens zeroed).
  """
  surrogates.check_token_shapes("rollout_importance_weights", old_logprobs=old_logprobs,
                                rollout_logprobs=rollout_logprobs, mask=mask)
  if level not in ("token", "sequence", "geometric") or mode not in ("truncate", "mask"):
    raise ValueError(f"bad level={level!r} / mode={mode!r}")
  if level == "geometric" and mode != "mask":
    raise ValueError("level='geometric' supports mode='mask' only")
  diff = sg(surrogates.masked(old_logprobs - rollout_logprobs, mask))
  token_log_ratio = jnp.clip(diff, -log_ratio_clamp, log_ratio_clamp)
  if level == "token":
    ratio = jnp.exp(token_log_ratio)
    decider = ratio
  else:
    total = jnp.sum(diff, axis=-1)
    if level == "geometric":
      total = total / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
    seq_ratio = jnp.exp(jnp.clip(total, -log_ratio_clamp, log_ratio_clamp))[:, None]
    decider = jnp.broadcast_to(seq_ratio, diff.shape)
    ratio = jnp.exp(token_log_ratio) if level == "geometric" else decider
  lo = -jnp.inf if lower is None else lower
  inside = (decider >= lo) & (decider <= upper)
  if mode == "truncate":
    weights = jnp.clip(ratio, lower, upper)
  else:
    weights = jnp.where(inside, ratio, 0.0)
  diagnostics = {
      "sampling/importance_sampling_ratio/mean": decider,
      "sampling/importance_sampling_ratio/min": decider,
      "sampling/importance_sampling_ratio/max": decider,
      "sampling/sampling_logp_difference/mean": jnp.abs(diff),
      "sampling/sampling_logp_difference/max": jnp.abs(diff),
  }
  if mode == "mask":
    diagnostics["sampling/is_masked_mean"] = (~inside).astype(jnp.float32)
  return sg(weights), diagnostics


def clip_cov_weights(advantages: Array, logprobs: Array, mask: Array, key: Array, *,
                     clip_cov_ratio: float = 2e-4, lower: float = 1.0,
                     upper: float = 5.0) -> tuple[Array, Diagnostics]:
  """Clip-Cov (Cui et al., arXiv 2505.22617): detach a random few high-covariance tokens.

  ``cov = (A − Ā)(lp − l̄p)`` over valid tokens (``lp`` current, no gradient); among tokens with
  ``lower < cov < upper``, ``max(1, ⌊clip_cov_ratio·N⌋)`` are drawn uniformly (``key``) and get weight 0
  (zero loss and gradient); others weight 1. Apply to the loss. verl ``loss_mode='clip_cov'``
  defaults (``clip_cov_ratio=2e-4``, bounds 1 and 5); unlike verl, tokens already clipped by PPO
  stay candidates (their gradient is zero either way). Batch-local statistics.
  """
  surrogates.check_token_shapes("clip_cov_weights", advantages=advantages, logprobs=logprobs,
                                mask=mask)
  cov = surrogates.token_covariance(sg(advantages), sg(logprobs), mask)
  candidate = (cov > lower) & (cov < upper) & (mask > 0)
  priority = jnp.where(candidate, jax.random.uniform(key, cov.shape), -1.0)
  k = jnp.maximum(jnp.floor(clip_cov_ratio * jnp.sum(mask)), 1.0).astype(jnp.int32)
  threshold = jnp.sort(priority.ravel())[::-1][k - 1]
  selected = candidate & (priority >= threshold)
  weights = jnp.where(selected, 0.0, 1.0)
  return weights, {"clip_cov/detached_mean": selected.astype(jnp.float32)}
