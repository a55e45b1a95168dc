"""Noisy-verifier corrections (Cai et al., arXiv 2510.00915).

The verifier is a noisy channel from the latent correctness ``R* in {0, 1}`` to the observed
reward ``R~ in {0, 1}`` with false-positive rate ``rho0 = P(R~=1 | R*=0)`` and false-negative
rate ``rho1 = P(R~=0 | R*=1)``, ``rho0 + rho1 < 1``.

**Where the corrections act.** Both are affine in ``R~``. Under GRPO's group z-score
``A = (r - mean_g r) / (std_g r + eps)`` an affine map ``r -> a r + b`` with ``a > 0`` constant
within the group changes nothing (up to ``eps``), and under mean-centring without the std it only
rescales the group's advantages by ``a``. So, with group-constant ``rho``:

* feeding :func:`backward_correct` rewards into std-normalised GRPO is a **no-op**; use
  :func:`backward_corrected_advantages` (a mean or leave-one-out baseline, no std division: the
  ``1 / (1 - rho0 - rho1)`` scale survives and, with a per-prompt or per-sample ``rho``, so does
  the shift);
* :func:`forward_weights` are **advantages**, not rewards: put them straight into the surrogate
  (REINFORCE-style, no group normalisation) via :func:`forward_corrected_advantages`.

Per-sample ``rho`` (for example different verifiers for different samples) makes the map vary
within a group, and then the corrected rewards do change normalised advantages.

The paper implements both "as lightweight hooks in a GRPO pipeline"; exactly where its hooks sit
was not verified here, so these advantage forms are this library's reading, not a reproduction.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


def _check_rates(rho0, rho1) -> None:
  # Python floats can be checked eagerly; arrays are the caller's responsibility under jit.
  if isinstance(rho0, (int, float)) and isinstance(rho1, (int, float)):  # skip arrays / tracers
    if not (0.0 <= rho0 < 1.0 and 0.0 <= rho1 < 1.0 and rho0 + rho1 < 1.0):
      raise ValueError(f"need 0 <= rho0, rho1 and rho0 + rho1 < 1; got {rho0}, {rho1}")


def backward_correct(r_obs: Array, rho0, rho1) -> Array:
  """Unbiased surrogate reward ``R^ = (R~ - rho0) / (1 - rho0 - rho1)``.

  ``E[R^ | R*] = R*``: for ``R* = 1``, ``((1 - rho1) - rho0) / (1 - rho0 - rho1) = 1``; for
  ``R* = 0``, ``(rho0 - rho0) / (...) = 0``. ``rho0``/``rho1`` may be scalars or broadcast
  against ``r_obs`` (per-prompt or per-sample rates).
  """
  _check_rates(rho0, rho1)
  r = jnp.asarray(r_obs, jnp.float32)
  return (r - rho0) / (1.0 - rho0 - rho1)


def forward_weights(r_obs: Array, rho1) -> Array:
  """Forward-correction score-function weights: ``w = rho1`` if ``R~ = 1`` else ``rho1 - 1``.

  ``E[w | R*=1] = (1-rho1) rho1 + rho1 (rho1 - 1) = 0`` and ``E[w | R*=0] = rho0 rho1 +
  (1-rho0)(rho1-1) = -(1 - rho0 - rho1)``, so ``E[w grad log pi] = (1 - rho0 - rho1)
  E[R* grad log pi]`` (using ``E[grad log pi] = 0``): the clean gradient direction, and only
  ``rho1`` is needed. These are advantages; see the module docstring.
  """
  _check_rates(0.0, rho1)
  r = jnp.asarray(r_obs, jnp.float32)
  return jnp.where(r > 0.5, rho1, rho1 - 1.0) * jnp.ones_like(r)


@functools.partial(jax.jit, static_argnames=("baseline",))
def backward_corrected_advantages(r_obs: Array, rho0, rho1, *, baseline: str = "mean") -> Array:
  """Advantages from backward-corrected rewards, with a baseline that keeps the correction.

  ``[P, G] -> [P, G]``: ``A = R^ - b`` with ``b`` the group mean (``"mean"``), the leave-one-out
  mean (``"rloo"``, ``A_i = (R^_i - mean_g R^) * G / (G - 1)``), or none (``"none"``). There is
  deliberately no std division: it would cancel the correction.
  """
  r = backward_correct(r_obs, rho0, rho1)
  if r.ndim != 2:
    raise ValueError(f"r_obs must be [P, G], got shape {r.shape}")
  if baseline == "none":
    return r
  centred = r - r.mean(axis=1, keepdims=True)
  if baseline == "mean":
    return centred
  if baseline == "rloo":
    g = r.shape[1]
    if g < 2:
      raise ValueError("rloo needs at least 2 samples per group")
    return centred * (g / (g - 1))
  raise ValueError(f"baseline must be 'mean', 'rloo' or 'none', got {baseline!r}")


def forward_corrected_advantages(r_obs: Array, rho1, mask: Array | None = None) -> Array:
  """Forward-correction weights used directly as sequence advantages (no normalisation).

  ``[P, G]`` (or any shape) ``-> same``; with ``mask`` (1 = valid sample) invalid samples get 0.
  """
  w = forward_weights(r_obs, rho1)
  if mask is not None:
    w = w * jnp.asarray(mask, jnp.float32)
  return w


@jax.jit
def estimate_rho1(n_overturned: Array, n_rule_positive: Array) -> Array:
  """False-negative rate from appeals: ``rho1 = n_overturned / (n_rule_positive + n_overturned)``.

  ``n_overturned`` counts rule-based negatives that a second (LLM) verifier judged correct;
  ``n_rule_positive`` counts rule-based positives. The ratio estimates
  ``P(R~=0 | R*=1)`` if the appeal verifier is right and rule positives are true positives.
  This estimator form is a reading of the paper's appeals mechanism [UNVERIFIED]. 0 when both
  counts are 0.
  """
  o = jnp.asarray(n_overturned, jnp.float32)
  p = jnp.asarray(n_rule_positive, jnp.float32)
  return jnp.where(o + p > 0, o / jnp.maximum(o + p, 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("momentum",))
def ema_update(current: Array, observation: Array, *, momentum: float = 0.9) -> Array:
  """``new = momentum * current + (1 - momentum) * observation`` (for an online ``rho1``)."""
  if not 0.0 <= momentum <= 1.0:
    raise ValueError(f"momentum must be in [0, 1], got {momentum}")
  return momentum * jnp.asarray(current, jnp.float32) + (1.0 - momentum) * jnp.asarray(
      observation, jnp.float32)
