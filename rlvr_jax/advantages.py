"""Advantage estimators: rewards ``[P, G]`` (or token rewards) to advantages ``[P, G(, T)]``.

Every public function here is pure and already wrapped in ``jax.jit``: arrays are positional,
options keyword-only; options that change the program (strings, ``ddof``, ``k``, ``bundle_size``,
flags, callables) are static arguments, numeric coefficients (``epsilon``, ``eta``, ``lam``,
``gamma``, ...) are traced, so a schedule can change them without recompiling. Calling them
inside another ``jax.jit`` simply inlines them. Nothing here carries gradient: wrap the result in
``jax.lax.stop_gradient`` or compute it outside the differentiated function (the objective layer
does the latter).

Layout (see ``rlvr_jax.types``): ``P`` prompts, ``G`` samples per prompt, ``T`` completion tokens
left-aligned, ``mask[p, g, t] == 1`` on completion tokens.

Numerics shared by the group estimators:

* ``ddof``: the standard deviation's delta degrees of freedom. verl, TRL, OpenRLHF and oat all use
  ``torch.std`` (Bessel-corrected), hence the default ``ddof=1``; ``jnp.std`` alone would be 0.
* ``epsilon`` is added to the standard deviation, outside the square root (verl ``1e-6``, TRL
  ``1e-4``, OpenRLHF ``1e-9``); whitening over tokens adds it to the variance inside ``rsqrt``.
* A group whose rewards are all equal gets exactly zero advantage: the centred rewards of a
  constant group are set to 0 explicitly, because ``mean`` of a constant in float32 is not always
  bit-equal to it and ``1e-8 / epsilon`` is not small.
* ``single_sample`` decides groups with ``G == 1``: ``"zero"`` (default; no baseline can be formed,
  so no signal; TRL forbids such groups and verl ``rloo_vectorized`` returns 0) or ``"reward"``
  (verl ``grpo``/``rloo``: mean 0 and std 1, so the advantage is the reward itself).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Dict, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "advantage_metrics",
    "broadcast_to_tokens",
    "discounted_returns",
    "gpg",
    "greedy_baseline",
    "group_center",
    "group_mean_batch_std",
    "group_zscore",
    "identity",
    "leave_one_out",
    "mix_self_reward",
    "mvar_bundle",
    "normalize_then_sum",
    "opo_baseline",
    "outcome_to_token_rewards",
    "pass_at_k_advantage",
    "reinforce_plus_plus",
    "reinforce_plus_plus_baseline",
    "remax_token_advantages",
    "sum_then_normalize",
    "tempo_tree_advantages",
    "turn_rewards_to_token_rewards",
    "weighted_grpo_pairs",
]

_SINGLE_SAMPLE_POLICIES = ("zero", "reward")
# Contractions run in full float32: on GPUs the default matmul precision may round inputs to TF32
# (10-bit mantissa), which is visible in advantages.
_EXACT = jax.lax.Precision.HIGHEST


# ---------------------------------------------------------------------------------------------
# Boundary checks and shared group statistics.


def _float(x) -> Array:
  """Casts to a floating array, keeping an existing floating dtype (bf16 stays bf16)."""
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _check_rewards(rewards, name: str = "rewards") -> Array:
  rewards = _float(rewards)
  if rewards.ndim != 2:
    raise ValueError(f"{name} must be [P, G], got shape {rewards.shape}.")
  return rewards


def _check_tokens(x, ndim: int, name: str) -> Array:
  x = jnp.asarray(x)
  if x.ndim != ndim:
    raise ValueError(f"{name} must have {ndim} dims, got shape {x.shape}.")
  return x


def _check_single_sample(policy: str) -> None:
  if policy not in _SINGLE_SAMPLE_POLICIES:
    raise ValueError(f"single_sample must be one of {_SINGLE_SAMPLE_POLICIES}, got {policy!r}.")


def _centered(x: Array, axis: int = -1) -> Array:
  """``x - mean(x)`` along ``axis``, exactly 0 where all entries along ``axis`` are equal."""
  mean = jnp.mean(x, axis=axis, keepdims=True)
  constant = jnp.max(x, axis=axis, keepdims=True) == jnp.min(x, axis=axis, keepdims=True)
  return jnp.where(constant, jnp.zeros_like(x), x - mean)


def _std(x: Array, ddof: int, axis=-1, keepdims: bool = True) -> Array:
  """Standard deviation with ``ddof``; 0 when there are no more than ``ddof`` entries."""
  n = math.prod(x.shape[a] for a in np.atleast_1d(axis)) if axis is not None else x.size
  if n <= ddof:
    shape = jnp.std(x, axis=axis, keepdims=keepdims).shape
    return jnp.zeros(shape, x.dtype)
  return jnp.std(x, axis=axis, ddof=ddof, keepdims=keepdims)


# ---------------------------------------------------------------------------------------------
# Sequence-level group estimators.


@jax.jit
def identity(rewards: Array) -> Array:
  """Advantage equal to the (transformed) reward: ``A_i = R_i``.

  Used with reward remaps (PSR/NSR/W-REINFORCE, arXiv 2506.01347), whose code assigns
  ``A_i = c_i``, ``c_i - 1`` or ``{lam, -1}`` with no baseline and no normalisation.

  Args:
    rewards: ``[P, G]`` rewards.

  Returns:
    ``[P, G]`` float advantages.
  """
  return _check_rewards(rewards)


@functools.partial(jax.jit, static_argnames=("ddof", "single_sample"))
def group_zscore(rewards: Array, *, ddof: int = 1, epsilon: float = 1e-6,
                 single_sample: str = "zero") -> Array:
  """GRPO group z-score: ``A_i = (R_i - mean_G R) / (std_G R + epsilon)``.

  DeepSeekMath, arXiv 2402.03300 §4.1.2 (outcome supervision). Equals verl
  ``adv_estimator=grpo`` (``epsilon=1e-6``), TRL ``scale_rewards="group"`` (``epsilon=1e-4``)
  and OpenRLHF ``group_norm`` (``epsilon=1e-9``); all three use ``ddof=1``.
  Example (``ddof=1``): ``[1, 0, 0, 0] -> [1.5, -0.5, -0.5, -0.5]``.

  Args:
    rewards: ``[P, G]`` rewards.
    ddof: delta degrees of freedom of the group standard deviation.
    epsilon: added to the standard deviation.
    single_sample: policy for ``G == 1`` (module docstring): ``"zero"`` or ``"reward"``
      (verl: ``(R - 0) / (1 + epsilon)``).

  Returns:
    ``[P, G]`` advantages; exactly 0 for groups whose rewards are all equal.
  """
  rewards = _check_rewards(rewards)
  _check_single_sample(single_sample)
  if rewards.shape[1] == 1:
    if single_sample == "reward":
      return rewards / (1.0 + epsilon)
    return jnp.zeros_like(rewards)
  return _centered(rewards) / (_std(rewards, ddof) + epsilon)


@functools.partial(jax.jit, static_argnames=("single_sample",))
def group_center(rewards: Array, *, single_sample: str = "zero") -> Array:
  """Dr. GRPO group centring: ``A_i = R_i - mean_G R`` (no division by the std).

  Liu et al., "Understanding R1-Zero-Like Training", arXiv 2503.20783. Equals verl ``grpo`` with
  ``norm_adv_by_std_in_grpo=False``, TRL ``scale_rewards="none"`` and OpenRLHF ``dr_grpo``.
  Example: ``[1, 0, 0, 0] -> [0.75, -0.25, -0.25, -0.25]``.

  Args:
    rewards: ``[P, G]`` rewards.
    single_sample: ``"zero"`` or ``"reward"`` (verl: mean 0, so ``A = R``) for ``G == 1``.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  _check_single_sample(single_sample)
  if rewards.shape[1] == 1 and single_sample == "reward":
    return rewards
  return _centered(rewards)


@functools.partial(jax.jit, static_argnames=("ddof",))
def group_mean_batch_std(rewards: Array, *, ddof: int = 1, epsilon: float = 1e-6) -> Array:
  """Group mean with batch std: ``A_i = (R_i - mean_G R) / (std_batch R + epsilon)``.

  LitePPO ("Tricks or Traps?", arXiv 2508.08221) and TRL ``scale_rewards="batch"``: the standard
  deviation is that of the *raw* rewards over all ``P * G`` samples (not of the centred ones).
  TRL's epsilon is ``1e-4``; pass ``epsilon=1e-4`` to reproduce its numbers. With ``G == 1`` the
  centred rewards, hence the advantages, are 0.

  Args:
    rewards: ``[P, G]`` rewards.
    ddof: delta degrees of freedom of the batch standard deviation.
    epsilon: added to the batch standard deviation.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  return _centered(rewards) / (_std(rewards, ddof, axis=None) + epsilon)


@functools.partial(jax.jit, static_argnames=("single_sample",))
def leave_one_out(rewards: Array, *, single_sample: str = "zero") -> Array:
  """RLOO: ``A_i = R_i - (1/(G-1)) sum_{j != i} R_j = G/(G-1) (R_i - mean_G R)``.

  Ahmadian et al., arXiv 2402.14740 (after Kool et al. 2019). Equals verl ``rloo`` /
  ``rloo_vectorized``, TRL ``RLOOTrainer`` and OpenRLHF ``rloo``.
  Example: ``[1, 0, 0, 0] -> [1, -1/3, -1/3, -1/3]``.

  Args:
    rewards: ``[P, G]`` rewards.
    single_sample: ``G == 1``: ``"zero"`` (verl ``rloo_vectorized``) or ``"reward"`` (verl
      ``rloo``: no leave-one-out correction, ``A = R``).

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  _check_single_sample(single_sample)
  g = rewards.shape[1]
  if g == 1:
    return rewards if single_sample == "reward" else jnp.zeros_like(rewards)
  return _centered(rewards) * (g / (g - 1))


@jax.jit
def greedy_baseline(rewards: Array, greedy_rewards: Array) -> Array:
  """ReMax: ``A_i = R_i - R(greedy response of the same prompt)``.

  Li et al., arXiv 2310.10505. verl ``remax`` subtracts the greedy reward from the reward-to-go
  of each token; for outcome rewards (one reward on the last token) that is this value on every
  token, so broadcast the result with ``broadcast_to_tokens``.

  Args:
    rewards: ``[P, G]`` rewards of the sampled responses.
    greedy_rewards: ``[P]`` reward of one greedy (``do_sample=False``) response per prompt.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  greedy_rewards = _float(greedy_rewards)
  if greedy_rewards.shape != rewards.shape[:1]:
    raise ValueError(f"greedy_rewards must be [P]={rewards.shape[:1]}, got {greedy_rewards.shape}.")
  return rewards - greedy_rewards[:, None].astype(rewards.dtype)


@functools.partial(jax.jit, static_argnames=("single_sample",))
def opo_baseline(rewards: Array, lengths: Array, *, single_sample: str = "zero") -> Array:
  """OPO length-weighted baseline: ``A_i = R_i - sum_j |o_j| R_j / sum_j |o_j|``.

  On-Policy RL with Optimal reward baseline, arXiv 2505.23585; verl ``adv_estimator=opo`` (lengths
  from the response mask). A group whose responses are all empty has no length weights; its
  baseline falls back to the plain group mean.

  Args:
    rewards: ``[P, G]`` rewards.
    lengths: ``[P, G]`` completion lengths ``|o_j|`` (tokens).
    single_sample: ``G == 1``: ``"zero"`` or ``"reward"`` (verl: baseline 0, ``A = R``).

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  _check_single_sample(single_sample)
  lengths = jnp.asarray(lengths).astype(rewards.dtype)
  if lengths.shape != rewards.shape:
    raise ValueError(f"lengths must be {rewards.shape}, got {lengths.shape}.")
  if rewards.shape[1] == 1:
    return rewards if single_sample == "reward" else jnp.zeros_like(rewards)
  total = jnp.sum(lengths, axis=1, keepdims=True)
  weighted = jnp.sum(lengths * rewards, axis=1, keepdims=True) / jnp.where(total > 0, total, 1.0)
  baseline = jnp.where(total > 0, weighted, jnp.mean(rewards, axis=1, keepdims=True))
  # A constant group has baseline == reward in exact arithmetic; keep it exactly zero.
  constant = jnp.max(rewards, axis=1, keepdims=True) == jnp.min(rewards, axis=1, keepdims=True)
  return jnp.where(constant, 0.0, rewards - baseline)


@functools.partial(jax.jit, static_argnames=("alpha", "normalize_by_std", "ddof"))
def gpg(rewards: Array, *, alpha: str = "valid_fraction", normalize_by_std: bool = False,
        ddof: int = 1, epsilon: float = 1e-4, zero_std_tolerance: float = 1e-5) -> Array:
  """GPG (Group Policy Gradient): ``A_i = alpha * (R_i - mean_G R) / F_norm``.

  Chu et al., arXiv 2504.02546, with the "accurate gradient estimation" factor
  ``alpha = B / (B - M)``: ``B`` samples in the batch, ``M`` of them in groups whose rewards have
  zero spread (they carry no gradient, so the plain batch mean under-weights the rest). Checked
  against the authors' code (AMAP-ML/GPG ``grpo_trainer.py``, ``adjust_gd``): groups count as
  zero-spread when ``std_G <= 1e-5``, and the loss is divided by ``(B - M) / B``, which for a
  linear policy-gradient loss equals scaling the advantage. ``F_norm`` is 1 (the paper's best
  setting, ``normalize_by_std=False``) or the group std plus ``epsilon`` (the authors' code uses
  ``1e-4``, the default). GPG pairs this with the plain ``-A * logp`` loss.

  ``alpha`` modes:
    * ``"valid_fraction"``: ``(#groups) / max(#groups with std_G > zero_std_tolerance, 1)``, the
      paper's ``B / (B - M)`` for equal group sizes.
    * ``"verl"``: verl ``compute_gpg_outcome_advantage``, ``B / max(count_nonzero(R), 1)``; it
      counts non-zero *rewards*, which matches the paper only for some reward schemes.
    * ``"none"``: 1.

  The factor is a batch statistic: compute it on the whole batch, never per micro-batch.

  Args:
    rewards: ``[P, G]`` rewards.
    alpha: ``"valid_fraction"``, ``"verl"`` or ``"none"``.
    normalize_by_std: divide by ``std_G + epsilon``.
    ddof: delta degrees of freedom of the group std.
    epsilon: added to the group std when ``normalize_by_std``.
    zero_std_tolerance: groups with ``std_G`` at most this count as zero-spread.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  p, g = rewards.shape
  std = _std(rewards, ddof)
  adv = _centered(rewards)
  if normalize_by_std:
    adv = adv / (std + epsilon)
  if alpha == "valid_fraction":
    num_valid = jnp.sum(std[:, 0] > zero_std_tolerance)
    factor = p / jnp.maximum(num_valid, 1)
  elif alpha == "verl":
    factor = (p * g) / jnp.maximum(jnp.count_nonzero(rewards), 1)
  elif alpha == "none":
    factor = 1.0
  else:
    raise ValueError(f"alpha must be 'valid_fraction', 'verl' or 'none', got {alpha!r}.")
  return adv * jnp.asarray(factor, rewards.dtype)


@functools.partial(jax.jit, static_argnames=("k", "normalize_by_std", "ddof"))
def pass_at_k_advantage(rewards: Array, *, k: int, normalize_by_std: bool = True, ddof: int = 1,
                        epsilon: float = 1e-6) -> Array:
  """Leave-one-out advantage for the max@k (pass@k for binary rewards) objective.

  Tang et al., "Optimizing Language Models for Inference Time Objectives using RL",
  arXiv 2503.19595. For one size-``k`` subset ``S`` of the group, the score-function estimator of
  ``grad E[max_{j in S} R_j]`` with leave-one-out baseline gives sample ``i in S`` the weight
  ``max(S) - max(S \\ {i})``. This function averages that weight over all subsets containing
  ``i``:

    ``A_i = C(G-1, k-1)^-1 * sum_{S ∋ i, |S| = k} [max(S) - max(S \\ {i})]``

  Only subsets where ``i`` is the maximum contribute. With sorted rewards ``r_(0) <= ... <=
  r_(G-1)`` and ``i`` at rank ``p`` this is ``sum_{q=k-2}^{p-1} C(q, k-2) (r_(p) - r_(q)) /
  C(G-1, k-1)`` (ties contribute 0, so the tie order does not matter).

  ``k == G`` is verl ``adv_estimator=grpo_passk`` exactly: the group's best sample gets
  ``r_max - r_second`` (divided by ``std_G + epsilon`` when ``normalize_by_std``, verl's
  ``norm_adv_by_std_in_grpo``), every other sample 0. ``k < G`` is the subset average above (my
  derivation from the paper's per-subset estimator; verl has no ``k``); PKPO (arXiv 2505.15201)
  derives a different unbiased transform for ``k < G``.

  Args:
    rewards: ``[P, G]`` rewards.
    k: subset size, ``2 <= k <= G`` (static).
    normalize_by_std: divide by the group std plus ``epsilon`` (verl default True).
    ddof: delta degrees of freedom of that std.
    epsilon: added to the std.

  Returns:
    ``[P, G]`` advantages, non-negative.
  """
  rewards = _check_rewards(rewards)
  g = rewards.shape[1]
  if not 2 <= k <= g:
    raise ValueError(f"pass_at_k_advantage needs 2 <= k <= G={g}, got k={k}.")
  # weights[p, q] = C(q, k-2) / C(G-1, k-1) for k-2 <= q < p: the share of subsets in which the
  # sample at rank p is the maximum and the sample at rank q is the runner-up.
  weights = np.zeros((g, g), np.float64)
  for p in range(g):
    for q in range(k - 2, p):
      weights[p, q] = math.comb(q, k - 2) / math.comb(g - 1, k - 1)
  weights = jnp.asarray(weights, rewards.dtype)
  order = jnp.argsort(rewards, axis=1)
  sorted_r = jnp.take_along_axis(rewards, order, axis=1)
  diffs = sorted_r[:, :, None] - sorted_r[:, None, :]  # [P, p, q] = r_(p) - r_(q)
  adv_sorted = jnp.sum(weights[None] * diffs, axis=2)
  inverse = jnp.argsort(order, axis=1)
  adv = jnp.take_along_axis(adv_sorted, inverse, axis=1)
  if normalize_by_std:
    adv = adv / (_std(rewards, ddof) + epsilon)
  return adv


@functools.partial(jax.jit, static_argnames=("scope", "ddof"))
def weighted_grpo_pairs(rewards: Array, *, lambda_neg: float, scope: str = "pair",
                        ddof: int = 1, epsilon: float = 1e-6, threshold: float = 0.5) -> Array:
  """Weighted GRPO for positive-negative prompt pairs (experimental).

  "Beyond Variance: Prompt-Efficient RLVR via Rare-Event Amplification and Bidirectional
  Pairing", arXiv 2602.03452. **Experimental:** only the abstract could be read. It says outcomes
  are reweighted "at the pair level" and then group-normalised; this implements that reading:

    ``R'_i = 1 if c_i else -lambda_neg``;  ``A_i = (R'_i - mean(R')) / (std(R') + epsilon)``

  where the statistics run over the ``2G`` responses of a pair (``scope="pair"``) or over each
  prompt's ``G`` responses (``scope="prompt"``). With binary outcomes a per-prompt z-score is
  invariant to the remap, so ``scope="prompt"`` equals ``group_zscore`` of the correctness;
  it is offered only for comparison. Pairs are consecutive prompts: ``(0, 1), (2, 3), ...``,
  each ``(q+, q-)`` as chosen by the data stage.

  Args:
    rewards: ``[P, G]`` correctness (or rewards; ``> threshold`` counts as correct), ``P`` even.
    lambda_neg: magnitude of the negative outcome (value unknown from the abstract).
    scope: ``"pair"`` or ``"prompt"``.
    ddof: delta degrees of freedom of the std.
    epsilon: added to the std.
    threshold: correctness threshold.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  p, g = rewards.shape
  remapped = jnp.where(rewards > threshold, 1.0, -lambda_neg).astype(rewards.dtype)
  if scope == "prompt":
    return group_zscore(remapped, ddof=ddof, epsilon=epsilon)
  if scope != "pair":
    raise ValueError(f"scope must be 'pair' or 'prompt', got {scope!r}.")
  if p % 2:
    raise ValueError(f"scope='pair' needs an even number of prompts, got P={p}.")
  pairs = remapped.reshape(p // 2, 2 * g)
  return group_zscore(pairs, ddof=ddof, epsilon=epsilon).reshape(p, g)


@functools.partial(
    jax.jit, static_argnames=("bundle_size", "credit", "natural_baseline", "normalize_by_std"))
def mvar_bundle(rewards: Array, *, bundle_size: int = 5, alpha: float = 0.2, beta: float = 0.8,
                omega: float = 1.5, credit: str = "sum-mean", natural_baseline: bool = False,
                normalize_by_std: bool = True, epsilon: float = 1e-6) -> Array:
  """RiskPO Mixed-VaR advantage over bundles of prompts.

  Ren et al., "RiskPO", arXiv 2510.00911; semantics from the official code (RTkenny/RiskPO
  ``compute_grpo_bundle_rvar_outcome_advantage_quantile_tracking`` and the released scripts).

  Consecutive prompts form bundles of ``bundle_size``; "paper" ``k`` of a bundle is the ``k``-th
  response of each of its prompts, with score ``X_k = sum_{p in bundle} R[p, k]``. With ``q_d``,
  ``q_u`` the ``alpha``/``beta`` quantiles of the bundle's ``G`` paper scores (linear
  interpolation, as ``torch.quantile``):

    ``g_RVaR = [(X - q_d)^+ - (X - q_u)^+ (+ q_d - q_u if natural_baseline)]``
    ``         / (beta - alpha + eps)``
    ``g_CVaR = -(q_d - X)^+ / (alpha + eps)``
    ``adv_paper = (omega * g_CVaR + g_RVaR) / (omega + 1)``, then ``/ (std_bundle(X) + eps)``

  ``omega = 0`` is the pure RVaR estimator (the code's ``use_mixing_risk_measure=False``).
  Credit to the responses of a paper (``credit``):
    * ``"sum-mean"`` (script default): ``A = adv_paper * d_j / sum_{paper} d``, ``d_j = R_j -
      mean_{q(j)} R``; an equal share ``adv_paper / bundle_size`` when ``|sum d| <= 1e-6``.
    * ``"uniform"``: ``A = adv_paper``.
    * ``"score"``: ``0.5 * adv_paper`` if ``R_j > 0`` else ``1.5 * adv_paper``.
    * ``"std"``: ``adv_paper / (std_{q(j)} + eps)``, with the prompt std replaced by 1 when it
      is ``<= 1e-3``.
  The released code computes the advantage before its quantile tracker writes the tracked
  quantiles into the batch, so the per-bundle empirical quantiles used here are what it runs;
  the tracker itself (a metric-side SGD on 19 quantile levels) is not reproduced.
  A single-paper bundle (``G == 1``) gets ``q_d = q_u = X`` and std 1, as in the code.

  Args:
    rewards: ``[P, G]`` rewards; ``P`` must be a multiple of ``bundle_size``.
    bundle_size: prompts per bundle (static).
    alpha: lower quantile level.
    beta: upper quantile level.
    omega: CVaR mixing weight ``w_mix``.
    credit: ``"sum-mean"``, ``"uniform"``, ``"score"`` or ``"std"``.
    natural_baseline: add ``q_d - q_u`` to ``g_RVaR`` (the code's ``natural_baseline_adv``;
      the released scripts set it False).
    normalize_by_std: divide by the bundle std of paper scores (``ddof=1``) plus ``epsilon``.
    epsilon: the code's ``1e-6`` in every denominator above.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards = _check_rewards(rewards)
  p, g = rewards.shape
  if bundle_size < 1 or p % bundle_size:
    raise ValueError(f"P={p} must be a positive multiple of bundle_size={bundle_size}.")
  if credit not in ("sum-mean", "uniform", "score", "std"):
    raise ValueError(f"unknown credit mode {credit!r}.")
  nb = p // bundle_size
  bundled = rewards.reshape(nb, bundle_size, g)
  papers = jnp.sum(bundled, axis=1)  # [nb, G]
  if g == 1:
    q_d = q_u = papers
    std = jnp.ones_like(papers)
  else:
    q_d = jnp.quantile(papers, alpha, axis=1, keepdims=True, method="linear")
    q_u = jnp.quantile(papers, beta, axis=1, keepdims=True, method="linear")
    std = _std(papers, 1)
  relu = jax.nn.relu
  g_rvar = relu(papers - q_d) - relu(papers - q_u)
  if natural_baseline:
    g_rvar = g_rvar + q_d - q_u
  g_rvar = g_rvar / (beta - alpha + epsilon)
  g_cvar = -relu(q_d - papers) / (alpha + epsilon)
  adv_paper = (omega * g_cvar + g_rvar) / (omega + 1.0)
  if normalize_by_std:
    adv_paper = adv_paper / (std + epsilon)
  adv_paper = adv_paper[:, None, :]  # [nb, 1, G] -> broadcast over the bundle's prompts
  if credit == "uniform":
    adv = jnp.broadcast_to(adv_paper, bundled.shape)
  elif credit == "score":
    adv = jnp.where(bundled > 0, 0.5, 1.5) * adv_paper
  elif credit == "std":
    q_std = _std(bundled, 1)  # 0 for G == 1, hence replaced by 1 below, as in the code
    q_std = jnp.where(q_std > 1e-3, q_std, 1.0)
    adv = adv_paper / (q_std + epsilon)
  else:  # sum-mean
    d = bundled - jnp.mean(bundled, axis=2, keepdims=True)
    total = jnp.sum(d, axis=1, keepdims=True)  # per paper
    share = jnp.abs(total) > 1e-6
    adv = jnp.where(share, adv_paper * d / jnp.where(share, total, 1.0), adv_paper / bundle_size)
  return adv.reshape(p, g)


@functools.partial(jax.jit, static_argnames=("ddof",))
def mix_self_reward(rewards: Array, self_rewards: Array, *, lam: float = 0.1, tau_f: float = 0.1,
                    truncated: Optional[Array] = None, advantages: Optional[Array] = None,
                    ddof: int = 1, epsilon: float = 1e-6) -> Array:
  """LaSeR: mix the GRPO advantage with the group z-score of the last-token self-reward.

  Yang et al., "LaSeR: Reinforcement Learning with Last-Token Self-Rewarding", arXiv 2510.14943;
  semantics from the official code (RUCBM/LaSeR ``ray_trainer.py`` / ``dp_actor.py``):

    ``s_i = clip(r_s(i), 0, 1)`` (0 for truncated responses)
    ``S_i = (s_i - mean_G s) / std_G s``  (``ddof=1``, no epsilon) if ``std_G s > tau_f``,
    otherwise ``S_i = A_i`` (the group's self-rewards are too flat to rank)
    ``A'_i = (1 - lam) A_i + lam S_i``

  A single-sample group uses mean 0 and std 1 (``S_i = s_i``), as the code does. The caller
  applies the warm-up (the code integrates only after ``self_rewarding_warmup_steps = 200``).

  Args:
    rewards: ``[P, G]`` verifier rewards.
    self_rewards: ``[P, G]`` self-reward scores ``r_s = beta_v (T log pi(z_c|...) - c_ref)``
      computed from the old policy (no gradient).
    lam: mixing coefficient ``self_rewarding_advantages_integration_coef``.
    tau_f: ``self_rewarding_advantages_filtering_threshold``.
    truncated: optional ``[P, G]`` in {0, 1}; truncated responses score 0.
    advantages: optional ``[P, G]`` base advantages; default ``group_zscore(rewards, ddof,
      epsilon)`` (LaSeR runs on GRPO).
    ddof: delta degrees of freedom of both standard deviations.
    epsilon: epsilon of the default base z-score.

  Returns:
    ``[P, G]`` mixed advantages.
  """
  rewards = _check_rewards(rewards)
  self_rewards = _check_rewards(self_rewards, "self_rewards")
  if self_rewards.shape != rewards.shape:
    raise ValueError(f"self_rewards must be {rewards.shape}, got {self_rewards.shape}.")
  base = (group_zscore(rewards, ddof=ddof, epsilon=epsilon) if advantages is None
          else _check_rewards(advantages, "advantages"))
  score = jnp.clip(self_rewards, 0.0, 1.0)
  if truncated is not None:
    score = jnp.where(jnp.asarray(truncated) > 0, 0.0, score)
  if rewards.shape[1] == 1:
    self_adv = score
  else:
    std = _std(score, ddof)
    keep = std > tau_f
    self_adv = jnp.where(keep, _centered(score) / jnp.where(keep, std, 1.0), base)
  return (1.0 - lam) * base + lam * self_adv


# ---------------------------------------------------------------------------------------------
# Multi-reward aggregation.


def _check_multi(rewards_per_fn, weights) -> tuple[Array, Array]:
  rewards_per_fn = _float(rewards_per_fn)
  if rewards_per_fn.ndim != 3:
    raise ValueError(f"rewards_per_fn must be [P, G, K], got {rewards_per_fn.shape}.")
  weights = jnp.asarray(weights, rewards_per_fn.dtype)
  if weights.shape != rewards_per_fn.shape[2:]:
    raise ValueError(f"weights must be [K]={rewards_per_fn.shape[2:]}, got {weights.shape}.")
  return rewards_per_fn, weights


@functools.partial(jax.jit, static_argnames=("normalizer", "ddof"))
def sum_then_normalize(rewards_per_fn: Array, weights: Array,
                       normalizer: Union[str, Callable[[Array], Array]] = "group", *,
                       ddof: int = 1, epsilon: float = 1e-4) -> Array:
  """Weighted sum of reward functions, then one advantage estimator on the sum.

  ``R_i = sum_k w_k r_{i,k}``, ``A = normalizer(R)``. TRL's default
  ``multi_objective_aggregation="sum_then_normalize"``; with the string normalisers and the
  default ``epsilon=1e-4`` this reproduces TRL's ``scale_rewards``:
  ``"group"`` -> ``group_zscore``, ``"batch"`` -> ``group_mean_batch_std``, ``"none"`` ->
  ``group_center``. Any ``[P, G] -> [P, G]`` callable (e.g. ``leave_one_out``) is accepted.
  TRL's NaN handling of unscorable completions is not reproduced: inputs must be finite.

  Args:
    rewards_per_fn: ``[P, G, K]`` per-function rewards.
    weights: ``[K]`` weights.
    normalizer: ``"group"``, ``"batch"``, ``"none"`` or a callable (static under jit).
    ddof: ddof of the string normalisers.
    epsilon: epsilon of the string normalisers.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards_per_fn, weights = _check_multi(rewards_per_fn, weights)
  total = jnp.einsum("pgk,k->pg", rewards_per_fn, weights, precision=_EXACT)
  if callable(normalizer):
    return normalizer(total)
  if normalizer == "group":
    return group_zscore(total, ddof=ddof, epsilon=epsilon)
  if normalizer == "batch":
    return group_mean_batch_std(total, ddof=ddof, epsilon=epsilon)
  if normalizer == "none":
    return group_center(total)
  raise ValueError(
      f"normalizer must be 'group', 'batch', 'none' or a callable, got {normalizer!r}.")


@functools.partial(jax.jit, static_argnames=("ddof",))
def normalize_then_sum(rewards_per_fn: Array, weights: Array, *, ddof: int = 1,
                       epsilon: float = 1e-4) -> Array:
  """GDPO: z-score each reward function within its group, sum with weights, z-score the batch.

  GDPO (Liu et al., "Group reward-Decoupled Normalization Policy Optimization for Multi-reward
  RL Optimization", arXiv 2601.05242), as implemented by TRL
  ``multi_objective_aggregation="normalize_then_sum"``:

    ``z_{i,k} = (r_{i,k} - mean_G r_k) / (std_G r_k + eps)``;  ``s_i = sum_k w_k z_{i,k}``
    ``A_i = (s_i - mean_batch s) / (std_batch s + eps)``

  With TRL's ``epsilon=1e-4`` and ``ddof=1`` the numbers match TRL. Decoupling stops one
  high-variance reward from drowning the others' ranking inside a group.

  Args:
    rewards_per_fn: ``[P, G, K]`` per-function rewards.
    weights: ``[K]`` weights.
    ddof: ddof of both standard deviations.
    epsilon: added to both standard deviations.

  Returns:
    ``[P, G]`` advantages.
  """
  rewards_per_fn, weights = _check_multi(rewards_per_fn, weights)
  z = _centered(rewards_per_fn, axis=1) / (_std(rewards_per_fn, ddof, axis=1) + epsilon)
  summed = jnp.einsum("pgk,k->pg", z, weights, precision=_EXACT)
  flat = summed.reshape(1, -1)
  return (_centered(flat) / (_std(flat, ddof) + epsilon)).reshape(summed.shape)


# ---------------------------------------------------------------------------------------------
# Token-level estimators.


@jax.jit
def broadcast_to_tokens(advantages: Array, mask: Array) -> Array:
  """Sequence advantages ``[P, G]`` (or token advantages ``[P, G, T]``) to ``[P, G, T]``.

  ``A_{i,t} = A_i * m_{i,t}`` (or ``A_{i,t} * m_{i,t}``): zero on padding.

  Args:
    advantages: ``[P, G]`` or ``[P, G, T]``.
    mask: ``[P, G, T]`` completion mask.

  Returns:
    ``[P, G, T]`` advantages in the dtype of ``advantages`` (float).
  """
  advantages = _float(advantages)
  mask = _check_tokens(mask, 3, "mask")
  if advantages.shape == mask.shape[:2]:
    advantages = advantages[..., None]
  elif advantages.shape != mask.shape:
    raise ValueError(f"advantages {advantages.shape} match neither [P, G] nor mask {mask.shape}.")
  return advantages * mask.astype(advantages.dtype)


@jax.jit
def outcome_to_token_rewards(rewards: Array, mask: Array) -> Array:
  """Places each sequence's scalar reward on its last valid token: ``[P, G] -> [P, G, T]``.

  The verl/OpenRLHF convention for outcome rewards (``token_level_scores``). A sequence whose
  mask is all zero (empty completion) receives no reward tokens, so its reward is dropped. With
  interior holes (multi-turn observation tokens masked out) this is the last *model* token, the
  end of the final assistant turn.

  Args:
    rewards: ``[P, G]`` rewards.
    mask: ``[P, G, T]`` completion mask.

  Returns:
    ``[P, G, T]`` token rewards.
  """
  rewards = _check_rewards(rewards)
  mask = _check_tokens(mask, 3, "mask")
  if mask.shape[:2] != rewards.shape:
    raise ValueError(f"mask {mask.shape} does not match rewards {rewards.shape}.")
  t = mask.shape[-1]
  valid = mask > 0
  last = t - 1 - jnp.argmax(valid[..., ::-1], axis=-1)
  onehot = (jnp.arange(t) == last[..., None]) & jnp.any(valid, axis=-1, keepdims=True)
  return jnp.where(onehot, rewards[..., None], 0.0).astype(rewards.dtype)


@jax.jit
def turn_rewards_to_token_rewards(turn_rewards: Array, turn_ids: Array, mask: Array) -> Array:
  """Places each turn's reward on the last model token of that turn: ``[..., K] -> [..., T]``.

  ``r_t = sum_k turn_rewards[k] * [t == last model token of turn k]``: the per-turn reward parts
  of a multi-turn rollout (``rlvr_jax.rollout.multiturn``), in the same convention as
  ``outcome_to_token_rewards`` (the outcome reward is the last turn's part). A turn with no model
  token (or ``k`` beyond the episode's turns) drops its reward. Feed the result to
  ``reinforce_plus_plus``, ``remax_token_advantages`` or ``discounted_returns``, which carry it
  back through the observation tokens to the earlier turns.

  Args:
    turn_rewards: ``[..., K]`` reward of each assistant turn.
    turn_ids: ``[..., T]`` int, the turn index of every token (any value on padding).
    mask: ``[..., T]``; 1 on model tokens, 0 on observation tokens and padding.

  Returns:
    ``[..., T]`` token rewards in the dtype of ``turn_rewards``.
  """
  turn_rewards = _float(turn_rewards)
  turn_ids = jnp.asarray(turn_ids)
  mask = jnp.asarray(mask)
  if turn_ids.shape != mask.shape or turn_rewards.shape[:-1] != mask.shape[:-1]:
    raise ValueError(f"turn_rewards {turn_rewards.shape}, turn_ids {turn_ids.shape} and mask "
                     f"{mask.shape} must agree on the leading axes.")
  k, t = turn_rewards.shape[-1], mask.shape[-1]
  # in_turn[..., k, t]: token t is a model token of turn k.
  in_turn = (turn_ids[..., None, :] == jnp.arange(k)[:, None]) & (mask[..., None, :] > 0)
  last = t - 1 - jnp.argmax(in_turn[..., ::-1], axis=-1)
  onehot = (jnp.arange(t) == last[..., None]) & jnp.any(in_turn, axis=-1, keepdims=True)
  return jnp.sum(jnp.where(onehot, turn_rewards[..., None], 0.0), axis=-2).astype(
      turn_rewards.dtype)


def _discounted_returns(token_rewards: Array, mask: Array, gamma) -> Array:
  """Return-to-go carried through masked positions (the holes of multi-turn trajectories).

  With the running return ``C_T = 0``:

    ``C_t = m_t * (r_t + gamma * C_{t+1}) + (1 - m_t) * C_{t+1}``,   ``G_t = m_t * C_t``

  so a masked position (an observation token, or padding) neither adds its reward nor discounts:
  the discount counts model tokens only, and a reward after a tool observation reaches every model
  token before it. This is verl 0.9.1's REINFORCE++ loop (``compute_reinforce_plus_plus_outcome
  _advantage``); earlier verl reset the running return after a masked position. Written as an
  associative scan over the affine maps ``C -> a_t C + b_t`` (``a_t = gamma`` on model tokens,
  1 on masked ones; ``b_t = m_t r_t``), so it runs in ``log T`` depth.
  """
  m = mask.astype(token_rewards.dtype)
  gamma = jnp.asarray(gamma, token_rewards.dtype)
  a = m * gamma + (1.0 - m)
  b = token_rewards * m

  def compose(later, earlier):
    # ``later`` covers positions after ``earlier``: y_t = a_t * (A * y + B) + b_t.
    a_l, b_l = later
    a_e, b_e = earlier
    return a_e * a_l, a_e * b_l + b_e

  _, carried = jax.lax.associative_scan(compose, (a, b), reverse=True,
                                        axis=token_rewards.ndim - 1)
  return carried * m


def _check_token_pair(token_rewards, mask) -> tuple[Array, Array]:
  token_rewards = _float(token_rewards)
  mask = jnp.asarray(mask)
  if mask.shape != token_rewards.shape:
    raise ValueError(f"mask {mask.shape} must match token_rewards {token_rewards.shape}.")
  return token_rewards, mask.astype(token_rewards.dtype)


@jax.jit
def discounted_returns(token_rewards: Array, mask: Array, *, gamma: float = 1.0) -> Array:
  """Discounted return-to-go over model tokens, carried through masked holes.

  ``G_t = sum_{t' >= t, m_t' = 1} gamma^(n(t, t')) r_t'`` for model tokens (``m_t = 1``), where
  ``n(t, t')`` counts the model tokens in ``(t, t']``; 0 where ``m_t = 0``. Masked positions
  (tool observations, padding) contribute no reward and no discount, so a reward placed after an
  observation reaches the tokens before it (verl 0.9.1's REINFORCE++ returns; with ``gamma=1``
  also verl ``remax``'s reverse cumulative sum, restricted to model tokens).

  Args:
    token_rewards: ``[..., T]`` per-token rewards (those at masked positions are ignored).
    mask: same shape; 1 on model tokens, 0 on observation tokens and padding.
    gamma: discount per model token.

  Returns:
    Returns of the shape of ``token_rewards``, zero on masked positions.
  """
  token_rewards, m = _check_token_pair(token_rewards, mask)
  return _discounted_returns(token_rewards, m, gamma)


def _masked_whiten(values: Array, mask: Array, ddof: int, epsilon: float) -> Array:
  """``(x - mean) * rsqrt(var + epsilon)`` with masked statistics over all elements, times mask."""
  m = mask.astype(values.dtype)
  n = jnp.sum(m)
  mean = jnp.sum(values * m) / jnp.maximum(n, 1.0)
  sq = jnp.sum(jnp.square(values - mean) * m)
  var = sq / jnp.maximum(n - ddof, 1.0)
  return (values - mean) * jax.lax.rsqrt(var + epsilon) * m


@jax.jit
def reinforce_plus_plus(token_rewards: Array, mask: Array, *, gamma: float = 1.0,
                        epsilon: float = 1e-8, ddof: int = 1) -> Array:
  """REINFORCE++: discounted return-to-go per token, whitened over all valid tokens of the batch.

  Hu, arXiv 2501.03262 (§3, eqs. 8-12):

    ``G_{i,t} = sum_{t' >= t} gamma^(t'-t) r_{i,t'}``
    ``A_{i,t} = (G_{i,t} - mean_batch G) / sqrt(var_batch G + epsilon)``

  mean and variance over every ``m = 1`` token of the batch (the paper's global normalisation).
  Matches verl 0.9.1 ``reinforce_plus_plus`` exactly in semantics: the return is carried through
  masked positions (``discounted_returns``: an interior hole, such as the observation tokens of a
  multi-turn trajectory, neither resets the return nor discounts it, and its own reward is
  ignored), then ``masked_whiten`` re-centres with ``ddof=1`` and ``rsqrt(var + 1e-8)`` over the
  ``m = 1`` tokens, and the result is zeroed on masked positions. OpenRLHF ``reinforce`` also
  re-centres but uses ``ddof=0`` and ``rsqrt(max(var, 1e-8))``; pass ``ddof=0`` to get its
  mean/variance (its clamp differs from ``+ epsilon`` only when ``var`` is ~1e-8).

  Token rewards are the outcome reward on the last valid token (``outcome_to_token_rewards``),
  per-turn rewards on the last token of each turn (``turn_rewards_to_token_rewards``), plus any
  per-token reward such as ``-beta * KL`` from ``kl_in_reward``.

  Args:
    token_rewards: ``[P, G, T]`` (or any ``[..., T]``) per-token rewards.
    mask: same shape; 1 on model tokens, 0 on observation tokens (holes) and padding.
    gamma: discount factor per model token (the paper and verl's default use 1).
    epsilon: added to the variance inside ``rsqrt``.
    ddof: delta degrees of freedom of the batch variance.

  Returns:
    Advantages of the shape of ``token_rewards``, zero on masked positions.
  """
  token_rewards, m = _check_token_pair(token_rewards, mask)
  returns = _discounted_returns(token_rewards, m, gamma)
  return _masked_whiten(returns, m, ddof, epsilon)


@jax.jit
def remax_token_advantages(token_rewards: Array, greedy_rewards: Array, mask: Array) -> Array:
  """ReMax with token rewards: ``A_{i,t} = G_{i,t} - R(greedy_p)`` on model tokens.

  Li et al., arXiv 2310.10505; verl ``compute_remax_outcome_advantage``: the undiscounted
  return-to-go ``G_{i,t} = sum_{t' >= t} m_t' r_t'`` minus the greedy response's reward of the
  same prompt. Holes (observation tokens) are carried through as in ``discounted_returns`` with
  ``gamma=1``; the result is 0 on masked positions (verl leaves the carried value there, which
  its loss mask ignores). With only an outcome reward this is ``greedy_baseline`` broadcast to
  the model tokens; per-turn rewards make earlier turns' advantages differ.

  Args:
    token_rewards: ``[P, G, T]`` per-token rewards.
    greedy_rewards: ``[P]`` total reward of one greedy response per prompt.
    mask: ``[P, G, T]``; 1 on model tokens, 0 on observation tokens and padding.

  Returns:
    ``[P, G, T]`` advantages, zero on masked positions.
  """
  token_rewards, m = _check_token_pair(token_rewards, mask)
  token_rewards = _check_tokens(token_rewards, 3, "token_rewards")
  greedy_rewards = _float(greedy_rewards)
  if greedy_rewards.shape != token_rewards.shape[:1]:
    raise ValueError(f"greedy_rewards must be [P]={token_rewards.shape[:1]}, got "
                     f"{greedy_rewards.shape}.")
  returns = _discounted_returns(token_rewards, m, 1.0)
  return (returns - greedy_rewards[:, None, None].astype(returns.dtype)) * m


@functools.partial(jax.jit, static_argnames=("single_sample",))
def reinforce_plus_plus_baseline(rewards: Array, mask: Array, *, epsilon: float = 1e-8,
                                 ddof: int = 1, single_sample: str = "reward") -> Array:
  """REINFORCE++-baseline: subtract the group mean, then whiten over all valid tokens.

  Hu, arXiv 2501.03262: ``A_i = R_i - mean_G R``, broadcast to the response tokens, then
  ``(A - mean_batch A) / sqrt(var_batch A + epsilon)`` over every valid token of the batch (so
  longer responses weigh more in the statistics). Matches verl ``reinforce_plus_plus_baseline``
  (re-centred ``masked_whiten``, ``ddof=1``, ``+1e-8``); OpenRLHF ``reinforce_baseline`` uses
  ``ddof=0``. For ``G == 1`` the default ``single_sample="reward"`` follows verl (group mean 0):
  the batch whitening then supplies the baseline.

  Args:
    rewards: ``[P, G]`` outcome rewards.
    mask: ``[P, G, T]`` completion mask.
    epsilon: added to the variance inside ``rsqrt``.
    ddof: delta degrees of freedom of the batch variance.
    single_sample: ``"reward"`` (verl) or ``"zero"`` for ``G == 1``.

  Returns:
    ``[P, G, T]`` advantages, zero on padding.
  """
  centred = group_center(rewards, single_sample=single_sample)
  mask = _check_tokens(mask, 3, "mask")
  tokens = broadcast_to_tokens(centred, mask)
  return _masked_whiten(tokens, mask.astype(tokens.dtype), ddof, epsilon)


@functools.partial(jax.jit, static_argnames=("value_rewards", "ddof"))
def tempo_tree_advantages(rewards: Array, tokens: Array, mask: Array, *, eta: float,
                          value_rewards: str = "normalized", ddof: int = 1,
                          epsilon: float = 1e-6) -> Array:
  """TEMPO: GRPO advantage plus branch-gated TD on the group's prefix tree (experimental).

  Tran, Yao & Yu, "Exploiting Tree Structure for Credit Assignment in RL Training of LLMs"
  (Prefix-to-Tree / TEMPO), arXiv 2509.18314. The ``G`` responses of a prompt form a token
  prefix tree; response ``j`` passes through prefix ``s`` when its first ``|s|`` tokens equal
  ``s``. ``V(s)`` is the mean value reward of the responses through ``s``. With ``s_{i,t}`` the
  prefix of response ``i`` *before* token ``t``:

    ``A_{i,t} = A_i^GRPO + eta * [V(s_{i,t+1}) - V(s_{i,t})]``

  The TD term is non-zero only where the tree branches (some response through ``s_{i,t}``
  continues with another token or ends there); elsewhere the child has the same responses as
  its parent and TEMPO reduces to GRPO, as the paper states. The gate is applied explicitly so
  non-branch tokens get exactly the GRPO value. **Experimental:** the paper's value of ``eta``
  and whether ``V`` averages raw or group-normalised rewards could not be confirmed (no code
  released; an overview says "average normalized reward"), hence ``value_rewards``:
  ``"normalized"`` (default; ``V`` over the GRPO z-scores, so ``V(root) = 0``) or ``"raw"``.

  The tree is built in-graph from pairwise prefix equality (``[P, G, G, T]`` booleans), so the
  function is jit-able with static shapes; memory grows as ``P * G^2 * T``.

  Args:
    rewards: ``[P, G]`` outcome rewards.
    tokens: ``[P, G, T]`` int completion tokens.
    mask: ``[P, G, T]`` completion mask (left-aligned).
    eta: TD weight.
    value_rewards: ``"normalized"`` or ``"raw"``.
    ddof: ddof of the GRPO z-score.
    epsilon: epsilon of the GRPO z-score.

  Returns:
    ``[P, G, T]`` advantages, zero on padding.
  """
  rewards = _check_rewards(rewards)
  tokens = _check_tokens(tokens, 3, "tokens")
  mask = _check_tokens(mask, 3, "mask")
  if tokens.shape[:2] != rewards.shape or mask.shape != tokens.shape:
    raise ValueError(f"rewards {rewards.shape}, tokens {tokens.shape} and mask {mask.shape} "
                     "must agree on [P, G, T].")
  grpo = group_zscore(rewards, ddof=ddof, epsilon=epsilon)
  if value_rewards == "normalized":
    values = grpo
  elif value_rewards == "raw":
    values = rewards
  else:
    raise ValueError(f"value_rewards must be 'normalized' or 'raw', got {value_rewards!r}.")
  valid = mask > 0
  # same[p, i, j, t]: responses i and j both have token t and it is the same token.
  same = (tokens[:, :, None, :] == tokens[:, None, :, :]) & valid[:, :, None, :] & valid[:, None]
  # through_child[..., t]: j shares i's prefix of length t + 1 (tokens 0..t).
  through_child = jnp.cumsum(~same, axis=-1) == 0
  # through_parent[..., t]: j shares i's prefix of length t (the root at t = 0 holds all).
  root = jnp.ones_like(through_child[..., :1])
  through_parent = jnp.concatenate([root, through_child[..., :-1]], axis=-1)
  child = through_child.astype(values.dtype)
  parent = through_parent.astype(values.dtype)
  n_child = jnp.sum(child, axis=2)
  n_parent = jnp.sum(parent, axis=2)
  v_child = jnp.einsum("pijt,pj->pit", child, values, precision=_EXACT) / jnp.maximum(n_child, 1.0)
  v_parent = (jnp.einsum("pijt,pj->pit", parent, values, precision=_EXACT)
              / jnp.maximum(n_parent, 1.0))
  branch = n_child < n_parent
  td = jnp.where(branch, v_child - v_parent, 0.0)
  return (grpo[..., None] + eta * td) * mask.astype(values.dtype)


# ---------------------------------------------------------------------------------------------
# Metrics.


@jax.jit
def advantage_metrics(rewards: Array, advantages: Array, mask: Array) -> Dict[str, Array]:
  """Reward and advantage statistics, named as TRL/verl log them.

  * ``reward/mean``, ``reward/std``: over the ``P * G`` rewards (``ddof=1``, TRL's
    ``reward_std``).
  * ``advantages/mean|std|min|max``: over valid tokens (advantages broadcast to tokens, as verl's
    ``critic/advantages/*``; std with ``ddof=0``); 0 when no token is valid.
  * ``frac_reward_zero_std``: fraction of groups whose rewards are all equal (TRL's name; a
    ``G == 1`` group counts as zero-std, as in TRL).

  Args:
    rewards: ``[P, G]`` rewards.
    advantages: ``[P, G]`` or ``[P, G, T]`` advantages.
    mask: ``[P, G, T]`` completion mask.

  Returns:
    Dict of float32 scalars.
  """
  rewards = _check_rewards(rewards).astype(jnp.float32)
  tok = broadcast_to_tokens(advantages, mask).astype(jnp.float32)
  valid = jnp.asarray(mask) > 0
  n = jnp.sum(valid)
  any_valid = n > 0
  mean = jnp.sum(jnp.where(valid, tok, 0.0)) / jnp.maximum(n, 1)
  var = jnp.sum(jnp.where(valid, jnp.square(tok - mean), 0.0)) / jnp.maximum(n, 1)
  big = jnp.finfo(jnp.float32).max
  adv_min = jnp.where(any_valid, jnp.min(jnp.where(valid, tok, big)), 0.0)
  adv_max = jnp.where(any_valid, jnp.max(jnp.where(valid, tok, -big)), 0.0)
  zero_std = jnp.max(rewards, axis=1) == jnp.min(rewards, axis=1)
  return {
      "reward/mean": jnp.mean(rewards),
      "reward/std": _std(rewards, 1, axis=None, keepdims=False),
      "advantages/mean": mean,
      "advantages/std": jnp.sqrt(var),
      "advantages/min": adv_min,
      "advantages/max": adv_max,
      "frac_reward_zero_std": jnp.mean(zero_std.astype(jnp.float32)),
  }
