"""Regularizers and auxiliary losses (stage X): KL estimators, entropy, LaSeR self-reward MSE.

Two layers, as for the other stages:

* pure functions of arrays: ``kl_penalty`` (the one KL estimator, also behind
  ``reward_transforms.kl_in_reward``), ``adaptive_entropy_coefficient`` and LaSeR's
  ``laser_self_reward`` / ``laser_class_weights`` / ``laser_self_reward_mse``;
* loss terms for ``compose.make_objective(regularizers=[...])``: ``kl_loss``,
  ``entropy_bonus`` and ``laser_self_reward_loss``. Each is a loss-side ``binding.Stage`` with the
  same convention as a surrogate: a function whose array arguments are read by name returns
  ``(term, diagnostics)`` with ``term`` per token ``[B, T]`` or per sequence ``[B]``; the objective
  adds ``coef · Agg(term)``, ``Agg`` being the term's own aggregation or, when ``None``, the policy
  loss's (token-mean when the surrogate is sequence-level).

Reference log-probs, labels and weights are constants (stop-gradient); ``logprobs`` and ``entropy``
carry gradient.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from rlvr_jax.objectives import aggregation as aggregation_lib
from rlvr_jax.objectives import binding
from rlvr_jax.types import GlobalCounts

Array = jax.Array
Aggregation = Callable[[Array, Array, GlobalCounts], Array]
sg = jax.lax.stop_gradient

KL_ESTIMATORS = ("k1", "k2", "k3", "abs", "k1+", "k2+", "k3+", "abs+")
# verl's names for the same estimators (``kl_loss_type`` / ``kl_penalty``).
KL_ALIASES = {"kl": "k1", "mse": "k2", "low_var_kl": "k3", "kl+": "k1+", "mse+": "k2+",
              "low_var_kl+": "k3+"}


def canonical_estimator(estimator: str) -> str:
  """The ``KL_ESTIMATORS`` name of ``estimator`` (verl aliases resolved); ``ValueError`` if none."""
  name = KL_ALIASES.get(estimator, estimator)
  if name not in KL_ESTIMATORS:
    raise ValueError(f"estimator must be one of {KL_ESTIMATORS} (or verl's "
                     f"{sorted(KL_ALIASES)}), got {estimator!r}")
  return name


def kl_penalty(logprobs: Array, ref_logprobs: Array, *, estimator: str = "k3",
               log_ratio_clamp: float = 20.0, value_clamp: float = 10.0) -> Array:
  """Per-token estimate of KL(π_θ‖π_ref) (Schulman 2020, joschu.net/blog/kl-approx.html).

  With ``d = lp − sg(lr)``:

  * ``k1 = d``: unbiased value; its expected gradient is 0 on-policy;
  * ``k2 = d²/2``: its expected gradient is ∇KL(π_θ‖π_ref), the reverse-KL gradient;
  * ``k3 = e^{−d} + d − 1`` (GRPO, arXiv 2402.03300 eq. 4; verl ``low_var_kl``) with ``−d``
    clamped to ``±log_ratio_clamp`` and the value to ``±value_clamp``, as verl (20, 10); clamped
    tokens get zero gradient;
  * ``abs = |d|``, whose gradient is ``sign(d)``: **0 at a tie** ``lp == lr`` (torch's ``abs``
    backward, hence verl's), not ``jax.grad(jnp.abs)(0.) = 1``;
  * ``k1+``, ``k2+``, ``k3+``, ``abs+``: straight-through, the value of the named estimator with
    the gradient of k2, ``k2 − sg(k2) + sg(k)`` (verl ``kl_penalty``: "k3+" etc.; REINFORCE++
    arXiv 2501.03262). ``k2+`` is k2.

  verl's names ``kl``, ``mse``, ``low_var_kl`` (and their ``+`` forms) are accepted for k1, k2, k3.
  TRL's ``beta`` term is k3 without clamps (pass large clamps); OpenRLHF clamps k3 to ±10.

  Args:
    logprobs: ``[..., T]`` log-probs of the sampled tokens under the policy (gradient flows).
    ref_logprobs: log-probs under the reference policy, same shape (a constant).
    estimator: one of ``KL_ESTIMATORS`` or ``KL_ALIASES``.
    log_ratio_clamp: bound on ``|d|`` inside k3's exponent.
    value_clamp: bound on k3's value.

  Returns:
    The per-token estimate, shape of ``logprobs``.
  """
  if logprobs.shape != ref_logprobs.shape:
    raise ValueError(f"kl_penalty: shapes differ {logprobs.shape} vs {ref_logprobs.shape}")
  name = canonical_estimator(estimator)
  straight_through = name.endswith("+")
  base = name.rstrip("+")
  d = logprobs - sg(ref_logprobs)
  if base == "k1":
    kl = d
  elif base == "k2":
    kl = 0.5 * jnp.square(d)
  elif base == "abs":
    kl = d * sg(jnp.sign(d))  # value |d|; gradient sign(d), 0 at d == 0
  else:
    neg = jnp.clip(-d, -log_ratio_clamp, log_ratio_clamp)
    kl = jnp.clip(jnp.exp(neg) - neg - 1.0, -value_clamp, value_clamp)
  if not straight_through or base == "k2":
    return kl
  k2 = 0.5 * jnp.square(d)
  return k2 - sg(k2) + sg(kl)


def adaptive_entropy_coefficient(coef: Array, mean_entropy: Array, *, target: float = 0.2,
                                 delta: float = 0.005, coef_min: float = 0.0,
                                 coef_max: float = 1.0) -> Array:
  """One step of the adaptive entropy coefficient (Skywork-OR1, arXiv 2505.22312).

  ``c ← clip(c + δ·sign(target − H̄), c_min, c_max)``: raise the bonus while the mean entropy is
  below the target, lower it above. TRL ``use_adaptive_entropy`` (``entropy_target`` 0.2,
  ``entropy_coef_delta`` 0.005). The paper also applies the bonus only while ``H̄ ≤ target``: the
  trainer does that by passing ``coef · 1[H̄ ≤ target]`` into the loss (``extras['entropy_coef']``).
  """
  step = delta * jnp.sign(target - sg(mean_entropy))
  return jnp.clip(coef + step, coef_min, coef_max)


def laser_self_reward(selfreward_logprobs: Array, *, beta_v: float = 0.1,
                      c_ref: float = -23.0, temperature: float = 1.0) -> Array:
  """LaSeR last-token self-reward (arXiv 2510.14943): ``r_s = β_v·(T·log π(z_c | q, o, eos) − c_ref)``.

  ``selfreward_logprobs`` ``[B]`` are the (temperature-scaled) log-probs of the pre-specified
  token ``z_c`` placed after the EOS token; multiplying by the sampling temperature ``T`` undoes the
  scaling as the official code does. ``c_ref`` is the constant reference log-prob (−23 for
  Qwen2.5-7B in the official scripts).
  """
  return beta_v * (temperature * selfreward_logprobs - c_ref)


def laser_class_weights(correct: Array, truncated: Array) -> Array:
  """Class-balanced weights of the LaSeR MSE, computed over the *whole* batch ``[B]``.

  ``w_i = n/(2·n_correct)`` for correct and ``n/(2·n_incorrect)`` for incorrect responses, counted
  over non-truncated responses (official ``self_reward_loss_balanced=True``); a missing class gets
  weight 1 for the other. Truncated responses get 0. The trainer computes these once per batch and
  passes them as ``extras['selfreward_weights']`` so micro-batches agree with the full batch.
  """
  keep = (sg(truncated) < 0.5).astype(jnp.float32)
  c = (sg(correct) > 0.5).astype(jnp.float32)
  n = jnp.sum(keep)
  n_pos = jnp.sum(keep * c)
  n_neg = n - n_pos
  both = (n_pos > 0) & (n_neg > 0)
  w_pos = jnp.where(both, n / (2.0 * jnp.maximum(n_pos, 1.0)), 1.0)
  w_neg = jnp.where(both, n / (2.0 * jnp.maximum(n_neg, 1.0)), 1.0)
  return keep * jnp.where(c > 0, w_pos, w_neg)


def laser_self_reward_mse(selfreward_logprobs: Array, correct: Array, truncated: Array,
                          selfreward_weights: Array, *, beta_v: float = 0.1,
                          c_ref: float = -23.0, temperature: float = 1.0) -> Array:
  """LaSeR self-rewarding MSE per sequence (arXiv 2510.14943): ``w_i·1[¬trunc_i]·(r_s(i) − c_i)²``.

  ``[B]``; the objective multiplies by ``α`` (official ``self_reward_loss_coef`` 0.1) and
  averages over sequences. ``selfreward_weights`` from ``laser_class_weights`` (or ones for the
  unbalanced variant). Gradient flows through ``selfreward_logprobs`` only.
  """
  batch = selfreward_logprobs.shape
  for name, arr in (("correct", correct), ("truncated", truncated),
                    ("selfreward_weights", selfreward_weights)):
    if arr.shape != batch or len(batch) != 1:
      raise ValueError(f"laser_self_reward_mse: {name} must have shape {batch} ([B])")
  keep = sg(truncated) < 0.5
  # Select, not multiply: a truncated response's z_c log-prob is not a real value (maybe inf/NaN),
  # and it must contribute neither to the value nor, as NaN·0, to the gradient.
  selfreward_logprobs = jnp.where(keep, selfreward_logprobs, 0.0)
  r_s = laser_self_reward(selfreward_logprobs, beta_v=beta_v, c_ref=c_ref, temperature=temperature)
  return jnp.where(keep, sg(selfreward_weights) * jnp.square(r_s - sg(correct)), 0.0)


# ---------------------------------------------------------------------------------------------
# Loss terms: ``(term, diagnostics)`` functions and the stages that bind them.


def kl_term(logprobs: Array, ref_logprobs: Array, *, estimator: str = "k3",
            log_ratio_clamp: float = 20.0, value_clamp: float = 10.0):
  """``kl_penalty`` per token, with the diagnostic ``kl`` (its token mean: TRL's ``kl``)."""
  kl = kl_penalty(logprobs, ref_logprobs, estimator=estimator, log_ratio_clamp=log_ratio_clamp,
                  value_clamp=value_clamp)
  return kl, {"kl": kl}


def entropy_term(entropy: Array):
  """``−H`` per token (a bonus is a negative loss), with the diagnostic ``entropy``."""
  return -entropy, {"entropy": entropy}


def adaptive_entropy_term(entropy: Array, entropy_coef: Array):
  """``−c·H`` per token with the scalar coefficient ``c`` read each step (``extras``)."""
  coef = sg(jnp.asarray(entropy_coef, jnp.float32))
  return -coef * entropy, {"entropy": entropy, "entropy_coef_max": coef}


def _selfreward_logprobs(logprobs: Array, selfreward_position: Array) -> Array:
  position = jnp.asarray(selfreward_position, jnp.int32)
  if position.shape != logprobs.shape[:1]:
    raise ValueError(f"selfreward_position must be [B]={logprobs.shape[:1]}, got {position.shape}")
  return jnp.take_along_axis(logprobs, position[:, None], axis=1)[:, 0]


def laser_term(logprobs: Array, selfreward_position: Array, correct: Array, truncated: Array,
               selfreward_weights: Array, *, beta_v: float = 0.1, c_ref: float = -23.0,
               temperature: float = 1.0):
  """LaSeR's per-sequence MSE ``[B]`` at ``logprobs[b, selfreward_position[b]]`` (class-balanced
  by ``selfreward_weights``), with the diagnostic ``laser/self_reward_mse``."""
  mse = laser_self_reward_mse(_selfreward_logprobs(logprobs, selfreward_position), correct,
                              truncated, selfreward_weights, beta_v=beta_v, c_ref=c_ref,
                              temperature=temperature)
  return mse, {"laser/self_reward_mse": mse}


def laser_term_unbalanced(logprobs: Array, selfreward_position: Array, correct: Array,
                          truncated: Array, *, beta_v: float = 0.1, c_ref: float = -23.0,
                          temperature: float = 1.0):
  """``laser_term`` with unit weights (the official ``self_reward_loss_balanced=False``)."""
  return laser_term(logprobs, selfreward_position, correct, truncated,
                    jnp.ones(logprobs.shape[:1], jnp.float32), beta_v=beta_v, c_ref=c_ref,
                    temperature=temperature)


def kl_loss(coef: float, *, estimator: str = "k3", aggregation: Optional[Aggregation] = None,
            log_ratio_clamp: float = 20.0, value_clamp: float = 10.0) -> binding.Stage:
  """In-loss KL ``coef·Agg(kl_penalty(lp, lr))`` (GRPO, arXiv 2402.03300 eq. 3).

  == verl ``use_kl_loss, kl_loss_coef=coef, kl_loss_type=estimator`` (verl aggregates it with the
  policy loss's ``loss_agg_mode``, as ``aggregation=None`` does here); TRL ``beta`` (k3). Reads
  ``logprobs`` and ``ref_logprobs``. Metric ``kl``: token-mean of the estimate.
  """
  canonical_estimator(estimator)
  return binding.bind("regularizer", kl_term,
                      dict(estimator=estimator, log_ratio_clamp=log_ratio_clamp,
                           value_clamp=value_clamp),
                      coef=coef, aggregation=aggregation)


def entropy_bonus(coef: Optional[float] = None, *,
                  aggregation: Optional[Aggregation] = None) -> binding.Stage:
  """Entropy bonus ``−c·Agg(H)`` (verl ``entropy_coeff``, TRL ``entropy_coef``).

  ``coef=None`` reads the scalar ``extras['entropy_coef']`` each step (adaptive coefficient, see
  ``adaptive_entropy_coefficient``). Metrics: ``entropy`` (token-mean) and, when adaptive,
  ``entropy_coef_max`` (the coefficient: the same on every micro-batch, so combined by max).
  """
  if coef is None:
    return binding.bind("regularizer", adaptive_entropy_term, {}, coef=1.0,
                        aggregation=aggregation)
  return binding.bind("regularizer", entropy_term, {}, coef=coef, aggregation=aggregation)


def laser_self_reward_loss(coef: float = 0.1, *, beta_v: float = 0.1, c_ref: float = -23.0,
                           temperature: float = 1.0, balanced: bool = True) -> binding.Stage:
  """LaSeR self-rewarding MSE (arXiv 2510.14943), ``coef·(1/N_seq)·Σ_i mse_i``.

  The trainer appends the token ``z_c`` after each finished response's EOS inside the token
  sequence, so that ``logprobs[b, extras['selfreward_position'][b]]`` is the differentiable
  ``log π_θ(z_c | q, o_b, eos)`` (``mask`` is 0 there). ``balanced=True`` reads the full-batch
  class weights ``extras['selfreward_weights']`` (``laser_class_weights``). Metric
  ``laser/self_reward_mse`` (sequence mean).
  """
  fn = laser_term if balanced else laser_term_unbalanced
  return binding.bind("regularizer", fn,
                      dict(beta_v=beta_v, c_ref=c_ref, temperature=temperature),
                      coef=coef, aggregation=aggregation_lib.sequence_mean)
