"""Final-answer extraction from a model completion (private helper of ``rewards.math``).

Policy (``docs/rewards.md`` explains the reasons):

1. A completion that defines macros (``\\def``, ``\\newcommand``, ...) has no answer: macros can
   make the rendered answer differ from the text we read.
2. If the completion contains ``</think>``, only the text after the last one is read.
3. The last ``\\boxed{...}`` / ``\\fbox{...}`` wins, matched by brace counting. An empty or
   unbalanced last box means *no* answer (we do not fall back to an earlier box: the model's
   final statement is malformed). Boxes that directly follow each other, separated only by
   commas, ``and``/``or`` or math delimiters, form one list answer (``\\boxed{2}, \\boxed{3}``
   reads as ``2, 3``), which is then compared as a list, so boxing several candidates for a
   single-valued gold never scores.
4. Without a box: the last of "the answer is X" / "final answer is X" (to the end of the sentence),
   GSM8K ``#### X`` (to the end of the line) and ``Answer: X`` lines, by position.
5. Nothing else: a completion without a final-answer marker has no answer.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

_MACRO_RE = re.compile(
    r"\\(?:g?def|edef|xdef|let|newcommand|renewcommand|providecommand|DeclareMathOperator"
    r"|catcode|newenvironment|renewenvironment)(?![a-zA-Z])")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
# Text allowed between two boxes that form one list answer.
_BOX_JOINER_RE = re.compile(
    r"^(?:\s|\$|\\[(),]|\\quad|\\qquad|,|;|and|or|\\text\{\s*(?:and|or|,)\s*\})*$")
_ANSWER_IS_RE = re.compile(
    r"(?:final answer|answer|option|choice)\s*(?:is|=)\s*:?\s*", re.IGNORECASE)
_GSM8K_RE = re.compile(r"####\s*")
_ANSWER_LINE_RE = re.compile(
    r"(?:^|\n)[ \t>*#_-]*(?:\*\*|__)?(?:final\s+)?answer(?:\*\*|__)?\s*(?:[:\uff1a]|(?=\$|\\[(\[]))\s*(?:\*\*|__)?\s*",
    re.IGNORECASE)
# The end of a sentence: a period/!/? followed by whitespace or the end, or a newline.
_SENTENCE_END_RE = re.compile(r"(?:[.!?](?=\s|$)|\n)")


def _match_braces(text: str, open_pos: int) -> Optional[int]:
  """Index just past the ``}`` matching the ``{`` at ``open_pos``; None if unbalanced.

  ``\\{`` and ``\\}`` are literal braces (set notation) and do not count.
  """
  depth = 0
  i = open_pos
  n = len(text)
  while i < n:
    c = text[i]
    if c == "\\":
      i += 2
      continue
    if c == "{":
      depth += 1
    elif c == "}":
      depth -= 1
      if depth == 0:
        return i + 1
    i += 1
  return None


def _box_content(text: str, start: int) -> Tuple[Optional[str], int]:
  """Content and end index of the box whose command ends at ``start``.

  Returns ``(None, start)`` for an unbalanced box and ``("", end)`` for an empty one.
  """
  i = start
  while i < len(text) and text[i] in " \t":
    i += 1
  if i < len(text) and text[i] == "{":
    end = _match_braces(text, i)
    if end is None:
      return None, start
    return text[i + 1:end - 1], end
  # ``\boxed 5``: TeX takes one token; we take the following word up to a delimiter.
  m = re.match(r"[^\s$\\}]+", text[i:])
  if not m:
    return "", i
  return m.group(), i + m.end()


def _boxed_answer(text: str) -> Tuple[bool, Optional[str]]:
  """(found_a_box, answer) for the box rule.

  Only the last box and the boxes directly before it are brace-matched, so a completion with
  thousands of (unbalanced) boxes costs one linear scan, not one per box.
  """
  starts = [m for m in _BOX_RE.finditer(text)]
  if not starts:
    return False, None
  content, end = _box_content(text, starts[-1].end())
  if content is None or not content.strip():
    return True, None
  parts = [content]
  start = starts[-1].start()
  for m in reversed(starts[:-1]):
    prev_content, prev_end = _box_content(text, m.end())
    if prev_content is None or not prev_content.strip() or prev_end > start:
      break
    if not _BOX_JOINER_RE.match(text[prev_end:start]):
      break
    parts.insert(0, prev_content)
    start = m.start()
  return True, ", ".join(p.strip() for p in parts)


def _until_sentence_end(text: str) -> str:
  """The text up to the end of its sentence, keeping decimals like ``3.5`` and ``$...$``."""
  # Math delimiters can contain periods (``$x=1.$``): cut only outside ``$...$``.
  in_math = False
  i = 0
  while i < len(text):
    c = text[i]
    if c == "\\" and i + 1 < len(text) and text[i + 1] in "()[]":
      in_math = text[i + 1] in "(["
      i += 2
      continue
    if c == "$":
      in_math = not in_math
    elif not in_math and _SENTENCE_END_RE.match(text, i):
      return text[:i]
    i += 1
  return text


def _line(text: str) -> str:
  return text.split("\n", 1)[0]


def extract(completion: str, max_answer_chars: int) -> Optional[str]:
  """See the module docstring; returns the raw answer text or None."""
  if _MACRO_RE.search(completion):
    return None
  think_end = completion.rfind("</think>")
  if think_end >= 0:
    completion = completion[think_end + len("</think>"):]
  found, answer = _boxed_answer(completion)
  if not found:
    # The last marker of each kind, then the last of those; only the winner's text is cut out
    # (cutting every candidate would be quadratic on a completion full of markers).
    candidates = []  # (position, end of marker, cut function)
    for regex, cut in ((_ANSWER_IS_RE, _until_sentence_end), (_GSM8K_RE, _line),
                       (_ANSWER_LINE_RE, _line)):
      last = None
      for last in regex.finditer(completion):
        pass
      if last is not None:
        candidates.append((last.start(), last.end(), cut))
    if candidates:
      _, marker_end, cut = max(candidates, key=lambda c: c[0])
      answer = cut(completion[marker_end:])
  if answer is None:
    return None
  answer = answer.strip()
  # A nested box inside an "answer is" sentence was already handled; strip emphasis markers.
  answer = re.sub(r"^(?:\*\*|__)|(?:\*\*|__)$", "", answer).strip()
  answer = answer.rstrip(".").strip()
  if not answer or len(answer) > max_answer_chars:
    return None
  return answer
