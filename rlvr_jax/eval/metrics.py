"""Evaluation metrics: unbiased pass@k, mean@k, maj@k, CoT-pass@k, and breakdowns by metadata.

Conventions: a problem has ``n`` sampled answers of which ``c`` are correct; ``correct`` arrays
are ``[P, n]`` bool; answers for majority voting are integer codes ``[P, n]`` (``-1`` = no
answer; canonicalise strings with :func:`rlvr_jax.rewards.pseudo_labels.canonicalize_answers`).
Every function returns per-problem values; average them (or use :func:`summarize`) for a score.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def pass_at_k(n, c, k: int) -> np.ndarray:
  """Unbiased pass@k (Chen et al. 2021, arXiv 2107.03374), per problem, in float64.

      pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i)

  and exactly 1 when ``n - c < k``. The product form never forms a binomial coefficient, so it is
  stable for large ``n``.

  Args:
    n: samples per problem (scalar or ``[P]``), ``n >= k``.
    c: correct samples per problem, ``0 <= c <= n``.
    k: the k of pass@k, ``>= 1``.

  Returns:
    ``[P]`` float64 (0-d for scalar inputs).
  """
  n_arr, c_arr = np.broadcast_arrays(np.asarray(n, np.int64), np.asarray(c, np.int64))
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  if np.any(n_arr < k):
    raise ValueError(f"pass@{k} needs n >= k for every problem; got n = {n_arr.min()}")
  if np.any((c_arr < 0) | (c_arr > n_arr)):
    raise ValueError("need 0 <= c <= n")
  out = np.empty(n_arr.shape, np.float64)
  for idx in np.ndindex(n_arr.shape):
    ni, ci = int(n_arr[idx]), int(c_arr[idx])
    if ni - ci < k:
      out[idx] = 1.0
    else:
      out[idx] = 1.0 - float(np.prod(1.0 - k / np.arange(ni - ci + 1, ni + 1, dtype=np.float64)))
  return out


@functools.partial(jax.jit, static_argnames=("k",))
def pass_at_k_jax(n: Array, c: Array, k: int) -> Array:
  """pass@k in JAX (jit-able), via log-gamma:

      log q = lgamma(n-c+1) - lgamma(n-c-k+1) - lgamma(n+1) + lgamma(n-k+1)
      pass@k = 1 - exp(log q),  or 1 where n - c < k.

  Arguments of ``lgamma`` are clamped to ``>= 1`` before the ``where`` so that the unused branch
  stays finite (and its gradient, if any, NaN-free). float32 precision: prefer :func:`pass_at_k`
  for reporting.
  """
  n = jnp.asarray(n, jnp.float32)
  c = jnp.asarray(c, jnp.float32)
  nc = n - c
  safe = lambda x: jnp.maximum(x, 1.0)
  log_q = (jax.lax.lgamma(safe(nc + 1)) - jax.lax.lgamma(safe(nc - k + 1))
           - jax.lax.lgamma(safe(n + 1)) + jax.lax.lgamma(safe(n - k + 1)))
  return jnp.where(nc < k, 1.0, 1.0 - jnp.exp(log_q))


def mean_at_k(correct) -> np.ndarray:
  """mean@k (avg@k): the fraction of a problem's ``k = n`` samples that are correct, ``[P]``.

  Its mean over problems is the unbiased estimate of pass@1.
  """
  corr = np.asarray(correct, np.float64)
  if corr.ndim != 2:
    raise ValueError(f"correct must be [P, n], got {corr.shape}")
  return corr.mean(axis=1)


def _majority_correct(ids: np.ndarray, corr: np.ndarray) -> float:
  """Correctness of the majority answer among these samples (first-seen wins ties)."""
  counts: Dict[int, int] = {}
  first: Dict[int, int] = {}
  for j, a in enumerate(ids):
    if a < 0:
      continue
    counts[a] = counts.get(a, 0) + 1
    first.setdefault(a, j)
  if not counts:
    return 0.0
  best = max(counts, key=lambda a: (counts[a], -first[a]))
  return float(corr[first[best]])


def maj_at_k(answer_ids, correct, k: int, *, num_samples: int = 1000,
             seed: int = 42) -> np.ndarray:
  """maj@k per problem: is the majority answer of ``k`` samples correct, in expectation.

  The expectation is over uniformly random ``k``-subsets of the ``n`` samples: computed exactly
  by enumeration when ``C(n, k) <= num_samples`` (in particular ``k = n``), otherwise estimated
  from ``num_samples`` random subsets drawn with ``np.random.default_rng(seed)``.
  Policy: answers ``-1`` do not vote; a subset with no vote scores 0; ties go to the answer
  that appears first in sample order; an answer's correctness is that of its first sample.

  Args:
    answer_ids: ``[P, n]`` int answer codes.
    correct: ``[P, n]`` bool.
    k: votes per subset, ``1 <= k <= n``.
    num_samples: enumeration threshold and Monte-Carlo sample count.
    seed: Monte-Carlo seed.

  Returns:
    ``[P]`` float64.
  """
  ids = np.asarray(answer_ids, np.int64)
  corr = np.asarray(correct, bool)
  if ids.shape != corr.shape or ids.ndim != 2:
    raise ValueError(f"answer_ids and correct must both be [P, n]; got {ids.shape}, "
                     f"{corr.shape}")
  n = ids.shape[1]
  if not 1 <= k <= n:
    raise ValueError(f"need 1 <= k <= n = {n}, got k = {k}")
  rng = np.random.default_rng(seed)
  out = np.empty(ids.shape[0], np.float64)
  exact = math.comb(n, k) <= num_samples
  for p in range(ids.shape[0]):
    if exact:
      subsets = itertools.combinations(range(n), k)
    else:
      subsets = (np.sort(rng.permutation(n)[:k]) for _ in range(num_samples))
    vals = [_majority_correct(ids[p, list(s)], corr[p, list(s)]) for s in subsets]
    out[p] = float(np.mean(vals))
  return out


def cot_pass_at_k(n, d, k: int) -> np.ndarray:
  """CoT-pass@k (arXiv 2506.14245): pass@k where a sample counts only if both its answer and
  its chain of thought are judged correct; ``d`` = number of such samples (from
  :func:`cot_correct_counts`). ``1 - C(n - d, k) / C(n, k)``."""
  return pass_at_k(n, d, k)


_AGGREGATES = {
    "any": lambda votes: any(votes),
    "all": lambda votes: all(votes),
    "majority": lambda votes: sum(votes) * 2 > len(votes),
}


def cot_correct_counts(prompts: Sequence[Any],
                       completions: Sequence[Sequence[str]],
                       answer_correct,
                       judge: Callable[[Any, str], bool],
                       *,
                       num_judgements: int = 1,
                       aggregate: str = "all") -> np.ndarray:
  """``D`` per problem: samples with a correct answer *and* a chain of thought judged correct.

  Args:
    prompts: ``P`` prompts.
    completions: ``completions[p]`` the ``n`` completions of problem ``p``.
    answer_correct: ``[P, n]`` bool from the answer verifier.
    judge: pluggable ``judge(prompt, completion) -> bool`` (an LLM verifier, a rule); it is only
      called for samples whose answer is correct.
    num_judgements: calls per chain of thought (a stochastic judge is asked several times).
    aggregate: ``"any"``, ``"all"`` or ``"majority"`` (strict) over the judgements. The paper's
      own aggregation rule was not checked [UNVERIFIED]; ``"all"`` is the strictest.

  Returns:
    ``[P]`` int64 counts.
  """
  if aggregate not in _AGGREGATES:
    raise ValueError(f"aggregate must be one of {sorted(_AGGREGATES)}, got {aggregate!r}")
  if num_judgements < 1:
    raise ValueError("num_judgements must be >= 1")
  corr = np.asarray(answer_correct, bool)
  agg = _AGGREGATES[aggregate]
  out = np.zeros(len(prompts), np.int64)
  for p, (prompt, comps) in enumerate(zip(prompts, completions)):
    for j, comp in enumerate(comps):
      if corr[p, j] and agg([bool(judge(prompt, comp)) for _ in range(num_judgements)]):
        out[p] += 1
  return out


def model_collapse_step(curve: Sequence[float], threshold: float = 0.01) -> Optional[int]:
  """First step whose value (e.g. reward accuracy of an intrinsic reward) is below ``threshold``.

  The Model Collapse Step of arXiv 2603.08660 as summarised in ``specs/rewards.md`` 9.3; the
  paper's exact metric and threshold were not checked [UNVERIFIED]. None if it never collapses.
  """
  for t, v in enumerate(curve):
    if v < threshold:
      return t
  return None


def group_by(records: Sequence[Mapping[str, Any]], keys: Sequence[str]
             ) -> Dict[Tuple[Any, ...], List[int]]:
  """Indices of ``records`` grouped by the values of ``keys`` (missing keys group as None).

  A key is looked up in the record, then in its ``"metadata"`` mapping if it has one.
  """
  groups: Dict[Tuple[Any, ...], List[int]] = {}
  for i, rec in enumerate(records):
    meta = rec.get("metadata") or {}
    key = tuple(rec[k] if k in rec else meta.get(k) for k in keys)
    groups.setdefault(key, []).append(i)
  return groups


def summarize(records: Sequence[Mapping[str, Any]],
              *,
              ks: Sequence[int] = (1,),
              by: Sequence[Sequence[str]] = (),
              maj_num_samples: int = 1000,
              seed: int = 42) -> Dict[str, Dict[str, float]]:
  """Standard metrics overall and per group.

  Args:
    records: one per problem: ``{"correct": [n] bool, "answer_ids": [n] int (optional, enables
      maj@k), "cot_correct": [n] bool (optional, enables CoT-pass@k), <metadata keys>...}`` or
      the metadata under ``"metadata"``. Problems may have different ``n``; pass@k and maj@k
      skip problems with ``n < k``.
    ks: the k values.
    by: groupings, e.g. ``[("task",), ("task", "difficulty")]``.
    maj_num_samples, seed: passed to :func:`maj_at_k`.

  Returns:
    ``{"all": {...}, "task=gsm8k": {...}, "task=gsm8k/difficulty=3": {...}}`` with keys
    ``num_problems``, ``mean@n``, ``pass@k``, ``maj@k``, ``cot_pass@k`` (the last two when the
    records have the data).
  """

  def metrics(idx: Sequence[int]) -> Dict[str, float]:
    recs = [records[i] for i in idx]
    out: Dict[str, float] = {"num_problems": float(len(recs))}
    out["mean@n"] = float(np.mean([np.mean(np.asarray(r["correct"], float)) for r in recs]))
    for k in ks:
      usable = [r for r in recs if len(r["correct"]) >= k]
      if not usable:
        continue
      n = np.array([len(r["correct"]) for r in usable])
      c = np.array([int(np.sum(r["correct"])) for r in usable])
      out[f"pass@{k}"] = float(pass_at_k(n, c, k).mean())
      if all("cot_correct" in r for r in usable):
        d = np.array([int(np.sum(np.asarray(r["cot_correct"], bool) & np.asarray(
            r["correct"], bool))) for r in usable])
        out[f"cot_pass@{k}"] = float(cot_pass_at_k(n, d, k).mean())
      if all("answer_ids" in r for r in usable):
        vals = [maj_at_k(np.asarray([r["answer_ids"]]), np.asarray([r["correct"]]), k,
                         num_samples=maj_num_samples, seed=seed)[0] for r in usable]
        out[f"maj@{k}"] = float(np.mean(vals))
    return out

  result = {"all": metrics(range(len(records)))}
  for keys in by:
    for values, idx in sorted(group_by(records, keys).items(), key=lambda kv: repr(kv[0])):
      name = "/".join(f"{k}={v}" for k, v in zip(keys, values))
      result[name] = metrics(idx)
  return result
