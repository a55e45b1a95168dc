"""Built-in procedural tasks with exact verifiers: no download, deterministic per seed.

Two task families:

* :class:`Arithmetic`: ``"a+b="``-style problems over a fixed operand range; the gold answer is the
  integer result. Verifier ``"procedural/integer"``: the completion, stripped of whitespace (and of
  an optional ``<answer>...</answer>`` wrapper or a final ``#### n`` line), must be exactly that
  integer.
* :class:`Countdown`: reach a target with ``+ - * /`` and parentheses, using each of the given
  numbers at most once (the "Countdown" task of TinyZero / Stream-of-Search, arXiv 2404.03683).
  Verifier ``"procedural/countdown"``: the expression is parsed safely (no ``eval``), uses a
  sub-multiset of the numbers, and evaluates exactly (rational arithmetic) to the target.

**Splits.** Every problem instance has a canonical key (e.g. ``"12+35"``). A stable hash of the key
(SHA-256, not Python's salted ``hash``) assigns each instance to ``"train"`` or ``"test"`` once and for
all, with ``heldout_fraction`` of the instance space held out. ``examples(split, seed)`` then draws
instances for that split from ``numpy.random.default_rng(seed)``, rejecting the other split's. So
the held-out prompts are never training prompts, for every pair of seeds, and the same
``(split, seed)`` always yields the same sequence (a resumed run skips exactly what it consumed).
"""

from __future__ import annotations

import dataclasses
import fractions
import hashlib
import itertools
import re
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import registry

SPLITS = ("train", "test")


def _in_heldout(key: str, heldout_fraction: float, salt: str) -> bool:
  """Stable assignment of an instance key to the held-out split."""
  digest = hashlib.sha256(f"{salt}:{key}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64 < heldout_fraction


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_HASHES = re.compile(r"####\s*(.*)$", re.DOTALL)


def extract_final(completion: str) -> str:
  """The answer part of a completion.

  The content of the last ``<answer>...</answer>`` if present, else what follows the last
  ``####``, else the whole completion; stripped of surrounding whitespace.
  """
  tags = _ANSWER_TAG.findall(completion)
  if tags:
    return tags[-1].strip()
  hashes = _HASHES.findall(completion)
  if hashes:
    return hashes[-1].strip()
  return completion.strip()


def integer_verifier(completion: str, example: task_lib.Example) -> float:
  """1.0 iff the completion's final answer is exactly the gold integer (``"+7"``/``"07"`` fail)."""
  answer = extract_final(completion)
  return float(re.fullmatch(r"-?\d+", answer) is not None and answer == example.answer)


# --- Arithmetic --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arithmetic:
  """Binary integer arithmetic: prompt ``"{a}{op}{b}="``, answer ``str(result)``.

  Attributes:
    min_value, max_value: inclusive operand range.
    ops: operators drawn uniformly, from ``"+"``, ``"-"``, ``"*"``.
    heldout_fraction: fraction of the instance space in the ``"test"`` split.
    instruction: optional text put before the problem (``"{instruction}{a}+{b}="``); real models
      want an answer-format instruction here matching the verifier.
    name: task name, used in metrics.
  """

  min_value: int = 0
  max_value: int = 99
  ops: Tuple[str, ...] = ("+",)
  heldout_fraction: float = 0.2
  instruction: str = ""
  name: str = "arithmetic"

  def __post_init__(self):
    if self.min_value > self.max_value:
      raise ValueError("min_value must be <= max_value.")
    for op in self.ops:
      if op not in "+-*":
        raise ValueError(f"Unsupported operator {op!r}.")
    if not 0.0 < self.heldout_fraction < 1.0:
      raise ValueError("heldout_fraction must lie in (0, 1).")

  def make(self, a: int, op: str, b: int) -> task_lib.Example:
    """The example for one instance."""
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    return task_lib.Example(
        prompt=f"{self.instruction}{a}{op}{b}=",
        answer=str(result),
        verifier="procedural/integer",
        metadata={"task": self.name, "key": f"{a}{op}{b}"},
    )

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """Infinite deterministic stream of instances of ``split``."""
    _check_split(split)
    rng = np.random.default_rng(seed)
    want_heldout = split == "test"
    while True:
      a = int(rng.integers(self.min_value, self.max_value + 1))
      b = int(rng.integers(self.min_value, self.max_value + 1))
      op = self.ops[int(rng.integers(len(self.ops)))]
      if _in_heldout(f"{a}{op}{b}", self.heldout_fraction, self.name) == want_heldout:
        yield self.make(a, op, b)


# --- Countdown ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\d+|[-+*/()])")


class _Parser:
  """Recursive-descent parser for ``+ - * /`` and parentheses over non-negative integers.

  Evaluates with :class:`fractions.Fraction`, records the literals used, and raises ``ValueError``
  on anything else (names, exponents, unary operators, division by zero).
  """

  def __init__(self, text: str):
    self.tokens: List[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
      match = _TOKEN.match(text, pos)
      if match is None:
        raise ValueError(f"Bad character at {pos} in {text!r}.")
      self.tokens.append(match.group(1))
      pos = match.end()
    self.pos = 0
    self.literals: List[int] = []

  def parse(self) -> fractions.Fraction:
    value = self._expr()
    if self.pos != len(self.tokens):
      raise ValueError("Trailing tokens.")
    return value

  def _peek(self) -> Optional[str]:
    return self.tokens[self.pos] if self.pos < len(self.tokens) else None

  def _expr(self) -> fractions.Fraction:
    value = self._term()
    while self._peek() in ("+", "-"):
      op = self.tokens[self.pos]
      self.pos += 1
      rhs = self._term()
      value = value + rhs if op == "+" else value - rhs
    return value

  def _term(self) -> fractions.Fraction:
    value = self._atom()
    while self._peek() in ("*", "/"):
      op = self.tokens[self.pos]
      self.pos += 1
      rhs = self._atom()
      if op == "*":
        value = value * rhs
      else:
        if rhs == 0:
          raise ValueError("Division by zero.")
        value = value / rhs
    return value

  def _atom(self) -> fractions.Fraction:
    token = self._peek()
    if token is None:
      raise ValueError("Unexpected end.")
    self.pos += 1
    if token == "(":
      value = self._expr()
      if self._peek() != ")":
        raise ValueError("Missing ')'.")
      self.pos += 1
      return value
    if token.isdigit():
      self.literals.append(int(token))
      return fractions.Fraction(int(token))
    raise ValueError(f"Unexpected token {token!r}.")


def countdown_verifier(completion: str, example: task_lib.Example) -> float:
  """1.0 iff the final answer is an expression over a sub-multiset of the numbers equal to target.

  The numbers come from ``example.metadata["numbers"]``, the target from ``example.answer``.
  """
  try:
    parser = _Parser(extract_final(completion))
    value = parser.parse()
  except ValueError:
    return 0.0
  available = list(example.metadata["numbers"])
  for literal in parser.literals:
    if literal not in available:
      return 0.0
    available.remove(literal)
  return float(value == int(example.answer))


def _solvable(numbers: Sequence[int], target: int) -> Optional[str]:
  """An expression reaching ``target`` from a sub-multiset of ``numbers``, or None (brute force)."""
  items = [(fractions.Fraction(n), str(n)) for n in numbers]

  def search(pool):
    for value, text in pool:
      if value == target:
        return text
    for i, j in itertools.permutations(range(len(pool)), 2):
      (x, tx), (y, ty) = pool[i], pool[j]
      rest = [pool[k] for k in range(len(pool)) if k not in (i, j)]
      candidates = [(x + y, f"({tx}+{ty})"), (x - y, f"({tx}-{ty})"), (x * y, f"({tx}*{ty})")]
      if y != 0:
        candidates.append((x / y, f"({tx}/{ty})"))
      for candidate in candidates:
        found = search(rest + [candidate])
        if found is not None:
          return found
    return None

  return search(items)


@dataclasses.dataclass(frozen=True)
class Countdown:
  """Countdown: prompt ``"{n1},{n2},...->{target}:"``, answer the target.

  Targets are drawn from ``[1, max_target]`` and kept only if solvable (checked by brute force, so
  keep ``num_numbers <= 4``); ``metadata["solution"]`` holds one solution, e.g. for SFT.
  """

  num_numbers: int = 3
  max_number: int = 9
  max_target: int = 30
  heldout_fraction: float = 0.2
  instruction: str = ""
  name: str = "countdown"

  def __post_init__(self):
    if not 2 <= self.num_numbers <= 4:
      raise ValueError("num_numbers must be in [2, 4] (solvability is checked by brute force).")
    if not 0.0 < self.heldout_fraction < 1.0:
      raise ValueError("heldout_fraction must lie in (0, 1).")

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """Infinite deterministic stream of solvable instances of ``split``."""
    _check_split(split)
    rng = np.random.default_rng(seed)
    want_heldout = split == "test"
    while True:
      numbers = sorted(int(n) for n in rng.integers(1, self.max_number + 1, self.num_numbers))
      target = int(rng.integers(1, self.max_target + 1))
      key = ",".join(map(str, numbers)) + f"->{target}"
      if _in_heldout(key, self.heldout_fraction, self.name) != want_heldout:
        continue
      solution = _solvable(numbers, target)
      if solution is None:
        continue
      yield task_lib.Example(
          prompt=f"{self.instruction}{key}:",
          answer=str(target),
          verifier="procedural/countdown",
          metadata={"task": self.name, "key": key, "numbers": numbers, "solution": solution},
      )


registry.register_verifier("procedural/integer", integer_verifier)
registry.register_verifier("procedural/countdown", countdown_verifier)


def take(source: task_lib.TaskSource, split: str, n: int, seed: int = 0) -> List[task_lib.Example]:
  """The first ``n`` examples of ``source.examples(split, seed)``."""
  return list(itertools.islice(source.examples(split, seed), n))


def get(name: str, **kwargs) -> task_lib.TaskSource:
  """A built-in procedural task by name (``"arithmetic"`` or ``"countdown"``)."""
  tasks = {"arithmetic": Arithmetic, "countdown": Countdown}
  if name not in tasks:
    raise KeyError(f"No procedural task {name!r}; known: {sorted(tasks)}")
  return tasks[name](**kwargs)


def scaf_hints(example: task_lib.Example) -> Optional[Dict[str, List[str]]]:
  """Cheap Scaf-GRPO hint tiers derived from a procedural example's gold answer, or None.

  * ``procedural/integer`` (arithmetic): knowledge ``"{n} characters."``; solution parts
    ``"Starts {answer[:k]}."`` for growing ``k`` (the last gives it all). Short, because the
    char-level demo's prompts are short (the hinted prompt must fit ``data.prompt_buckets``).
  * ``procedural/countdown``: knowledge ``"Use each number at most once."``; solution parts:
    growing quarters of ``metadata['solution']``.

  They stand in for the paper's LLM-written hints (the mechanism, not the hint quality, is what
  they exercise); a dataset task provides ``metadata['hints']`` instead.
  """
  metadata = example.metadata or {}
  answer = str(example.answer)
  if example.verifier == "procedural/integer":
    return {"knowledge": [f"{len(answer)} characters."],
            "solution": [f"Starts {answer[:k]}." for k in range(1, len(answer) + 1)]}
  if example.verifier == "procedural/countdown" and metadata.get("solution"):
    solution = str(metadata["solution"])
    cuts = [max(1, -(-k * len(solution) // 4)) for k in range(1, 5)]
    return {"knowledge": ["Use each number at most once."],
            "solution": [f"Begin with {solution[:c]}" for c in cuts]}
  return None
