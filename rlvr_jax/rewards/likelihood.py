"""Likelihood rewards: the policy's own probability of a reference answer, and SAR.

Setup shared by VeriFree, RLPR and the log-probability reward: sample reasoning ``z`` up to an
answer delimiter, splice the **reference** answer ``a*`` in, teacher-force it and read the
per-token ``log p_i = log pi(a*_i | x, z, a*_<i)``, ``i = 1..L``. Those log-probs come from
:func:`rlvr_jax.rollout.scoring.token_logprobs` (prompt = ``x + z``, completion = the answer
tokens); the functions here are pure functions of them, shapes ``[P, G, L]`` with an answer mask
and a ``valid`` flag per sample (False when the delimiter was missing or generation was
truncated). :func:`split_at_delimiter` and :func:`verifree_answer_suffix` build the strings.

* VeriFree (arXiv 2505.21493; sail-sg/VeriFree @718b363): ``R = pi(a*|x,z) = exp(sum_i log p_i)``,
  0 for invalid samples.
* RLPR (arXiv 2506.18254): ``r = (1/L) sum_i exp(log p_i)`` (mean token probability), debiased
  by the same score without reasoning ``r'``: ``r_hat = clip(r - r', 0, 1)``; combined with a
  format reward ``R = (1 - alpha) r_hat + alpha * fmt``; prompts whose group reward std is below
  an EMA threshold are filtered. The combination and filter defaults come from a third-party
  reimplementation [UNVERIFIED against the official code].
* Log-probability reward (arXiv 2602.03979): ``R = sum_i log p_i``.
* Self-Aligned Reward, SAR (arXiv 2509.05489; amazon-science code @08892d0): relative perplexity
  gain of the answer given the question, ``R_SA = max((ppl(a) - ppl(a|q)) / (ppl(a) + eps), -1)``.
"""

from __future__ import annotations

import functools
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp

Array = jax.Array


def split_at_delimiter(completion: str, delimiter: str = "<answer") -> Optional[str]:
  """The completion up to and including the first ``delimiter``, or None when it is absent.

  VeriFree cuts the sampled text after ``<answer`` and teacher-forces the reference from there.
  """
  i = completion.find(delimiter)
  return None if i < 0 else completion[:i + len(delimiter)]


def verifree_answer_suffix(reference: str) -> str:
  """The text VeriFree splices after ``<answer``: ``"> \\boxed{" + reference + "} </answer>"``."""
  return "> \\boxed{" + reference + "} </answer>"


def _prep(ans_logp, ans_mask, valid):
  lp = jnp.asarray(ans_logp, jnp.float32)
  m = jnp.asarray(ans_mask, jnp.float32)
  if lp.shape != m.shape:
    raise ValueError(f"ans_logp {lp.shape} and ans_mask {m.shape} differ")
  v = jnp.ones(lp.shape[:-1], bool) if valid is None else jnp.asarray(valid, bool)
  if v.shape != lp.shape[:-1]:
    raise ValueError(f"valid {v.shape} must be ans_logp's leading shape {lp.shape[:-1]}")
  # An empty answer cannot be scored.
  v = v & (m.sum(-1) > 0)
  return jnp.where(m > 0, lp, 0.0), m, v


@jax.jit
def answer_logprob_stats(ans_logp: Array, ans_mask: Array,
                         valid: Optional[Array] = None) -> Dict[str, Array]:
  """Sufficient statistics of the reference answer's token log-probs.

  Args:
    ans_logp: ``[..., L]`` per-token ``log p_i`` of the reference answer.
    ans_mask: ``[..., L]`` 1 on answer tokens.
    valid: ``[...]`` bool; False (missing delimiter, truncation, empty answer) gives
      ``sum_logp = mean_logp = -inf`` and ``prob = mean_prob = 0``.

  Returns:
    ``{"sum_logp", "mean_logp", "prob" = exp(sum_logp), "mean_prob" = mean_i exp(log p_i)}``.
    ``exp`` is applied only where valid, so gradients never see ``exp(-inf)`` or ``inf - inf``.
  """
  lp, m, v = _prep(ans_logp, ans_mask, valid)
  n = jnp.maximum(m.sum(-1), 1.0)
  s = lp.sum(-1)
  mean_prob = (jnp.exp(lp) * m).sum(-1) / n
  neg_inf = jnp.float32(-jnp.inf)
  return {
      "sum_logp": jnp.where(v, s, neg_inf),
      "mean_logp": jnp.where(v, s / n, neg_inf),
      "prob": jnp.where(v, jnp.exp(jnp.where(v, s, 0.0)), 0.0),
      "mean_prob": jnp.where(v, mean_prob, 0.0),
  }


@jax.jit
def verifree_reward(ans_logp: Array, ans_mask: Array, valid: Optional[Array] = None) -> Array:
  """VeriFree reward ``pi(a* | x, z) = exp(sum_i log p_i)``; 0 where invalid."""
  return answer_logprob_stats(ans_logp, ans_mask, valid)["prob"]


@functools.partial(jax.jit, static_argnames=("invalid_reward",))
def logprob_reward(ans_logp: Array,
                   ans_mask: Array,
                   valid: Optional[Array] = None,
                   *,
                   invalid_reward: Optional[float] = None) -> Array:
  """Log-probability reward ``R = sum_i log p_i`` (arXiv 2602.03979), ``[P, G, L] -> [P, G]``.

  ``-inf`` would poison any group statistic, so invalid samples get ``invalid_reward``; by
  default the lowest valid reward of their group (an invalid sample never beats a valid one),
  or 0 when the whole group is invalid.
  """
  lp, _, v = _prep(ans_logp, ans_mask, valid)
  if lp.ndim != 3:
    raise ValueError(f"ans_logp must be [P, G, L], got {lp.shape}")
  s = lp.sum(-1)
  if invalid_reward is not None:
    return jnp.where(v, s, jnp.float32(invalid_reward))
  group_min = jnp.min(jnp.where(v, s, jnp.inf), axis=-1, keepdims=True)
  fill = jnp.where(jnp.isfinite(group_min), group_min, 0.0)
  return jnp.where(v, s, fill)


@jax.jit
def rlpr_reward(mean_prob: Array,
                base_mean_prob: Optional[Array] = None,
                fmt: Optional[Array] = None,
                *,
                alpha: float = 0.1) -> Array:
  """RLPR reward ``R = (1 - alpha) * clip(r - r', 0, 1) + alpha * fmt``.

  Args:
    mean_prob: ``r``, mean token probability of the reference after the reasoning
      (``answer_logprob_stats(...)["mean_prob"]``).
    base_mean_prob: ``r'``, the same score without reasoning (precomputed once per prompt with
      the base model; broadcastable); None skips the debiasing.
    fmt: format reward in ``[0, 1]`` (broadcastable); None means no format term (and ``alpha``
      is then ignored).
    alpha: weight of the format term (0.1 in the reimplementation).
  """
  r = jnp.asarray(mean_prob, jnp.float32)
  if base_mean_prob is not None:
    r = r - jnp.asarray(base_mean_prob, jnp.float32)
  r = jnp.clip(r, 0.0, 1.0)
  if fmt is None:
    return r
  return (1.0 - alpha) * r + alpha * jnp.asarray(fmt, jnp.float32)


@functools.partial(jax.jit, static_argnames=("ddof",))
def std_filter_mask(rewards: Array, beta, *, ddof: int = 0) -> Tuple[Array, Array]:
  """RLPR std filter: keep prompts whose group reward std is at least ``beta``.

  ``[P, G] -> (keep [P] bool, mean_std scalar)``; feed ``mean_std`` to
  :func:`update_std_threshold` for the next step's ``beta``.
  """
  r = jnp.asarray(rewards, jnp.float32)
  if r.ndim != 2:
    raise ValueError(f"rewards must be [P, G], got {r.shape}")
  std = jnp.std(r, axis=-1, ddof=ddof)
  return std >= beta, std.mean()


@functools.partial(jax.jit, static_argnames=("momentum",))
def update_std_threshold(beta, mean_std, *, momentum: float = 0.99) -> Array:
  """EMA of the filter threshold: ``beta <- m * beta + (1 - m) * mean_std`` (``beta_0 = 0.5``)."""
  return momentum * jnp.asarray(beta, jnp.float32) + (1.0 - momentum) * jnp.asarray(
      mean_std, jnp.float32)


@jax.jit
def sar_reward(logp_cond: Array,
               logp_uncond: Array,
               mask: Array,
               *,
               eps: float = 1e-9,
               clip_min: float = -1.0) -> Array:
  """Self-Aligned Reward ``R_SA = max((ppl(a) - ppl(a|q)) / (ppl(a) + eps), clip_min)``.

  Args:
    logp_cond: ``[..., T]`` log-probs of the response given the question (the rollout context;
      the policy's ``old_logprobs``).
    logp_uncond: ``[..., T]`` log-probs of the same response given a chat template with an empty
      user message.
    mask: ``[..., T]`` response mask; ``|a|`` is its sum.
    eps, clip_min: as in the reference code (``1e-9``, ``-1``).

  ``ppl = exp(-(1/|a|) sum_t log p_t)``. ``R_SA < 1`` always; it is positive when the question
  makes the answer more likely. Add it as ``R = R_verifiable + alpha * R_SA`` (``alpha = 0.2``).
  Empty responses get 0.
  """
  c = jnp.asarray(logp_cond, jnp.float32)
  u = jnp.asarray(logp_uncond, jnp.float32)
  m = jnp.asarray(mask, jnp.float32)
  if not c.shape == u.shape == m.shape:
    raise ValueError(f"shapes differ: {c.shape}, {u.shape}, {m.shape}")
  n = m.sum(-1)
  safe_n = jnp.maximum(n, 1.0)
  ppl_cond = jnp.exp(-(jnp.where(m > 0, c, 0.0)).sum(-1) / safe_n)
  ppl_uncond = jnp.exp(-(jnp.where(m > 0, u, 0.0)).sum(-1) / safe_n)
  r = jnp.maximum((ppl_uncond - ppl_cond) / (ppl_uncond + eps), clip_min)
  return jnp.where(n > 0, r, 0.0)
