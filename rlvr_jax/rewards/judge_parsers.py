"""Parsers that turn an LLM judge's output into a score (pure Python/numpy, no model).

A judge (:mod:`rlvr_jax.rewards.judge`) either reads the probabilities of its verdict tokens from
one teacher-forced forward pass, or writes a short greedy answer that a parser reads. Every parser
returns ``None`` when the output cannot be read; the judge then scores the item 0 and counts a
parse failure (``judge/parse_failures``), so a confused judge costs reward, never the run.

Token-probability verdicts (no sampling, one forward pass):

* :func:`yes_probability`: ``P(yes) / (P(yes) + P(no))`` at the verdict position, where
  ``P(yes)`` sums the probabilities of every "yes" token variant (``Yes``, ``yes``, `` Yes``, ...).
  Unreadable when ``P(yes) + P(no) < min_mass`` (the judge wants to say something else).
* :func:`soft_verdict`: the soft reward of "Crossing the Reward Bridge: Expanding RL with
  Verifiable Rewards Across Diverse Domains" (Su et al., arXiv 2503.23829): with ``c`` the judge's
  greedy verdict token, ``r = P(yes)`` if ``c`` is a yes token, ``r = 1 - P(no)`` if it is a no
  token; any other greedy token is unreadable (the paper's judge answers "1" or "0").

Text verdicts (from greedy generation):

* :func:`parse_yes_no`: the last ``Verdict: YES|NO`` (also ``Answer:``/``Judgement:``/
  ``Decision:``, ``correct``/``incorrect``, ``true``/``false``), else a reply whose first word is
  yes/no.
* :func:`parse_number`: a score in ``[low, high]`` (``Score: 7``, ``7/10``), rescaled to
  ``[0, 1]``.
* :func:`parse_criteria`: exactly ``num`` per-criterion yes/no verdicts, as a JSON list or one per
  line (``1. yes``, ``- no``, ``2: YES``).
* :func:`parse_labels`: Search-Gen-V's per-nugget labels (``support`` / ``partial_support`` /
  ``not_support``), as a JSON list or one per line or comma-separated, exactly ``num`` of them.
* :func:`parse_pairwise`: OpenRS-style pairwise verdicts ``Winner: A|B|tie`` with an integer
  ``Score: n``, signed towards response A.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

YES_WORDS = ("Yes", "yes", "YES")
NO_WORDS = ("No", "no", "NO")

_POSITIVE = {"yes": 1.0, "y": 1.0, "correct": 1.0, "true": 1.0, "1": 1.0, "pass": 1.0,
             "no": 0.0, "n": 0.0, "incorrect": 0.0, "false": 0.0, "0": 0.0, "fail": 0.0}
_VERDICT = re.compile(
    r"\b(?:verdict|answer|judg(?:e)?ment|decision|final\s+verdict)\s*[:=]\s*[*_\"'`\[(]*\s*"
    r"(yes|no|correct|incorrect|true|false)\b", re.IGNORECASE)
_FIRST_WORD = re.compile(r"^[\s*_\"'`\[(#>-]*([A-Za-z]+)")
_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?")
_ITEM_LINE = re.compile(r"^\s*(?:[-*+]|\(?\d+[.):]|\[\d+\])?\s*(?:[^:\n]{0,60}:\s*)?[*_\"'`]*"
                        r"([A-Za-z_]+)[*_\"'`.]*\s*$")
_SCORED = re.compile(r"\b(?:score|rating|grade)\s*[:=]?\s*[*_\"'`]*\s*(-?\d+(?:\.\d+)?)"
                     r"(?:\s*/\s*(\d+(?:\.\d+)?))?", re.IGNORECASE)
_WINNER = re.compile(r"\b(?:winner|better|chosen|choice)\s*[:=]\s*[*_\"'`\[(]*\s*"
                     r"(A|B|tie|none|equal)\b", re.IGNORECASE)
_SCORE = re.compile(r"\bscore\s*[:=]\s*[*_\"'`]*\s*(-?\d+)", re.IGNORECASE)

SEARCH_GEN_V_LABELS: Mapping[str, float] = {"support": 1.0, "partial_support": 0.5,
                                            "not_support": 0.0}


def verdict_token_ids(tokenizer: Any, words: Sequence[str]) -> Tuple[int, ...]:
  """The first token id of each word, written alone and after a space (``"Yes"``, ``" Yes"``).

  The verdict position may continue the generation prompt directly or follow an answer prefix
  such as ``"Verdict:"``; both spellings are counted. A tokenizer that writes the space as a token
  of its own (a character tokenizer) has no spaced variant, and a word it cannot spell (its first
  token is the unknown token) is skipped.
  """
  space = tokenizer(" ", add_special_tokens=False)["input_ids"]
  unknown = getattr(tokenizer, "unk_token_id", None)
  ids = set()
  for word in words:
    for text in (word, " " + word):
      tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
      if text.startswith(" ") and space and tokens[:len(space)] == space:
        continue
      if tokens and tokens[0] != unknown:
        ids.add(int(tokens[0]))
  if not ids:
    raise ValueError(f"none of {list(words)} tokenises to anything")
  return tuple(sorted(ids))


def check_disjoint(yes_ids: Sequence[int], no_ids: Sequence[int]) -> None:
  """Raises ValueError when a token id counts both as yes and as no."""
  both = set(yes_ids) & set(no_ids)
  if both:
    raise ValueError(f"yes and no verdict tokens overlap: {sorted(both)}; choose words whose "
                     "first tokens differ")


def yes_probability(yes_logprobs: np.ndarray, no_logprobs: np.ndarray, *,
                    min_mass: float = 1e-3) -> Tuple[np.ndarray, np.ndarray]:
  """``(P(yes) / (P(yes) + P(no)), unreadable)`` per row.

  Args:
    yes_logprobs: ``[N, Ky]`` log-probabilities of the yes token variants at the verdict position.
    no_logprobs: ``[N, Kn]`` the same for the no variants.
    min_mass: rows with ``P(yes) + P(no) < min_mass`` are unreadable (score 0).

  Returns:
    ``(scores [N] float64 in [0, 1], unreadable [N] bool)``; unreadable rows score 0.
  """
  p_yes = np.exp(np.asarray(yes_logprobs, np.float64)).sum(-1)
  p_no = np.exp(np.asarray(no_logprobs, np.float64)).sum(-1)
  mass = p_yes + p_no
  bad = ~(mass >= min_mass) | ~np.isfinite(mass)
  scores = np.where(bad, 0.0, p_yes / np.where(bad, 1.0, mass))
  return scores, bad


def soft_verdict(yes_logprobs: np.ndarray, no_logprobs: np.ndarray, greedy_ids: np.ndarray,
                 yes_ids: Sequence[int], no_ids: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
  """Su et al.'s soft reward from one forward pass: ``(scores [N], unreadable [N])``.

  ``r = P(yes)`` when the greedy verdict token is a yes token, ``1 - P(no)`` when it is a no
  token; any other greedy token is unreadable (score 0). ``P(yes)``/``P(no)`` sum the variants.
  """
  check_disjoint(yes_ids, no_ids)
  p_yes = np.exp(np.asarray(yes_logprobs, np.float64)).sum(-1)
  p_no = np.exp(np.asarray(no_logprobs, np.float64)).sum(-1)
  greedy = np.asarray(greedy_ids)
  is_yes = np.isin(greedy, np.asarray(yes_ids))
  is_no = np.isin(greedy, np.asarray(no_ids))
  scores = np.where(is_yes, p_yes, np.where(is_no, 1.0 - p_no, 0.0))
  return np.clip(scores, 0.0, 1.0), ~(is_yes | is_no)


def parse_yes_no(text: str) -> Optional[float]:
  """1.0 / 0.0 from a judge's reply, None when it holds no verdict (see the module docstring)."""
  found = _VERDICT.findall(text or "")
  if found:
    return _POSITIVE[found[-1].lower()]
  m = _FIRST_WORD.match(text or "")
  if m and m.group(1).lower() in ("yes", "no", "correct", "incorrect"):
    return _POSITIVE[m.group(1).lower()]
  return None


def parse_number(text: str, low: float = 0.0, high: float = 10.0) -> Optional[float]:
  """A judge's score rescaled from ``[low, high]`` to ``[0, 1]``, or None.

  The score is the last in-range number written after ``score``/``rating``/``grade``
  (``"Score: 7"``, ``"rating = 7/10"``); without such a label, the last in-range number of the
  reply. ``"n/d"`` reads as ``n`` when ``d == high`` and is rescaled to ``[low, high]`` otherwise
  (``"3/5"`` with ``high=10`` reads 6). Numbers outside the range are skipped.
  """
  if high <= low:
    raise ValueError(f"need low < high, got {low}, {high}")
  text = text or ""
  value = None
  for num, den in _SCORED.findall(text) or _NUMBER.findall(text):
    x = float(num)
    if den:
      d = float(den)
      if d <= 0:
        continue
      x = x if d == high else low + (high - low) * x / d
    if low <= x <= high:
      value = x
  return None if value is None else (value - low) / (high - low)


def _as_list(text: str) -> Optional[list]:
  """A JSON list (or ``{"labels": [...]}``) found in ``text``, else None."""
  start, end = text.find("["), text.rfind("]")
  if start < 0 or end <= start:
    return None
  try:
    obj = json.loads(text[start:end + 1].replace("'", '"'))
  except ValueError:
    return None
  return obj if isinstance(obj, list) else None


def _words(text: str) -> list:
  """One word per non-empty line (list markers and ``label:`` prefixes removed)."""
  out = []
  for line in (text or "").splitlines():
    if not line.strip():
      continue
    m = _ITEM_LINE.match(line)
    out.append(m.group(1).lower() if m else None)
  return out


def parse_criteria(text: str, num: int) -> Optional[np.ndarray]:
  """``num`` per-criterion verdicts (1.0 yes / 0.0 no) in order, or None when there are not
  exactly ``num`` readable ones."""
  values = _as_list(text or "")
  if values is not None:
    words = [str(v).strip().lower() for v in values]
  else:
    words = [w for w in _words(text) if w is not None and w in _POSITIVE]
  if len(words) != num or any(w not in _POSITIVE for w in words):
    return None
  return np.array([_POSITIVE[w] for w in words], np.float64)


def parse_labels(text: str, num: int,
                 values: Mapping[str, float] = SEARCH_GEN_V_LABELS) -> Optional[np.ndarray]:
  """``num`` labels (JSON list, one per line, or comma-separated) mapped through ``values``;
  None unless exactly ``num`` labels are found and all are known."""
  text = text or ""
  if "</reasoning>" in text:  # Search-Gen-V writes its labels after its reasoning block
    text = text.rsplit("</reasoning>", 1)[1]
  items = _as_list(text)
  if items is not None:
    labels = [str(v).strip().lower() for v in items]
  else:
    labels = [w for w in _words(text) if w is not None and w in values]
    if not labels and "," in text:
      labels = [p.strip().strip("\"'`*").lower() for p in text.strip().split(",")]
  if len(labels) != num or any(label not in values for label in labels):
    return None
  return np.array([values[label] for label in labels], np.float64)


def parse_pairwise(text: str) -> Optional[float]:
  """A pairwise verdict signed towards response A: ``+|n|`` when A wins with ``Score: n``,
  ``-|n|`` when B wins, 0 for a tie; a winner without a score counts 1. None without a winner."""
  winners = _WINNER.findall(text or "")
  if not winners:
    return None
  winner = winners[-1].lower()
  if winner in ("tie", "none", "equal"):
    return 0.0
  scores = _SCORE.findall(text)
  size = abs(float(scores[-1])) if scores else 1.0
  return size if winner == "a" else -size
