"""Regularizers and auxiliary losses (stage X): KL estimators, entropy, LaSeR self-reward MSE.

Per-token terms return ``[B, T]`` and are aggregated by the objective's aggregation (or one given
explicitly) in ``compose``; sequence terms return ``[B]``. Reference log-probs, labels and weights
are constants (stop-gradient); ``logprobs`` and ``entropy`` carry gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
sg = jax.lax.stop_gradient

KL_ESTIMATORS = ("k1", "abs", "k2", "k3", "k3+")


def kl_penalty(logprobs: Array, ref_logprobs: Array, *, estimator: str = "k3",
               log_ratio_clamp: float = 20.0, value_clamp: float = 10.0) -> Array:
  """Per-token KL(π_θ‖π_ref) estimators (Schulman 2020, joschu.net/blog/kl-approx.html).

  With ``d = lp − lr``:

  * ``k1 = d`` (unbiased value; its expected gradient is 0 on-policy);
  * ``abs = |d|``;
  * ``k2 = d²/2`` (expected gradient = ∇KL(π_θ‖π_ref), the reverse-KL gradient);
  * ``k3 = e^{−d} + d − 1`` (GRPO, DeepSeekMath arXiv 2402.03300 eq. 4; verl ``low_var_kl``): the
    exponent is clamped to ``±log_ratio_clamp`` and the value to ``±value_clamp`` as in verl;
    its gradient is the forward-KL gradient;
  * ``k3+ = k2 − sg(k2) + sg(k3)``: the value of k3 with the gradient of k2 (verl's documented
    straight-through ``"k3+"``, which raises at verl b178a3c; REINFORCE++ arXiv 2501.03262).

  TRL ``beta`` uses k3 without clamps; OpenRLHF ``k1|k2|k3`` clamps k3 to ±10 like verl.
  """
  if logprobs.shape != ref_logprobs.shape:
    raise ValueError(f"kl_penalty: shapes differ {logprobs.shape} vs {ref_logprobs.shape}")
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
  ref_logprobs = sg(ref_logprobs)
  d = logprobs - ref_logprobs
  if estimator == "k1":
    return d
  if estimator == "abs":
    return jnp.abs(d)
  k2 = 0.5 * jnp.square(d)
  if estimator == "k2":
    return k2
  neg = jnp.clip(-d, -log_ratio_clamp, log_ratio_clamp)
  k3 = jnp.clip(jnp.exp(neg) - neg - 1.0, -value_clamp, value_clamp)
  if estimator == "k3":
    return k3
  return k2 - sg(k2) + sg(k3)


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
  r_s = laser_self_reward(selfreward_logprobs, beta_v=beta_v, c_ref=c_ref, temperature=temperature)
  keep = (sg(truncated) < 0.5).astype(r_s.dtype)
  return sg(selfreward_weights) * keep * jnp.square(r_s - sg(correct))
