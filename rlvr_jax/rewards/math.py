"""Rule-based math verifier: extract a completion's final answer and compare it with the gold.

``verify(completion, gold)`` is the one-call entry; ``verify_batch`` is the trainer's parallel
form. Both run the work in worker processes (:class:`rlvr_jax.rewards.workers.WorkerPool`) with a
hard timeout, so a pathological answer (``10^{10^{10}}``, a sympy simplification that never ends)
costs at most ``timeout_s`` and scores False; they never raise for a bad completion.

The pieces are public and pure (no timeout of their own: call them in a worker, or on trusted
input):

* :func:`extract_answer`: the final-answer text of a completion (last ``\\boxed{}``/``\\fbox{}``,
  "the answer is", GSM8K ``####``, ``Answer:`` lines), or None.
* :func:`is_equivalent`: whether a predicted answer string means the same as the gold string
  (numbers, fractions, radicals, expressions, equations, intervals, sets, tuples, matrices,
  complex numbers, percentages, degrees, units, text, multiple-choice letters).

The design follows the failure analysis of rule-based verifiers in "Pitfalls of Rule- and
Model-based Verifiers" (arXiv 2505.22203): keep precision at 100 % on adversarial inputs (answer
lists, answers that contain the gold, macro tricks, huge outputs) while recovering the false
negatives of string-matching graders (equivalent forms, units, degrees vs radians). Every policy
decision is listed in ``docs/rewards.md``.
"""

from __future__ import annotations

import os
import re
import threading
from typing import Dict, List, Optional, Sequence, Tuple

from rlvr_jax.rewards import _math_answer
from rlvr_jax.rewards import _math_extract
from rlvr_jax.rewards import workers

# Answers longer than this (characters) are not parsed: no real final answer is this long, and
# parsing cost grows with length.
DEFAULT_MAX_ANSWER_CHARS = 1_000
DEFAULT_TIMEOUT_S = 5.0
# Address-space cap of the shared verifier workers (a worker with sympy loaded uses ~60 MB).
DEFAULT_WORKER_MEMORY_MB = 2048

_MC_RE = re.compile(r"^\(?([A-J])\)?$")
_MC_PRED_RE = re.compile(
    r"^(?:(?i:option|choice|answer)\s*:?\s*)?\(?([A-J])\)?(?:$|[.:)]\s*(.*)$|\s+(.*)$)",
    re.DOTALL)


def extract_answer(completion: str, *,
                   max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS) -> Optional[str]:
  """The final answer of a completion, or None when it has no well-formed final answer.

  Policy, in order (details and reasons in ``docs/rewards.md``):

  1. A completion that defines TeX macros (``\\def``, ``\\newcommand``, ``\\let``, ...) has no
     answer.
  2. After a ``</think>``, only the text after the last one is read.
  3. The last ``\\boxed{...}``/``\\fbox{...}`` (brace-matched; ``\\{``/``\\}`` are literal) is the
     answer. If it is empty or unbalanced there is no answer. Boxes that directly precede it,
     separated only by commas, "and"/"or" or math delimiters, join it as one list answer.
  4. Otherwise the last (by position) of: "the/final answer is X" (to the end of the sentence),
     ``#### X`` (to the end of the line), an ``Answer: X`` line.
  5. Otherwise None. Answers longer than ``max_answer_chars`` are refused (None).

  Args:
    completion: the model's text.
    max_answer_chars: longest answer accepted.

  Returns:
    The raw answer text (not normalised), or None.
  """
  if not isinstance(completion, str):
    raise TypeError(f"completion must be a str, got {type(completion).__name__}")
  return _math_extract.extract(completion, max_answer_chars)


def _gold_answer(gold: str, max_answer_chars: int) -> Optional[str]:
  """A gold may be a bare answer or a solution with a box (MATH style); read the box if any."""
  if re.search(r"\\(?:boxed|fbox)(?![a-zA-Z])", gold):
    return _math_extract.extract(gold, max_answer_chars)
  return gold.strip() or None


def _mc_letter(text: str) -> Optional[str]:
  key = _math_answer.normalize(text)
  key = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", key).strip()
  m = _MC_RE.match(key)
  return m.group(1) if m else None


def _mc_pred_letter(text: str) -> Optional[str]:
  """The single option letter a predicted answer names, or None (also when it names several)."""
  key = _math_answer.normalize(text)
  key = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", key).strip()
  key = key.strip("*_ ")
  m = _MC_PRED_RE.match(key)
  if not m:
    return None
  rest = m.group(2) or m.group(3) or ""
  # "A or B", "A, C": the rest names another option letter.
  if re.search(r"(?:^|[\s,(])\(?[A-J]\)?(?:$|[\s,.)])", rest) or re.search(
      r"\b(?:or|and)\b", rest, re.IGNORECASE):
    return None
  return m.group(1).upper()


def is_equivalent(pred: str, gold: str, *, rel_tol: Optional[float] = None,
                  max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS) -> bool:
  """Whether the predicted answer string means the same as the gold answer string.

  Pure and deterministic but with no time bound of its own: untrusted input belongs in
  :func:`verify` / :func:`verify_batch`, which run this in a worker with a hard timeout.

  The comparison is not symmetric: ``pred`` is the model's answer, ``gold`` the reference. The
  rules (``docs/rewards.md`` has the full list):

  * multiple choice (gold ``B``, ``(B)``, ``\\text{(B)}``): the prediction must name exactly that
    letter (``B``, ``(B)``, ``B) 42``); naming two letters fails.
  * numbers exactly, never through floating point (``1,000`` = ``1000``, ``0.5`` = ``\\frac12``,
    ``2\\frac12`` = ``2 1/2`` = ``5/2``; ``12345678901234568`` is not ``12345678901234567``).
    A decimal never matches an exact gold it only approximates (``0.3333`` is not ``1/3``,
    ``3.14`` is not ``\\pi``); a decimal gold states its precision, and an answer at least that
    precise that rounds to it matches (``\\pi`` and ``3.1416`` match ``3.14``).
  * percent: a sign on one side may be dropped or read as /100 (``25\\%`` = ``25`` = ``0.25``);
    with signs on both sides the numbers must agree, so ``0.25\\%`` is not ``25\\%``. Degrees
    likewise (``45^\\circ`` = ``45`` = ``\\pi/4``).
  * expressions: exact for constants, identity at random rational points for expressions with
    variables (``\\sin^2 x + \\cos^2 x`` = ``1``, ``\\sqrt{x^2}`` is not ``x``).
  * ``x = 3``, ``3 = x``, ``f(x) = 3``, ``2+1 = 3`` match ``3`` (one side names the quantity or
    the left side is a constant); gold ``x = 3`` accepts ``3`` but not ``2x = 6``; other
    equations match if one is a non-zero multiple of the other.
  * intervals, unions, one-variable inequalities (also joined by "or"/"and"), set-builder sets
    and ``\\mathbb{R}`` compare as sets of reals; ``(a, b)`` is both an ordered pair and an open
    interval.
  * ``\\{...\\}`` sets and bare comma lists are unordered, tuples ordered; a single-element list
    equals its element; a list never equals a single value (no credit for hedging).
  * text answers compare case-insensitively, ignoring ``\\text{}`` markup; numbers and infinity
    in words (``twelve``, ``negative infinity``) are numbers; a trailing unit or counted noun
    (``5 \\text{ cm}``, ``12 apples``) is dropped.
  * matrices in any bracket environment, also times a scalar (``2\\begin{pmatrix}..``).

  Args:
    pred: the predicted answer (e.g. from :func:`extract_answer`).
    gold: the reference answer.
    rel_tol: None (default) for the precision policy above; a float opts in to a looser grader
      that also accepts a decimal within this relative tolerance of a value without a finite
      decimal expansion (``0.6667`` for ``2/3`` at 1e-4).
    max_answer_chars: longer answers are refused.

  Returns:
    True when equivalent; False otherwise, including unparsable or oversized input.
  """
  if pred is None or gold is None:
    return False
  if len(pred) > max_answer_chars or len(gold) > max_answer_chars:
    return False
  gold_letter = _mc_letter(gold)
  if gold_letter is not None:
    return _mc_pred_letter(pred) == gold_letter
  p_norm, g_norm = _math_answer.normalize(pred), _math_answer.normalize(gold)
  if not p_norm or not g_norm:
    return False
  if p_norm == g_norm:
    return True
  opts = _math_answer.Options(rel_tol=rel_tol)
  try:
    return _math_answer.equal(_math_answer.parse(p_norm), _math_answer.parse(g_norm), opts)
  except Exception:  # pylint: disable=broad-except
    # sympy signals unsupported operations with many exception types (including its own
    # polynomial errors); an answer we cannot compare is not equal, and a reward must not raise.
    return False


def verify_in_process(completion: str, gold: str, *, rel_tol: Optional[float] = None,
                      max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS) -> bool:
  """``verify`` without the worker process and its timeout: for trusted input and for workers."""
  pred = extract_answer(completion, max_answer_chars=max_answer_chars)
  gold_answer = _gold_answer(gold, max_answer_chars)
  if pred is None or gold_answer is None:
    return False
  return is_equivalent(pred, gold_answer, rel_tol=rel_tol, max_answer_chars=max_answer_chars)


def _worker_verify(completion: str, gold: str, rel_tol: Optional[float],
                   max_answer_chars: int) -> bool:
  return verify_in_process(completion, gold, rel_tol=rel_tol, max_answer_chars=max_answer_chars)


# One lazily started pool per (num_workers, start method), shared by all threads. Pools are
# killed at interpreter exit by WorkerPool's finaliser.
_POOLS: Dict[Tuple[int, str], workers.WorkerPool] = {}
_POOLS_LOCK = threading.Lock()


def _shared_pool(num_workers: int, mp_context: str, timeout_s: float) -> workers.WorkerPool:
  key = (num_workers, mp_context)
  with _POOLS_LOCK:
    pool = _POOLS.get(key)
    if pool is None:
      pool = _POOLS[key] = workers.WorkerPool(num_workers, timeout_s, mp_context=mp_context,
                                              max_memory_mb=DEFAULT_WORKER_MEMORY_MB)
    return pool


def shutdown_pools() -> None:
  """Stops the worker processes that :func:`verify` / :func:`verify_batch` started."""
  with _POOLS_LOCK:
    for pool in _POOLS.values():
      pool.close()
    _POOLS.clear()


def verify_batch(completions: Sequence[str], golds: Sequence[str], *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, num_workers: Optional[int] = None,
                 rel_tol: Optional[float] = None, max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
                 pool: Optional[workers.WorkerPool] = None,
                 mp_context: str = "forkserver") -> List[bool]:
  """Verifies many completions in parallel worker processes, each under a hard timeout.

  Args:
    completions: model outputs.
    golds: reference answers, one per completion.
    timeout_s: per-item wall-clock limit; an item past it is killed and scores False.
    num_workers: worker processes (default: ``min(8, os.cpu_count())``). Ignored with ``pool``.
    rel_tol: opt-in relative tolerance for decimals (see :func:`is_equivalent`; default None).
    max_answer_chars: longer answers are refused.
    pool: a caller-owned :class:`WorkerPool` to use instead of the shared one.
    mp_context: start method of the shared pool.

  Returns:
    One bool per completion, in order. Timeouts, crashes and unparsable answers are False; a
    ``RuntimeWarning`` says so when every item failed in the workers (e.g. workers that cannot
    start because the calling script was read from stdin).
  """
  if len(completions) != len(golds):
    raise ValueError(f"{len(completions)} completions but {len(golds)} golds")
  if not timeout_s > 0:
    raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
  if pool is None:
    n = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
    pool = _shared_pool(max(1, n), mp_context, timeout_s)
  items = [(c, g, rel_tol, max_answer_chars) for c, g in zip(completions, golds)]
  outcomes = pool.map(_worker_verify, items, timeout_s=timeout_s)
  # _worker_verify turns any verifier exception into False, so an error here is the workers'.
  workers.warn_if_all_failed(outcomes, "math verification")
  return [o.error is None and not o.timed_out and o.value is True for o in outcomes]


def verify(completion: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
           rel_tol: Optional[float] = None,
           max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS) -> bool:
  """Whether ``completion``'s final answer equals ``gold``; False on any failure or timeout.

  Extraction follows :func:`extract_answer`, comparison :func:`is_equivalent`. The work runs in a
  shared worker process that is killed and replaced if it exceeds ``timeout_s``, so this returns
  within about ``timeout_s`` (plus a one-off worker start) from any thread.

  Args:
    completion: the model's output.
    gold: the reference answer (a bare answer, or a solution text whose last box is the answer).
    timeout_s: hard wall-clock limit for extraction and comparison.
    rel_tol: opt-in relative tolerance for decimals (see :func:`is_equivalent`; default None).
    max_answer_chars: longer answers are refused.
  """
  return verify_batch([completion], [gold], timeout_s=timeout_s, num_workers=1, rel_tol=rel_tol,
                      max_answer_chars=max_answer_chars)[0]
