"""Standard verifiers, registered by name in :mod:`rlvr_jax.rewards.registry`.

Importing this module (``import rlvr_jax.data`` does) registers:

* ``"exact"``: the whole completion, with surrounding whitespace removed and inner runs of
  whitespace collapsed, equals the gold answer normalised the same way. For short-answer tasks
  whose prompt asks for the answer alone.
* ``"answer_tag"``: the content of the *last* ``<answer>...</answer>`` equals the gold answer
  (same normalisation); 0 when there is no tag. The format of DeepSeek-R1-Zero-style prompts
  and of reasoning-gym's system prompts.
* ``"boxed"``: the content of the last ``\\boxed{...}`` (braces balanced) equals the gold answer
  (same normalisation); no symbolic equivalence. Cheap, for procedural tasks with canonical answers.
* ``"gsm8k"``: verl's strict GSM8K rule (``verl/utils/reward_score/gsm8k.py``): in the last 300
  characters, the last ``#### <number>`` (``-?[0-9.,]+``, commas and ``$`` removed) must equal
  the gold number as a string.
* ``"gsm8k_flexible"``: verl's flexible rule: the last number anywhere in those 300 characters,
  except that a trailing sentence period or comma is not part of the number ("The answer is 2."
  scores 2; verl reads ``2.`` and scores it 0).
* ``"math"``: delegates to :mod:`rlvr_jax.rewards.math` (final-answer extraction and symbolic
  equivalence with the gold), imported on first use so that ``rlvr_jax.data`` does not import
  sympy until a math example is scored. A gold in GSM8K layout (``... #### 8``) is compared by
  its number after ``####``, with a one-time ``RuntimeWarning`` (use ``gsm8k``/``gsm8k_flexible``
  for GSM8K data).

Every verifier has the registry signature ``(completion: str, example: Example) -> float`` and
returns 1.0 or 0.0. The answer-format instruction that a prompt should carry for each of them lives
in :mod:`rlvr_jax.data.templates`.
"""

from __future__ import annotations

import multiprocessing
import re
import warnings
from typing import List, Optional

from typing import TYPE_CHECKING

from rlvr_jax.rewards import registry

if TYPE_CHECKING:  # rewards never import data at run time
  from rlvr_jax.data.task import Example

# verl reads only the tail of a GSM8K completion, so an early "#### 12" in a long rambling
# answer does not count; kept as a parameter so that tests and users can change it.
GSM8K_TAIL_CHARS = 300

_WS = re.compile(r"\s+")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
_NUMBER = re.compile(r"(\-?[0-9\.\,]+)")


def normalize_text(text: str) -> str:
  """Strips ``text`` and collapses inner whitespace runs to one space."""
  return _WS.sub(" ", text).strip()


def exact_verifier(completion: str, example: "Example") -> float:
  """1.0 iff ``normalize_text(completion) == normalize_text(example.answer)``."""
  return float(normalize_text(completion) == normalize_text(example.answer))


def extract_answer_tag(completion: str) -> Optional[str]:
  """Content of the last ``<answer>...</answer>`` in ``completion``, or None."""
  tags = _ANSWER_TAG.findall(completion)
  return tags[-1] if tags else None


def answer_tag_verifier(completion: str, example: "Example") -> float:
  """1.0 iff the last ``<answer>`` tag's content equals the gold answer (whitespace-normalised)."""
  answer = extract_answer_tag(completion)
  return float(answer is not None and normalize_text(answer) == normalize_text(example.answer))


def extract_boxed(completion: str) -> Optional[str]:
  """Content of the last ``\\boxed{...}`` with balanced braces, or None if absent/unclosed."""
  start = completion.rfind("\\boxed{")
  if start < 0:
    return None
  depth = 0
  begin = start + len("\\boxed{")
  for i in range(begin, len(completion)):
    ch = completion[i]
    if ch == "{":
      depth += 1
    elif ch == "}":
      if depth == 0:
        return completion[begin:i]
      depth -= 1
  return None


def boxed_verifier(completion: str, example: "Example") -> float:
  """1.0 iff the last ``\\boxed{}`` content equals the gold answer (whitespace-normalised)."""
  answer = extract_boxed(completion)
  return float(answer is not None and normalize_text(answer) == normalize_text(example.answer))


def _clean_number(text: str) -> str:
  return text.replace(",", "").replace("$", "")


def extract_gsm8k(completion: str, *, flexible: bool = False,
                  tail_chars: int = GSM8K_TAIL_CHARS) -> Optional[str]:
  """The predicted GSM8K answer, following verl's ``gsm8k.extract_solution``.

  Args:
    completion: model output.
    flexible: False: the last ``#### <number>``; True: the last number-like token that is not
      a lone ``.`` or ``,``, with a trailing ``.``/``,`` (sentence punctuation) removed.
    tail_chars: only the last ``tail_chars`` characters are searched.

  Returns:
    The number with commas and dollar signs removed, or None.
  """
  tail = completion[-tail_chars:] if tail_chars > 0 else completion
  if not flexible:
    matches = _GSM8K_STRICT.findall(tail)
    return _clean_number(matches[-1]) if matches else None
  # "The answer is 2." ends in a sentence period, not a decimal point: verl keeps it ("2."), which
  # never equals a gold; stripping it changes no other match (a number never ends in "." or ",").
  candidates: List[str] = [m.rstrip(".,") for m in _NUMBER.findall(tail)]
  candidates = [m for m in candidates if m not in ("", "-")]
  return _clean_number(candidates[-1]) if candidates else None


def gsm8k_gold(answer: str) -> str:
  """The gold number of a GSM8K record: the text after the last ``####``, commas removed.

  Accepts either the full GSM8K ``answer`` field (rationale, then ``#### 72``) or a bare number.
  """
  if "####" in answer:
    answer = answer.rsplit("####", 1)[1]
  return _clean_number(answer.strip())


def gsm8k_verifier(completion: str, example: "Example") -> float:
  """Strict GSM8K: the last ``#### n`` in the completion's tail equals the gold (string equality)."""
  pred = extract_gsm8k(completion, flexible=False)
  return float(pred is not None and pred == gsm8k_gold(example.answer))


def gsm8k_flexible_verifier(completion: str, example: "Example") -> float:
  """Flexible GSM8K: the last number in the completion's tail (a trailing sentence period
  dropped) equals the gold (string equality)."""
  pred = extract_gsm8k(completion, flexible=True)
  return float(pred is not None and pred == gsm8k_gold(example.answer))


def math_verifier(completion: str, example: "Example") -> float:
  """Symbolic math equivalence of the completion's final answer with the gold (1.0 / 0.0).

  In the main process this calls :func:`rlvr_jax.rewards.math.verify`, which runs the comparison
  in a worker process under a hard timeout. Inside a worker process (the trainer's reward pool,
  which already bounds each item's time) it calls ``verify_in_process``, so no second pool is
  started per worker.
  """
  # Imported here: rlvr_jax.rewards.math pulls in sympy, which a user of JSONL/GSM8K tasks should
  # not pay for at import time.
  from rlvr_jax.rewards import math as math_rewards  # pylint: disable=g-import-not-at-top
  gold = example.answer
  if "####" in gold:
    gold = gsm8k_gold(gold)
    _warn_gsm8k_gold_once()
  if multiprocessing.parent_process() is not None:
    return float(math_rewards.verify_in_process(completion, gold))
  return float(math_rewards.verify(completion, gold))


_WARNED_GSM8K_GOLD = []


def _warn_gsm8k_gold_once() -> None:
  """A ``RuntimeWarning`` (once per process) that the math verifier got a GSM8K-layout gold."""
  if _WARNED_GSM8K_GOLD:
    return
  _WARNED_GSM8K_GOLD.append(True)
  warnings.warn("the 'math' verifier got a gold answer in GSM8K layout ('... #### 8'): it compares "
                "with the number after '####'; the 'gsm8k' or 'gsm8k_flexible' verifiers are "
                "meant for GSM8K data", RuntimeWarning, stacklevel=3)


STANDARD_VERIFIERS = {
    "exact": exact_verifier,
    "answer_tag": answer_tag_verifier,
    "boxed": boxed_verifier,
    "gsm8k": gsm8k_verifier,
    "gsm8k_flexible": gsm8k_flexible_verifier,
    "math": math_verifier,
}

for _name, _fn in STANDARD_VERIFIERS.items():
  registry.register_verifier(_name, _fn)
