"""Format rewards: required tags and exactly one final answer. Host-side string functions.

Each ``*_reward`` function takes one completion and returns a float; :func:`batch` maps one over
a list (the shape the reward-function interface of :mod:`rlvr_jax.rewards.functions` wants).

Policy decisions:

* Tags are matched literally (``<think>``, ``</think>``), case-sensitively, as open-r1 and TRL do.
* :func:`tag_format_reward` requires every tag pair exactly once, in the given order, not nested
  in or overlapping each other; with ``strict=True`` only whitespace may sit outside the pairs
  (open-r1's ``^<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$`` without its newline
  rules). A second ``<answer>`` block is a failure, never "the last one counts": several answer
  blocks are a way to hedge.
* :func:`single_answer_reward` counts ``\\boxed{...}``/``\\fbox{...}`` (and optionally answer tags);
  exactly one, with balanced braces, earns 1.
"""

from __future__ import annotations

import re
from typing import Callable, List, Sequence

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _spans(text: str, tag: str) -> List[tuple]:
  """``(start_of_open, end_of_close)`` of every ``<tag>...</tag>`` pair, or [] if unbalanced."""
  opens = [m.start() for m in re.finditer(re.escape(f"<{tag}>"), text)]
  closes = [m.end() for m in re.finditer(re.escape(f"</{tag}>"), text)]
  if len(opens) != len(closes):
    return []
  spans = list(zip(opens, closes))
  if any(a >= b for a, b in spans):
    return []
  return spans


def tag_format_reward(completion: str, tags: Sequence[str] = ("think", "answer"), *,
                      strict: bool = False) -> float:
  """1.0 when every tag pair occurs exactly once, in order, without overlap; else 0.0.

  With ``strict=True`` the completion must also consist only of these blocks and whitespace.
  """
  pieces = []
  for tag in tags:
    spans = _spans(completion, tag)
    if len(spans) != 1:
      return 0.0
    pieces.append(spans[0])
  for (_, end), (start, _) in zip(pieces, pieces[1:]):
    if start < end:
      return 0.0
  if strict:
    outside, pos = [], 0
    for start, end in pieces:
      outside.append(completion[pos:start])
      pos = end
    outside.append(completion[pos:])
    if any(s.strip() for s in outside):
      return 0.0
  return 1.0


def tag_count_reward(completion: str, tags: Sequence[str] = ("think", "answer")) -> float:
  """Soft format credit (open-r1 ``tag_count_reward``): ``1/(2n)`` per tag string seen once.

  With the default two tags each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>``
  occurring exactly once earns 0.25.
  """
  marks = [m for t in tags for m in (f"<{t}>", f"</{t}>")]
  return sum(completion.count(m) == 1 for m in marks) / len(marks)


def _balanced_box_count(text: str) -> int:
  """Number of ``\\boxed{...}`` with balanced braces; -1 if any is unterminated."""
  count = 0
  for m in _BOX.finditer(text):
    depth, i = 1, m.end()
    while i < len(text) and depth:
      depth += {"{": 1, "}": -1}.get(text[i], 0)
      i += 1
    if depth:
      return -1
    count += 1
  return count


def single_answer_reward(completion: str, *, answer_tag: str | None = None) -> float:
  """1.0 when the completion states exactly one final answer, else 0.0.

  Counts ``\\boxed{}``/``\\fbox{}`` with balanced braces (an unterminated one fails); with
  ``answer_tag`` (e.g. ``"answer"``) also requires exactly one ``<answer>...</answer>`` block and
  at most one box, inside it.
  """
  boxes = _balanced_box_count(completion)
  if answer_tag is None:
    return float(boxes == 1)
  spans = _spans(completion, answer_tag)
  if len(spans) != 1 or boxes < 0 or boxes > 1:
    return 0.0
  if boxes == 1:
    start, end = spans[0]
    if _balanced_box_count(completion[start:end]) != 1:
      return 0.0
  return 1.0


def batch(fn: Callable[..., float], completions: Sequence[str], **kwargs) -> List[float]:
  """``[fn(c, **kwargs) for c in completions]``."""
  return [fn(c, **kwargs) for c in completions]
