"""Majority-vote pseudo-labels for label-free RLVR: TTRL and Co-Reward.

Answers are first canonicalised on the host into integer codes per prompt
(:func:`canonicalize_answers`; pass an equivalence function such as the math verifier so that
``0.5`` and ``\\frac{1}{2}`` vote together, since string equality under-counts agreement). Code
``-1`` means "no answer" and never votes. Then:

* TTRL (arXiv 2504.16084; PRIME-RL/TTRL @3e2cc93 ``ttt_metrics.py``): ``y_hat = argmax_a
  count(a)`` over ``M`` votes (ties: the answer seen first, like ``Counter.most_common``), reward
  ``r_i = 1[y_i == y_hat]`` for the trained samples, ``majority_ratio = count(y_hat) / M``.
* Co-rewarding-I (arXiv 2508.00410; tmlr-group/Co-rewarding @6c60ea4): each question ``q`` has a
  rephrased twin ``q'``; the label of ``q`` is the majority of the answers to ``q'`` and vice
  versa, and an empty label rewards nothing.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def canonicalize_answers(answers: Sequence[Sequence[Optional[str]]],
                         equal_fn: Optional[Callable[[str, str], bool]] = None) -> np.ndarray:
  """Integer codes ``[P, M]`` for extracted answers; equal answers of a prompt share a code.

  Args:
    answers: ``answers[p][m]``, the extracted answer string or None (no answer; code -1).
      Every prompt must have the same number ``M`` of answers.
    equal_fn: equivalence test ``equal_fn(a, b)``; default: equality after ``strip()``. Each new
      answer is compared with one representative of every class seen so far for its prompt
      (so a non-transitive ``equal_fn`` assigns by first match).

  Returns:
    ``int32 [P, M]`` codes, ``0..C-1`` per prompt in order of first appearance, ``-1`` for None.
  """
  num_m = {len(a) for a in answers}
  if len(num_m) > 1:
    raise ValueError(f"every prompt needs the same number of answers; got {sorted(num_m)}")
  out = np.full((len(answers), num_m.pop() if num_m else 0), -1, np.int32)
  for p, row in enumerate(answers):
    reps: List[str] = []
    exact: Dict[str, int] = {}
    for m, a in enumerate(row):
      if a is None:
        continue
      key = a.strip()
      if key in exact:
        out[p, m] = exact[key]
        continue
      code = -1
      if equal_fn is not None:
        for c, rep in enumerate(reps):
          if equal_fn(key, rep):
            code = c
            break
      if code < 0:
        reps.append(key)
        code = len(reps) - 1
      exact[key] = code
      out[p, m] = code
  return out


@jax.jit
def majority_vote(answer_ids: Array) -> Tuple[Array, Array]:
  """Majority code per prompt. ``[P, M] -> (majority [P] int32, count [P] int32)``.

  Ties go to the code that appears first; a prompt with no valid answer gets ``(-1, 0)``.
  """
  ids = jnp.asarray(answer_ids, jnp.int32)
  if ids.ndim != 2:
    raise ValueError(f"answer_ids must be [P, M], got {ids.shape}")
  valid = ids >= 0
  same = (ids[:, :, None] == ids[:, None, :]) & valid[:, :, None] & valid[:, None, :]
  counts = same.sum(-1)  # [P, M]: votes for the answer at position m (0 where invalid)
  first = jnp.argmax(counts, axis=-1)  # argmax returns the first maximum: first-seen tie-break
  best = jnp.take_along_axis(counts, first[:, None], axis=-1)[:, 0]
  maj = jnp.take_along_axis(ids, first[:, None], axis=-1)[:, 0]
  return jnp.where(best > 0, maj, -1), best


@jax.jit
def majority_vote_reward(answer_ids: Array, train_idx: Optional[Array] = None
                         ) -> Tuple[Array, Array]:
  """TTRL rewards against the majority answer.

  Args:
    answer_ids: ``[P, M]`` codes of all ``M`` votes (``-1`` = no answer).
    train_idx: ``[P, G]`` indices into ``M`` of the samples that are trained on; default all.

  Returns:
    ``(rewards [P, G] float32, majority_ratio [P] float32)`` with ``majority_ratio =
    count(y_hat) / M``.
  """
  ids = jnp.asarray(answer_ids, jnp.int32)
  maj, count = majority_vote(ids)
  trained = ids if train_idx is None else jnp.take_along_axis(ids, jnp.asarray(train_idx), -1)
  rewards = ((trained == maj[:, None]) & (maj[:, None] >= 0)).astype(jnp.float32)
  return rewards, count.astype(jnp.float32) / ids.shape[1]


@jax.jit
def co_reward(ids_q: Array, ids_q_rephrased: Array) -> Tuple[Array, Array]:
  """Co-rewarding-I cross-referenced rewards.

  ``ids_q`` ``[P, G]`` are answer codes for the original questions and ``ids_q_rephrased``
  ``[P, G]`` for their rephrasings, **in one shared code space per prompt** (canonicalise the
  ``2G`` answers of a prompt together). Returns ``(r_q, r_q_rephrased)``, each ``[P, G]``:
  ``r_q = 1[a == majority(answers to q')]`` and symmetrically.
  """
  a = jnp.asarray(ids_q, jnp.int32)
  b = jnp.asarray(ids_q_rephrased, jnp.int32)
  if a.shape != b.shape or a.ndim != 2:
    raise ValueError(f"need two [P, G] arrays of equal shape; got {a.shape}, {b.shape}")
  label_for_a, _ = majority_vote(b)
  label_for_b, _ = majority_vote(a)
  r_a = ((a == label_for_a[:, None]) & (label_for_a[:, None] >= 0)).astype(jnp.float32)
  r_b = ((b == label_for_b[:, None]) & (label_for_b[:, None] >= 0)).astype(jnp.float32)
  return r_a, r_b


@jax.jit
def label_metrics(majority: Array, gold_ids: Array, pseudo_rewards: Array,
                  true_rewards: Array) -> Dict[str, Array]:
  """TTRL diagnostics when gold labels are known (evaluation only).

  ``label_accuracy = mean_p 1[y_hat == gold]`` (``gold_ids`` ``[P]`` in the same code space,
  ``-1`` when the gold matches no sampled answer); ``reward_accuracy`` = fraction of samples
  whose pseudo reward equals the true reward.
  """
  maj = jnp.asarray(majority)
  gold = jnp.asarray(gold_ids)
  label_acc = ((maj == gold) & (maj >= 0)).astype(jnp.float32).mean()
  reward_acc = (jnp.asarray(pseudo_rewards) == jnp.asarray(true_rewards)).astype(
      jnp.float32).mean()
  return {"label_accuracy": label_acc, "reward_accuracy": reward_acc}
