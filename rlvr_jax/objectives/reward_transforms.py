"""Reward transforms (stage R): rewards or correctness to rewards, before the advantage stage.

Pure functions of arrays, wrapped in ``jax.jit``; options are keyword-only, the structural ones
(``estimator``, ``max_length``, ``cache_length``) static and the coefficients traced. None of them
carries gradient: old and reference log-probs are constants.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlvr_jax.objectives import regularizers

Array = jax.Array

__all__ = [
    "kl_in_reward",
    "nsr",
    "overlong_soft_penalty",
    "psr",
    "remap_binary",
    "w_reinforce",
]


def _float(x) -> Array:
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


@jax.jit
def remap_binary(correct: Array, *, pos: float, neg: float, threshold: float = 0.5) -> Array:
  """Maps correctness to two reward values: ``R = pos if c > threshold else neg``.

  The reward side of PSR / NSR / W-REINFORCE (Zhu et al., "The Surprising Effectiveness of
  Negative Reinforcement in LLM Reasoning", arXiv 2506.01347; code
  ``compute_psr_nsr_outcome_advantage``): PSR ``(1, 0)``, NSR ``(0, -1)``, W-REINFORCE
  ``(lam, -1)``; combine with the ``identity`` advantage estimator. Weighted GRPO's
  ``(1, -lambda_neg)`` is the same remap.

  Args:
    correct: correctness of any shape, in {0, 1} (or rewards compared with ``threshold``).
    pos: reward of a correct sample.
    neg: reward of an incorrect sample.
    threshold: correctness threshold.

  Returns:
    Float rewards of the shape of ``correct``.
  """
  correct = _float(correct)
  return jnp.where(correct > threshold, pos, neg).astype(correct.dtype)


def psr(correct: Array) -> Array:
  """Positive sample reinforcement (arXiv 2506.01347): ``R = 1`` if correct else ``0``."""
  return remap_binary(correct, pos=1.0, neg=0.0)


def nsr(correct: Array) -> Array:
  """Negative sample reinforcement (arXiv 2506.01347): ``R = 0`` if correct else ``-1``."""
  return remap_binary(correct, pos=0.0, neg=-1.0)


def w_reinforce(correct: Array, *, lam: float = 0.1) -> Array:
  """W-REINFORCE (arXiv 2506.01347): ``R = lam`` if correct else ``-1`` (README: ``lam=0.1``)."""
  return remap_binary(correct, pos=lam, neg=-1.0)


@functools.partial(jax.jit, static_argnames=("max_length", "cache_length"))
def overlong_soft_penalty(lengths: Array, *, max_length: int, cache_length: int,
                          factor: float = 1.0) -> Array:
  """DAPO soft overlong punishment (arXiv 2503.14476, eq. 13), the penalty to *add* to rewards.

    ``0``                                          if ``|y| <= L_max - L_cache``
    ``factor * ((L_max - L_cache) - |y|) / L_cache``  if ``L_max - L_cache < |y| <= L_max``
    ``-factor``                                    if ``|y| > L_max``

  With ``factor = 1`` this is eq. 13 and TRL ``get_soft_overlong_punishment``. verl's DAPO
  reward manager computes ``min(-(|y| - (L_max - L_cache)) / L_cache * factor, 0)``: identical up
  to ``L_max`` and unbounded beyond it (unreachable when generation stops at ``L_max``).
  ``cache_length = 0`` leaves only the 0 and ``-factor`` branches.
  Example: ``L_max=20480``, ``L_cache=4096``, ``|y|=18432`` gives ``-0.5``.

  Args:
    lengths: completion lengths in tokens, any shape.
    max_length: ``L_max``.
    cache_length: ``L_cache``, the soft-punishment interval (``0 <= L_cache <= L_max``).
    factor: penalty scale (verl ``penalty_factor``).

  Returns:
    Float penalties (``<= 0``) of the shape of ``lengths``.
  """
  if not 0 <= cache_length <= max_length:
    raise ValueError(f"need 0 <= cache_length <= max_length, got {cache_length}, {max_length}.")
  lengths = jnp.asarray(lengths).astype(jnp.float32)
  expected = max_length - cache_length
  ramp = (expected - lengths) / max(cache_length, 1)
  penalty = jnp.where(lengths <= expected, 0.0, jnp.where(lengths <= max_length, ramp, -1.0))
  return factor * penalty


@functools.partial(jax.jit, static_argnames=("estimator",))
def kl_in_reward(old_logprobs: Array, ref_logprobs: Array, mask: Array, *, beta: float,
                 estimator: str = "k1", log_ratio_clamp: float = 20.0,
                 value_clamp: float = 10.0) -> Array:
  """Per-token KL penalty to add to the token rewards: ``r_t = -beta * KL_t * m_t``.

  The in-reward KL placement of PPO/RLOO/REINFORCE++ (REINFORCE++, arXiv 2501.03262 eq. 8:
  ``KL_t = log pi_old - log pi_ref``, the k1 estimator on the sampling policy). Matches verl
  ``apply_kl_penalty`` (``token_level_rewards = scores - beta * kl_penalty(old, ref) * mask``).
  ``KL_t`` is ``regularizers.kl_penalty(old, ref, estimator=...)``, the same function (and the
  same clamps: k3's exponent to ``±log_ratio_clamp``, its value to ``±value_clamp``) as the
  in-loss KL term: ``"k1"``, ``"k2"``, ``"k3"``, ``"abs"`` (verl's ``"kl"``, ``"mse"``,
  ``"low_var_kl"`` too). The straight-through ``"+"`` forms only change gradients, and there are
  none here: they give the plain estimator's value.

  Add the result to ``outcome_to_token_rewards(rewards, mask)`` before ``reinforce_plus_plus``,
  or sum it over tokens for a sequence-level penalty (TRL RLOO ``beta``).

  Args:
    old_logprobs: ``[..., T]`` log-probs of the sampled tokens under the behaviour policy.
    ref_logprobs: ``[..., T]`` log-probs under the reference policy.
    mask: ``[..., T]`` completion mask.
    beta: KL coefficient.
    estimator: a ``regularizers.KL_ESTIMATORS`` name.
    log_ratio_clamp: bound on k3's exponent.
    value_clamp: bound on k3's value.

  Returns:
    ``[..., T]`` token rewards (``-beta * KL``), zero on padding, without gradient.
  """
  old_logprobs = _float(old_logprobs)
  ref_logprobs = jnp.asarray(ref_logprobs, old_logprobs.dtype)
  mask = jnp.asarray(mask)
  if not old_logprobs.shape == ref_logprobs.shape == mask.shape:
    raise ValueError(f"shapes differ: old {old_logprobs.shape}, ref {ref_logprobs.shape}, "
                     f"mask {mask.shape}.")
  valid = mask > 0
  # where, not multiply: padding may hold garbage log-probs (inf * 0 would be NaN).
  old_logprobs = jnp.where(valid, jax.lax.stop_gradient(old_logprobs), 0.0)
  ref_logprobs = jnp.where(valid, ref_logprobs, 0.0)
  kl = regularizers.kl_penalty(old_logprobs, ref_logprobs, estimator=estimator,
                               log_ratio_clamp=log_ratio_clamp, value_clamp=value_clamp)
  return jnp.where(valid, -beta * kl, 0.0).astype(old_logprobs.dtype)
