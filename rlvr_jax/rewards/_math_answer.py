"""Answer normalisation, structure and equivalence (private helper of ``rewards.math``).

An answer string is normalised (unicode, spacing, delimiters, thousands separators), then read into
one of a few structures, and two structures are compared by the rules below. Every rule is a
policy decision; ``docs/rewards.md`` lists them with examples.

* ``Scalar``: one expression, with flags for a decimal numeral, a percent sign and a degree sign,
  and the stated precision of a lone decimal numeral. Values are exact sympy numbers (decimals
  become rationals) and compare exactly: see :func:`constant_equal` and :func:`scalar_equal`.
* ``Text``: words (``\\text{Monday}``, ``no solution``); compared case-insensitively as strings.
  Numbers and infinity written in words are Scalars.
* ``Equation``: ``lhs = rhs [= ...]``.
* ``RealSet``: intervals, unions, one-variable inequalities (also joined by "or"/"and"),
  set-builder sets and ``\\mathbb{R}``, as a sympy set over the reals.
* ``Relation``: any other (in)equation chain, compared side by side (or mirrored: ``a < b`` is
  ``b > a``).
* ``Seq``: ``tuple`` (ordered), ``set`` (``\\{..\\}``, unordered), ``list`` (a bare comma list,
  unordered) or ``pair`` (``(a, b)``: an ordered pair or an open interval).
* ``Matrix``: rows of scalars (``pmatrix``, ``bmatrix``, ``matrix``, ``array``), possibly in
  brackets and times a scalar factor.
"""

from __future__ import annotations

import dataclasses
import random
import re
from typing import List, Optional, Sequence, Union

import sympy

from rlvr_jax.rewards import _math_latex

# ----------------------------------------------------------------------------------------------
# Structures


@dataclasses.dataclass(frozen=True)
class Scalar:
  """One expression; the flags record a decimal numeral, a percent sign and a degree sign.

  ``ulp`` is the unit in the last place when the whole answer is one decimal numeral (``3.14``:
  1/100, ``2.50``: 1/100, ``1.5e3``: 100); None for anything else, whose value is exact.
  """

  expr: sympy.Expr
  decimal: bool = False
  percent: bool = False
  degree: bool = False
  ulp: Optional[sympy.Rational] = None


@dataclasses.dataclass(frozen=True)
class Text:
  """Words (``\\text{Monday}``, ``no solution``), compared case-insensitively by ``key``."""

  key: str


@dataclasses.dataclass(frozen=True)
class Equation:
  """An equation chain ``lhs = rhs [= ...]``; ``label`` names the quantity asked for."""

  sides: tuple  # of Answer
  # The left side's text (spaces removed) when it names the quantity asked for: a variable,
  # ``a_1``, ``f(x)``, ``AB``, ``|AB|``, ``(x, y)``, a Greek letter; None otherwise.
  label: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class RealSet:
  """Intervals, unions or one-variable inequalities, as a sympy set over the reals."""

  value: sympy.Set


@dataclasses.dataclass(frozen=True)
class Relation:
  """Any other (in)equation chain: canonical operators and the scalar sides between them."""

  ops: tuple  # canonical operator names, e.g. ("<", "<=")
  sides: tuple  # of Scalar


@dataclasses.dataclass(frozen=True)
class Seq:
  """A ``tuple``, ``set``, ``list`` or ``pair`` of answers (see the module docstring)."""

  kind: str  # "tuple" | "set" | "list" | "pair"
  items: tuple


@dataclasses.dataclass(frozen=True)
class Matrix:
  """Rows of answers (``pmatrix``, ``bmatrix``, ``matrix``, ``array``)."""

  rows: tuple  # of tuples of Answer


Answer = Union[Scalar, Text, Equation, RealSet, Relation, Seq, Matrix]


@dataclasses.dataclass(frozen=True)
class Options:
  """Numerical policy of the comparison (``docs/rewards.md``, "Numeric policy").

  Attributes:
    rel_tol: None (default): values compare exactly, and a decimal gold is read at its stated
      precision (see :func:`scalar_equal`). A float opts in to a looser grader: a decimal numeral
      is also accepted within this relative tolerance of a value without a finite decimal
      expansion (``0.6667`` for ``2/3``).
    num_points: random points at which expressions with free symbols are compared.
    seed: seed of those random points (fixed, so verdicts are reproducible).
  """

  rel_tol: Optional[float] = None
  num_points: int = 6
  seed: int = 0


# ----------------------------------------------------------------------------------------------
# Normalisation

_UNICODE = {
    "\u2212": "-", "\u2013": "-", "\u2014": "-", "\ufe63": "-", "\uff0d": "-",
    "\u00d7": r" \times ", "\u00b7": r" \cdot ", "\u22c5": r" \cdot ", "\u00f7": r" \div ",
    "\u03c0": r" \pi ", "\u221e": r" \infty ", "\u221a": r"\sqrt", "\u2264": r" \le ",
    "\u2265": r" \ge ", "\u2260": r" \ne ", "\u00b0": r"^\circ", "\u222a": r" \cup ",
    "\u2208": r" \in ", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2002": " ",
    "\u2003": " ", "\u2061": "", "\u200b": "", "\uff0c": ",", "\u00bd": r"\frac{1}{2}",
    "\u00bc": r"\frac{1}{4}", "\u00be": r"\frac{3}{4}",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))
_TEXT_CMDS = r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|operatorname)"
_TEXT_RE = re.compile(_TEXT_CMDS + r"\s*\{([^{}]*)\}")
_UNIT_WORDS = frozenset("""
cm m km mm nm meter meters metre metres inch inches ft foot feet yard yards yd mile miles mph
kph kmh unit units sq square cubic degree degrees deg rad radian radians dollar dollars cent cents
usd hr hrs hour hours min mins minute minutes s sec secs second seconds day days week weeks month
months year years kg g gram grams mg lb lbs pound pounds oz ounce ounces l liter liters litre
litres ml gallon gallons cup cups people persons students ways times
""".split())
_RELATIONS = {
    "=": "=", "<": "<", ">": ">", "\\le": "<=", "\\leq": "<=", "\\leqslant": "<=", "\\ge": ">=",
    "\\geq": ">=", "\\geqslant": ">=", "\\lt": "<", "\\gt": ">", "<=": "<=", ">=": ">=",
    "\\ne": "!=", "\\neq": "!=",
}
_REL_RE = re.compile(r"\\(?:leqslant|geqslant|leq|geq|neq|le|ge|ne|lt|gt)(?![a-zA-Z])|<=|>=|[=<>]")


def _repeating_decimal(m: re.Match) -> str:
  """``0.1\\overline{6}`` -> ``\\frac{15}{90}`` (= 1/6)."""
  whole, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
  den = (10**len(rep) - 1) * 10**len(fixed)
  num = int(whole) * den + int(fixed or "0") * (10**len(rep) - 1) + int(rep)
  return f"\\frac{{{num}}}{{{den}}}"


def normalize(text: str) -> str:
  """String-level normalisation shared by every comparison (see the module docstring)."""
  # Protect matrix row separators (``\\\\``) from the spacing rules below.
  s = text.replace("\\\\", "\x01")
  s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group()], s)
  s = re.sub(r"\\\$", " ", s)  # An escaped dollar is a currency sign.
  s = re.sub(r"(\d*)\.(\d*)\\overline\s*\{(\d+)\}", _repeating_decimal, s)
  s = re.sub(r"\\(?:left|right)\s*\.", "", s)
  s = re.sub(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])",
             "", s)
  s = re.sub(r"\\(?:displaystyle|textstyle|limits|nolimits)(?![a-zA-Z])", "", s)
  # Thin spaces between digit groups are thousands separators: 1\,000 -> 1000.
  s = re.sub(r"(?<=\d)(?:\\[,;:!]|\\ |~|\s)(?=\d{3}(?!\d))", "", s)
  s = re.sub(r",\\!\s*(?=\d{3}(?!\d))", ",", s)  # 11,\!111 -> 11,111 (then a thousands group)
  s = re.sub(r"\\[,;:!>]|\\ |~|\\q?quad(?![a-zA-Z])", " ", s)
  s = s.replace("{,}", ",")
  s = re.sub(r"\\[()\[\]]|\$", " ", s)
  s = re.sub(r"\\dfrac|\\tfrac|\\cfrac", r"\\frac", s)
  s = re.sub(r"\\dbinom|\\tbinom", r"\\binom", s)
  # 1,234,567 -> 1234567 unless it sits alone in brackets, where it is read as a tuple.
  s = re.sub(r"(?<![\d.(\[{])\d{1,3}(?:,\d{3})+(?![\d)\]}]|,\d)",
             lambda m: m.group().replace(",", ""), s)
  s = re.sub(r"\s+", " ", s).strip()
  s = re.sub(r"[.\s]+$", "", s)
  return s.replace("\x01", "\\\\")


def text_key(text: str) -> str:
  """Case- and markup-insensitive key for comparing text answers."""
  s = text
  while True:
    t = _TEXT_RE.sub(r"\1", s)
    if t == s:
      break
    s = t
  s = s.replace("\\", " ").replace("{", " ").replace("}", " ")
  s = re.sub(r"\s+", " ", s).strip().lower()
  return s.strip(" .,;:!")


def _strip_text_wrappers(s: str) -> str:
  while True:
    t = _TEXT_RE.sub(r"\1", s)
    if t == s:
      return s
    s = t


# ----------------------------------------------------------------------------------------------
# Parsing into structures

_OPEN = "([{"
_CLOSE = ")]}"


def _split_top(s: str, seps: Sequence[str]) -> List[str]:
  """Splits ``s`` on separators that sit outside every bracket (``\\{``/``\\}`` count too)."""
  parts, depth, start, i = [], 0, 0, 0
  while i < len(s):
    if s.startswith("\\{", i) or s.startswith("\\langle", i) or s.startswith("\\lfloor", i) or \
        s.startswith("\\lceil", i):
      depth += 1
      i += 2
      continue
    if s.startswith("\\}", i) or s.startswith("\\rangle", i) or s.startswith("\\rfloor", i) or \
        s.startswith("\\rceil", i):
      depth -= 1
      i += 2
      continue
    if depth == 0:
      sep = next((x for x in seps if s.startswith(x, i)), None)
      if sep is not None and not (sep[-1].isalpha() and s[i + len(sep):i + len(sep) + 1].isalpha()):
        parts.append(s[start:i])
        start = i = i + len(sep)
        continue
    c = s[i]
    if c == "\\":
      m = re.match(r"\\[a-zA-Z]+|\\.", s[i:])
      i += len(m.group()) if m else 1
      continue
    if c in _OPEN:
      depth += 1
    elif c in _CLOSE:
      depth -= 1
    i += 1
  parts.append(s[start:])
  return parts


def _outer_group(s: str, open_tok: str, close_tok: str) -> Optional[str]:
  """Inner text when ``s`` is exactly one bracketed group ``open ... close``."""
  if not (s.startswith(open_tok) and s.endswith(close_tok)):
    return None
  inner = s[len(open_tok):len(s) - len(close_tok)]
  depth = 0
  i = 0
  while i < len(inner):
    if inner.startswith("\\{", i):
      depth += 1
      i += 2
      continue
    if inner.startswith("\\}", i):
      depth -= 1
      if depth < 0:
        return None
      i += 2
      continue
    if inner[i] == "\\":
      i += 2
      continue
    if inner[i] in _OPEN:
      depth += 1
    elif inner[i] in _CLOSE:
      depth -= 1
      if depth < 0:
        return None
    i += 1
  return inner if depth == 0 else None


def _interval_inner(s: str) -> Optional[tuple]:
  """(inner, left_closed, right_closed) when ``s`` is ``(a,b)``, ``[a,b)``, ``(a,b]``, ``[a,b]``."""
  if len(s) < 2 or s[0] not in "([" or s[-1] not in ")]":
    return None
  inner = s[1:-1]
  depth = 0
  for c in inner:
    if c in _OPEN:
      depth += 1
    elif c in _CLOSE:
      depth -= 1
      if depth < 0:
        return None
  if depth != 0:
    return None
  return inner, s[0] == "[", s[-1] == "]"


_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_LABEL_RE = re.compile(
    r"^(?:[A-Za-z](?:_\{?[\w,]+\}?)?(?:\s*\([^()]*\))?"   # x, a_1, x_{12}, f(x), P(A)
    r"|[A-Z]{2,3}|\|[A-Z]{2,3}\|"                           # AB, ABC, |AB|
    r"|\\(?:" + "|".join(sorted(_math_latex.GREEK)) + r")(?![a-zA-Z])"
    r"|\([A-Za-z](?:\s*,\s*[A-Za-z])+\))$")                 # (x, y)
_KNOWN_WORDS = frozenset(
    "frac dfrac tfrac sqrt pi infty sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh "
    "ln log exp binom cdot times div lfloor rfloor lceil rceil mathrm circ le leq ge geq ne neq "
    "lt gt pm mp cup in alpha beta gamma delta epsilon theta lambda mu phi omega sigma tau rho "
    "emptyset varnothing begin end pmatrix bmatrix matrix array langle rangle operatorname over "
    "mathbf text textbf mbox ast vartheta varphi varepsilon eta zeta kappa nu xi chi psi iota "
    "upsilon Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split())


# Answer words shorter than three letters; other one- and two-letter strings are variables or
# products of them (``ab``), whose case matters.
_SHORT_WORDS = frozenset(["no"])


def _is_words(s: str) -> bool:
  """True for answers made of natural-language words (``Monday``, ``no solution``, ``No``)."""
  plain = re.sub(r"\\[a-zA-Z]+", lambda m: " " if m.group()[1:] in _KNOWN_WORDS else m.group(), s)
  words = [w for w in _WORD_RE.findall(plain) if w not in _KNOWN_WORDS]
  return bool(words) and not re.search(r"\d", s) and any(
      len(w) >= 3 or w.lower() in _SHORT_WORDS for w in words)


# Words that never end a number as its unit: hedges and connectives ("4 maybe five", "5 or
# more"), number and scale words (their value matters: "1.5 million"), and function names.
_NOT_UNIT_WORDS = frozenset("""
or and not no nor maybe perhaps probably possibly likely approximately approx about around
roughly nearly almost exactly only over under least most more less than plus minus to of is are
was be either neither both each per cent sin cos tan cot sec csc log ln exp sqrt abs mod max min
infinity infinite undefined none
""".split()) | frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand million billion trillion dozen half halves quarter quarters third "
    "thirds".split())


def _is_unit(text: str, spaced: bool = True, in_text: bool = True) -> bool:
  """Whether ``text`` after a number is a unit or a counted noun that may be dropped.

  Accepted: up to three unit words (known ones such as ``cm``, ``square meters``; inside
  ``\\text{}`` also any abbreviation of at most three letters, ``km/h``), optionally ending in one
  other word of at least three letters when it is set off by a space (``12 apples``,
  ``6 \\text{ friends}``, ``18 square units``). Never: hedges, connectives, number or scale words
  and function names (``_NOT_UNIT_WORDS``), so words cannot hide behind a "unit" and ``5x`` keeps
  its ``x``.
  """
  words = [w for w in re.split(r"[\s./]+", text.lower()) if w]
  if not words or len(words) > 3 or any(w in _NOT_UNIT_WORDS for w in words):
    return False
  if all(w in _UNIT_WORDS or (in_text and len(w) <= 3) for w in words):
    return True
  *head, last = words
  return spaced and all(w in _UNIT_WORDS for w in head) and len(last) >= 3 and last.isalpha()


def _strip_scalar_marks(s: str) -> tuple:
  """Removes currency, units, percent and degree marks; returns (text, percent, degree)."""
  percent = degree = False
  s = re.sub(r"^(?:\\\$|\\?\$|USD|US\\\$)\s*", "", s).strip()
  for _ in range(3):
    before = s
    m = re.search(r"\s*(?:\\%|%|\\text\{\s*%\s*\}|\s*(?:percent|percentage|pct|per\s*cent)|\s*\\text\{\s*(?:percent|percentage|pct)\s*\})$", s)
    if m:
      percent, s = True, s[:m.start()].strip()
    m = re.search(r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|\s+degrees?|\s*\\text\{\s*degrees?\s*\})"
                  r"(?:\s*\\?(?:text|mathrm)\{\s*[CF]\s*\})?$", s)
    if m and s[:m.start()].strip():
      degree, s = True, s[:m.start()].strip()
    m = re.search(_TEXT_CMDS + r"\s*\{(\s*)([A-Za-z][A-Za-z ./]*)\}(?:\s*\^\s*\{?\d\}?)?$", s)
    if m and re.search(r"[\d}\)]", s[:m.start()]) and _is_unit(m.group(2)):
      s = s[:m.start()].strip()
    m = re.search(r"(?<=[\d}\)\s])(\s*)([A-Za-z]+(?:\s+[A-Za-z]+){0,2})(?:\s*\^\s*\{?\d\}?)?$", s)
    if m and re.search(r"\d", s[:m.start()]) and _is_unit(m.group(2), spaced=bool(m.group(1)),
                                                         in_text=False):
      s = s[:m.start()].strip()
    if s == before:
      break
  return s, percent, degree


_DECIMAL_NUMERAL_RE = re.compile(
    r"^[+-]?\d*\.(\d+)"
    r"(?:\s*(?:[eE]|\\times\s*10\s*\^|\\cdot\s*10\s*\^)\s*\{?\s*([+-]?\d+)\s*\}?)?$")
_SCALE_WORDS = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_SCALE_RE = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:\\text\{\s*)?("
                       + "|".join(_SCALE_WORDS) + r")s?(?:\s*\})?$", re.IGNORECASE)


def _ulp(body: str) -> Optional[sympy.Rational]:
  """The unit in the last place of a lone decimal numeral (``3.14`` -> 1/100), else None."""
  m = _DECIMAL_NUMERAL_RE.match(body.strip())
  if not m:
    return None
  return sympy.Rational(1, 10**len(m.group(1))) * sympy.Integer(10)**int(m.group(2) or 0)


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _spell(n: int) -> str:
  """The canonical English words for ``0 <= n < 10**12`` (``121`` -> ``one hundred twenty-one``)."""
  if n < 20:
    return _ONES[n]
  if n < 100:
    return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
  if n < 1000:
    return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _spell(n % 100))
  for word, power in (("billion", 9), ("million", 6), ("thousand", 3)):
    if n >= 10**power:
      head, rest = divmod(n, 10**power)
      return _spell(head) + " " + word + ("" if rest == 0 else " " + _spell(rest))
  raise ValueError(n)


def _number_from_words(key: str) -> Optional[int]:
  """An integer written in words (``twelve``, ``negative forty-two``, ``one hundred and five``).

  Only canonical spellings are read: the words are parsed, the number is spelled again, and the
  two must agree, so ``two three`` or ``five five`` are not numbers.
  """
  words = key.replace("-", " ").split()
  sign = 1
  if words and words[0] in ("negative", "minus"):
    sign, words = -1, words[1:]
  words = [w for w in words if w != "and"]
  if not words or len(words) > 12:
    return None
  total = current = 0
  for w in words:
    if w in _ONES:
      current += _ONES.index(w)
    elif w in _TENS:
      current += 10 * (_TENS.index(w) + 2)
    elif w == "hundred":
      current *= 100
    elif w in ("thousand", "million", "billion"):
      total += current * 10**_SCALE_WORDS[w]
      current = 0
    else:
      return None
  n = total + current
  if n >= 10**12 or _spell(n).replace("-", " ").split() != words:
    return None
  return sign * n


_INFINITY_WORDS = {"infinity": sympy.oo, "positive infinity": sympy.oo, "plus infinity": sympy.oo,
                   "negative infinity": -sympy.oo, "minus infinity": -sympy.oo}
_REALS_WORDS = frozenset(["all real numbers", "all reals", "the real numbers", "real numbers",
                          "the set of all real numbers", "the set of real numbers"])


def _unwrap_text(s: str) -> str:
  """The content of an answer that is one ``\\text{...}``-style group (``\\text{25\\%}``)."""
  m = re.match(_TEXT_CMDS + r"\s*(?=\{)", s)
  if m:
    inner = _outer_group(s[m.end():], "{", "}")
    if inner is not None:
      return inner.strip()
  return s


def _parse_words(body: str) -> Answer:
  """Words: a number (``twelve``), infinity (``negative infinity``), or text."""
  key = text_key(body)
  n = _number_from_words(key)
  if n is not None:
    return Scalar(sympy.Integer(n))
  name = key.lstrip("+-").strip()
  if name in _INFINITY_WORDS:
    return Scalar(-_INFINITY_WORDS[name] if key.startswith("-") else _INFINITY_WORDS[name])
  return Text(key)


def _parse_scalar(s: str) -> Answer:
  s = _unwrap_text(s)
  body, percent, degree = _strip_scalar_marks(s)
  if not body:
    return Text(text_key(s))
  body = _strip_text_wrappers(body) if not _is_words(body) else body
  if _is_words(body):
    return _parse_words(body)
  scaled = _SCALE_RE.match(body)
  if scaled:
    body = f"{scaled.group(1)}\\times 10^{{{_SCALE_WORDS[scaled.group(2).lower()]}}}"
  try:
    expr, decimal = _math_latex.parse_expression(body)
  except _math_latex.ParseError:
    return Text(text_key(s))
  return Scalar(expr, decimal, percent, degree, _ulp(body))


# A matrix environment, optionally inside brackets (``\left(\begin{array}..\end{array}\right)``)
# and after a scalar factor (``2\begin{pmatrix}..\end{pmatrix}``, ``-\begin{bmatrix}..``).
_MATRIX_RE = re.compile(
    r"(?P<factor>[^&]*?)\s*(?P<open>[(\[])?\s*\\begin\{(?P<env>[pbBvV]?matrix|smallmatrix|array)\}"
    r"(?:\{[^{}]*\})?(?P<body>.*)\\end\{(?P=env)\}\s*(?P<close>[)\]])?", re.DOTALL)


def _parse_matrix(s: str) -> Optional[Matrix]:
  m = _MATRIX_RE.fullmatch(s)
  if not m or m.group("env") in ("vmatrix", "Vmatrix"):
    return None
  if (m.group("open") or "") + (m.group("close") or "") not in ("", "()", "[]"):
    return None
  rows = [r for r in re.split(r"\\\\", m.group("body")) if r.strip()]
  parsed = tuple(tuple(parse(c) for c in r.split("&")) for r in rows)
  if not parsed or len({len(r) for r in parsed}) != 1:
    return None
  factor = m.group("factor").strip()
  if factor:
    factor = {"-": "-1", "+": "1"}.get(factor, factor)
    if "\\begin" in factor or not all(isinstance(x, Scalar) for r in parsed for x in r):
      return None
    try:
      k, _ = _math_latex.parse_expression(factor)
    except _math_latex.ParseError:
      return None
    parsed = tuple(tuple(Scalar(k * x.expr, x.decimal) for x in r) for r in parsed)
  return Matrix(parsed)


def _to_real_set(a: Answer) -> Optional[sympy.Set]:
  if isinstance(a, RealSet):
    return a.value
  if isinstance(a, Seq) and a.kind == "pair":
    lo, hi = a.items
    if isinstance(lo, Scalar) and isinstance(hi, Scalar):
      return _interval(lo.expr, hi.expr, False, False)
  if isinstance(a, Seq) and a.kind == "set" and all(isinstance(x, Scalar) for x in a.items):
    return sympy.FiniteSet(*[x.expr for x in a.items])
  return None


def _interval(lo, hi, left_closed: bool, right_closed: bool) -> Optional[sympy.Set]:
  if not (lo.is_extended_real and hi.is_extended_real):
    return None
  try:
    if bool(lo > hi):
      return None
  except TypeError:
    return None
  return sympy.Interval(lo, hi, not left_closed or lo.is_infinite,
                        not right_closed or hi.is_infinite)


def _relation(sides: List[str], ops: List[str]) -> Answer:
  """One-variable inequalities become real sets; anything else stays a Relation."""
  parsed = [parse(x) for x in sides]
  if not all(isinstance(p, Scalar) for p in parsed):
    return Text(text_key(" ".join(sides)))
  exprs = [p.expr for p in parsed]
  syms = [i for i, e in enumerate(exprs) if isinstance(e, sympy.Symbol)]
  numeric = all(e.is_extended_real for i, e in enumerate(exprs) if i not in syms)
  if len(syms) == 1 and numeric and ops == ["!="] and exprs[1 - syms[0]].is_finite:
    # ``x \ne 0``: every real but one.
    c = exprs[1 - syms[0]]
    return RealSet(sympy.Union(sympy.Interval.open(-sympy.oo, c), sympy.Interval.open(c, sympy.oo)))
  if len(syms) == 1 and numeric and "=" not in ops and "!=" not in ops:
    k = syms[0]
    # Normalise to lower bounds on the left: a < x < b, x > a, ...
    lo, hi, lo_closed, hi_closed = -sympy.oo, sympy.oo, False, False
    ok = True
    for j, op in enumerate(ops):
      left, right = j, j + 1
      if k not in (left, right):
        ok = False
        break
      other = exprs[right] if left == k else exprs[left]
      x_is_left = left == k
      less = op in ("<", "<=")
      closed = op in ("<=", ">=")
      if less == x_is_left:  # x < c or c > x: an upper bound
        hi, hi_closed = other, closed
      else:
        lo, lo_closed = other, closed
    if ok:
      interval = _interval(lo, hi, lo_closed, hi_closed)
      if interval is not None:
        return RealSet(interval)
  return Relation(tuple(ops), tuple(parsed))


_REALS_RE = re.compile(r"^(?:\\mathbb\s*\{?\s*R\s*\}?|\\Bbb\s*\{?\s*R\s*\}?|\\R)$")
# ``\{x : ...\}``, ``\{x \mid ...\}``, ``\{x \in \mathbb{R} \mid ...\}``: set-builder notation.
_SET_BUILDER_RE = re.compile(
    r"^([a-zA-Z])\s*(?:\\in\s*(?:\\mathbb\s*\{?\s*R\s*\}?|\\R)\s*)?(?::|\\mid|\\vert|\|)\s*(.+)$",
    re.DOTALL)
_OR_RE = re.compile(r"\\text\{\s*or\s*\}|\\lor(?![a-zA-Z])|\\vee(?![a-zA-Z])")
_AND_RE = re.compile(r"\\text\{\s*and\s*\}|\\land(?![a-zA-Z])|\\wedge(?![a-zA-Z])")


def _named_set(s: str) -> Optional[Answer]:
  """``\\mathbb{R}`` and "all real numbers" as the real line; set-builder sets as real sets."""
  if _REALS_RE.match(s) or (_is_words(_unwrap_text(s)) and text_key(s) in _REALS_WORDS):
    return RealSet(sympy.Reals)
  inner = _outer_group(s, "\\{", "\\}")
  m = _SET_BUILDER_RE.match(inner.strip()) if inner is not None else None
  if m is None:
    return None
  var, condition = m.groups()
  if not re.search(r"(?<![a-zA-Z\\])" + var + r"(?![a-zA-Z])", condition):
    return None
  value = parse(condition)
  return value if isinstance(value, RealSet) else Text(text_key(s))


def _combined_conditions(s: str) -> Optional[RealSet]:
  """``x < 2 or x > 5`` (a union) and ``x > 1 and x < 3`` (an intersection) of real sets."""
  for regex, word, combine in ((_OR_RE, " or ", sympy.Union),
                               (_AND_RE, " and ", sympy.Intersection)):
    parts = _split_top(regex.sub(word, s), (word,))
    if len(parts) > 1:
      sets = [parse(p) for p in parts]
      if all(isinstance(x, RealSet) for x in sets):
        return RealSet(combine(*[x.value for x in sets]))
  return None


def parse(text: str) -> Optional[Answer]:
  """Reads a normalised answer string into a structure; None for an empty answer."""
  s = text.strip()
  if not s:
    return None
  matrix = _parse_matrix(s)
  if matrix is not None:
    return matrix
  if s in ("\\emptyset", "\\varnothing", "\\{\\}", "\\{ \\}", "\\O"):
    return Seq("set", ())
  named = _named_set(s)
  if named is not None:
    return named
  combined = _combined_conditions(s)
  if combined is not None:
    return combined
  if _is_words(s) and _number_from_words(text_key(s)) is not None:
    return _parse_words(s)  # "one hundred and five" is one number, not a list.
  # Listed alternatives ("1 or 2", "1 \text{ and } 2") read as a list.
  s = re.sub(r"\\text\{\s*(?:or|and|,)\s*\}|\s+(?:or|and)\s+", ", ", s)
  for sign in ("\\pm", "\\mp"):
    if sign in s and not _is_words(s):
      first, second = ("+", "-") if sign == "\\pm" else ("-", "+")
      return Seq("list", (parse(s.replace(sign, first, 1)), parse(s.replace(sign, second, 1))))
  parts = _split_top(s, (",", ";"))
  if len(parts) > 1:
    items = tuple(parse(p) for p in parts)
    if any(x is None for x in items):
      return Text(text_key(s))
    return Seq("list", items)
  union = _split_top(s, ("\\cup",))
  if len(union) > 1:
    sets = [_to_real_set(parse(u)) for u in union]
    if all(x is not None for x in sets):
      return RealSet(sympy.Union(*sets))
    return Text(text_key(s))
  m = re.match(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?\s*\\in\s+(.+)$", s)
  if m:
    return parse(m.group(1))
  rel_ops = [(m.start(), m.end(), m.group()) for m in _REL_RE.finditer(s)]
  rel_ops = [r for r in rel_ops if len(_split_top(s[:r[0]] + "\x00" + s[r[1]:], ("\x00",))) == 2]
  if rel_ops:
    sides, ops, pos = [], [], 0
    for start, end, op in rel_ops:
      sides.append(s[pos:start])
      ops.append(_RELATIONS[op])
      pos = end
    sides.append(s[pos:])
    if any(not x.strip() for x in sides):
      return Text(text_key(s))
    if all(op == "=" for op in ops):
      if len(sides) == 2 and not _LABEL_RE.match(sides[0].strip()) and _LABEL_RE.match(
          sides[1].strip()):
        sides.reverse()  # ``5 = x`` names the quantity on the right: read it as ``x = 5``.
      label = _LABEL_RE.match(sides[0].strip())
      return Equation(tuple(parse(x) for x in sides),
                      re.sub(r"\s+", "", sides[0]) if label else None)
    return _relation(sides, ops)
  inner = _outer_group(s, "\\{", "\\}")
  if inner is not None:
    items = tuple(parse(p) for p in _split_top(inner, (",", ";")) if p.strip())
    return Seq("set", items)
  inner = _outer_group(s, "{", "}")
  if inner is not None and len(_split_top(inner, (",",))) > 1:
    # ``{1, 2, 3}``: a set written without the backslashes.
    return Seq("set", tuple(parse(p) for p in _split_top(inner, (",",)) if p.strip()))
  inner = _outer_group(s, "\\langle", "\\rangle")
  if inner is not None:
    return Seq("tuple", tuple(parse(p) for p in _split_top(inner, (",",))))
  bracket = _interval_inner(s)
  if bracket is not None:
    inner, left_closed, right_closed = bracket
    items = _split_top(inner, (",",))
    if len(items) == 2:
      lo, hi = parse(items[0]), parse(items[1])
      if (s[0], s[-1]) == ("(", ")"):
        return Seq("pair", (lo, hi))
      if isinstance(lo, Scalar) and isinstance(hi, Scalar):
        interval = _interval(lo.expr, hi.expr, left_closed, right_closed)
        if interval is not None:
          return RealSet(interval)
      return Seq("tuple", (lo, hi))
    if len(items) > 2:
      return Seq("tuple", tuple(parse(p) for p in items))
  return _parse_scalar(s)


# ----------------------------------------------------------------------------------------------
# Equivalence


def _has_nonfinite(e: sympy.Expr) -> bool:
  return bool(e.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan))


# Evaluation precisions (decimal digits) of the two numeric passes of :func:`constant_equal`, and
# the relative size below which a difference counts as zero in each. A difference is "zero" only
# if it vanishes at both, so two constants that differ by more than 1e-110 relative never compare
# equal; rationals (all integers, fractions and decimals) never reach this test.
_ZERO_PASSES = ((60, sympy.Rational(1, 10**50)), (120, sympy.Rational(1, 10**110)))


def _terms(e: sympy.Expr) -> tuple:
  return e.args if isinstance(e, sympy.Add) else (e,)


def constant_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
  """Exact equality of two finite constants (no free symbols), never through float64.

  Rationals (integers, fractions, decimals read exactly) compare as rationals, so
  ``12345678901234568`` is not ``12345678901234567`` and ``1 + 10^{-30}`` is not ``1``. Sympy
  cancels most other differences exactly (``\\sqrt8 - 2\\sqrt2``, ``\\pi + 10^{-40} - \\pi``);
  what it leaves (``\\sqrt{5+2\\sqrt6} - \\sqrt2 - \\sqrt3``) must vanish relative to the size of
  the terms at 60 and at 120 digits (``_ZERO_PASSES``): ``e^{\\pi\\sqrt{163}}`` differs from
  ``262537412640768744`` by 7.5e-13 and is not equal.
  """
  if a == b:
    return True
  if a.is_Rational and b.is_Rational:
    return False
  diff = a - b
  if diff.is_Rational:
    return diff == 0
  for digits, rel in _ZERO_PASSES:
    value = sympy.N(diff, digits)
    if not value.is_number or _has_nonfinite(value):
      return False
    scale = max([abs(sympy.N(t, 30)) for t in _terms(a) + _terms(b)] + [sympy.Integer(0)])
    if abs(value) > rel * scale:
      return False
  return True


def _random_points(symbols, opts: Options):
  """``opts.num_points`` reproducible random real points (rationals in [-2.9, 3.1], never 0)."""
  rng = random.Random(opts.seed)
  for _ in range(opts.num_points):
    yield {s: sympy.Rational(rng.randint(-2900, 3100), 1000) or sympy.Rational(7, 10)
           for s in symbols}


def _finite_constant(e: sympy.Expr) -> bool:
  return bool(e.is_number) and not _has_nonfinite(e) and not _has_nonfinite(sympy.N(e, 15))


def expr_equal(a: sympy.Expr, b: sympy.Expr, opts: Options) -> bool:
  """Exact equality of two expressions.

  Constants compare by :func:`constant_equal`. With free symbols the two sides are compared
  exactly at ``opts.num_points`` random rational points (over the union of their symbols, so
  ``\\sin^2 x + \\cos^2 x`` equals ``1`` and ``x + y`` does not equal ``x + z``; real points, so
  ``\\sqrt{x^2}`` is not ``x``); when fewer than three points give finite values on both sides,
  ``sympy.simplify(a - b) == 0`` decides.
  """
  if a == b:
    return True
  if _has_nonfinite(a) or _has_nonfinite(b):
    return False
  if not a.free_symbols and not b.free_symbols:
    return _finite_constant(a) and _finite_constant(b) and constant_equal(a, b)
  symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
  valid = 0
  for point in _random_points(symbols, opts):
    va, vb = a.subs(point), b.subs(point)
    if not (_finite_constant(va) and _finite_constant(vb)):
      continue
    valid += 1
    if not constant_equal(va, vb):
      return False
  if valid >= 3:
    return True
  return bool(sympy.simplify(a - b) == 0)


def _constant_ratio(a: sympy.Expr, b: sympy.Expr, opts: Options) -> bool:
  """Whether ``a = k * b`` for a constant ``k != 0`` (the same equation ``a = 0``, ``b = 0``).

  The ratio must be exactly the same non-zero number at every random point where both sides are
  finite and ``b`` is not zero (at least three points).
  """
  symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
  ratios = []
  for point in _random_points(symbols, opts):
    va, vb = a.subs(point), b.subs(point)
    if not (_finite_constant(va) and _finite_constant(vb)) or constant_equal(vb, sympy.Integer(0)):
      continue
    ratios.append(va / vb)
  if len(ratios) < 3 or constant_equal(ratios[0], sympy.Integer(0)):
    return False
  return all(constant_equal(r, ratios[0]) for r in ratios[1:])


# A trailing percent or degree sign is a scale: 25% is 25/100, 45 degrees is 45*pi/180.
_MARK_SCALE = {"percent": sympy.Rational(1, 100), "degree": sympy.pi / 180}


def _mark(x: Scalar) -> Optional[str]:
  return "percent" if x.percent else "degree" if x.degree else None


def _readings(x: Scalar, other: Scalar) -> List[tuple]:
  """The ``(value, ulp)`` pairs a scalar may denote when compared with ``other``.

  Percent and degree signs: when both sides carry the same sign, the numbers compare as written
  (``25\\%`` vs ``25\\%``). When only one side carries it, that side may mean the scaled value
  (``25\\%`` is ``0.25``, ``45^\\circ`` is ``\\pi/4``) or the number with the sign dropped (``25``,
  ``45``). The sign is never read both ways on both sides, so ``0.25\\%`` and ``2500\\%`` (100x too
  small or large) do not match ``25\\%``.
  """
  out = [(x.expr, x.ulp)]
  mark = _mark(x)
  if mark is not None and mark != _mark(other):
    factor = _MARK_SCALE[mark]
    out.append((x.expr * factor, None if x.ulp is None else x.ulp * factor))
  return out


def _within(a: sympy.Expr, b: sympy.Expr, bound: sympy.Expr) -> bool:
  """``|a - b| <= bound`` for constants, exactly for rationals, at 60 digits otherwise."""
  diff = a - b
  if diff.is_Rational and bound.is_Rational:
    return abs(diff) <= bound
  value = sympy.N(diff, 60)
  return bool(value.is_number) and not _has_nonfinite(value) and bool(
      abs(value) <= sympy.N(bound, 60))


def _rounds_to(value: sympy.Expr, gold: sympy.Expr, ulp: sympy.Expr) -> bool:
  """Whether ``value`` rounded to a multiple of ``ulp`` is ``gold``.

  Within half a unit; an exact tie (``0.65`` to tenths) counts when either common rule gives the
  gold: half away from zero (``0.7``) or half to even (``0.6``). ``0.75`` rounds to ``0.8`` under
  both, so it does not match ``0.7``.
  """
  if not _within(value, gold, ulp / 2):
    return False
  diff = value - gold
  if not (diff.is_Rational and ulp.is_Rational and abs(diff) == ulp / 2):
    return True
  steps = gold / ulp
  return bool(abs(gold) > abs(value)) or (steps.is_Integer and steps % 2 == 0)


def _finite_decimal(e: sympy.Expr) -> bool:
  """A rational whose decimal expansion terminates (denominator 2^a 5^b)."""
  if not e.is_Rational:
    return False
  q = int(e.q)
  for f in (2, 5):
    while q % f == 0:
      q //= f
  return q == 1


def _reading_equal(pv, pulp, gv, gulp, p: Scalar, g: Scalar, opts: Options) -> bool:
  """One reading of each side; the numeric policy of :func:`scalar_equal`."""
  if expr_equal(pv, gv, opts):
    return True
  if pv.free_symbols or gv.free_symbols or not (_finite_constant(pv) and _finite_constant(gv)):
    return False
  if gulp is not None:
    # A decimal gold is the true value rounded to its last digit: the answer must be at least
    # as precise and round to it.
    return (pulp is None or bool(pulp <= gulp)) and _rounds_to(pv, gv, gulp)
  if opts.rel_tol is not None and (p.decimal or g.decimal) and not (
      _finite_decimal(pv) and _finite_decimal(gv)):
    return _within(pv, gv, opts.rel_tol * max(abs(pv), abs(gv)))
  return False


def scalar_equal(p: Scalar, g: Scalar, opts: Options) -> bool:
  """Scalar equality under the numeric policy.

  * Values compare exactly (:func:`expr_equal`): integers and fractions as rationals, decimals
    read as the rationals they write (``0.5`` = ``1/2``, ``4.0`` = ``4``, ``4.01`` != ``4``).
  * An exact gold (integer, fraction, radical, multiple of pi, expression) needs the exact
    value: ``0.3333``, ``1.414`` and ``3.1416`` do not match ``1/3``, ``\\sqrt2``, ``\\pi``.
  * A gold that is one decimal numeral states its precision (``3.14``: hundredths). An answer
    matches it if it is at least that precise (a decimal with as many or more digits, or an exact
    value) and rounds to it: ``3.1416`` and ``\\pi`` match ``3.14``; ``3.1`` and ``3.15`` do not.
  * Percent and degree signs: see :func:`_readings`.
  * ``opts.rel_tol`` (off by default) adds a relative tolerance for decimals against values
    without a finite decimal expansion.
  """
  for pv, pulp in _readings(p, g):
    for gv, gulp in _readings(g, p):
      if _reading_equal(pv, pulp, gv, gulp, p, g, opts):
        return True
  return False


def _is_constant(a: Answer) -> bool:
  return isinstance(a, Scalar) and not a.expr.free_symbols


def _chain_equal(p: Equation, g: Answer, opts: Options) -> bool:
  """``x = 5``, ``f(x) = x^2``, ``2+3 = 5``, ``x = 2+3 = 5`` against the gold value ``g``.

  The last side is the answer; the first side must be a label (see ``Equation.label``) or a
  constant, and every constant side must equal the gold too (so ``4 = 40`` matches neither).
  """
  first, last = p.sides[0], p.sides[-1]
  if not (p.label is not None or _is_constant(first)) or not equal(last, g, opts):
    return False
  return all(equal(x, g, opts) for x in p.sides[:-1] if _is_constant(x))


def _unordered_equal(ps: Sequence[Answer], gs: Sequence[Answer], opts: Options) -> bool:
  if len(ps) != len(gs):
    return False
  remaining = list(ps)
  for g in gs:
    for k, p in enumerate(remaining):
      if equal(p, g, opts):
        del remaining[k]
        break
    else:
      return False
  return True


def _ordered_equal(ps: Sequence[Answer], gs: Sequence[Answer], opts: Options) -> bool:
  return len(ps) == len(gs) and all(equal(p, g, opts) for p, g in zip(ps, gs))


def _intervals_equal(p: sympy.Set, g: sympy.Set, opts: Options) -> bool:
  if p == g:
    return True
  pa = p.args if isinstance(p, sympy.Union) else (p,)
  ga = g.args if isinstance(g, sympy.Union) else (g,)
  if len(pa) != len(ga):
    return False
  for x, y in zip(pa, ga):
    if type(x) is not type(y):
      return False
    if isinstance(x, sympy.Interval):
      if (x.left_open, x.right_open) != (y.left_open, y.right_open):
        return False
      if not (expr_equal(x.start, y.start, opts) and expr_equal(x.end, y.end, opts)):
        return False
    elif x != y:
      return False
  return True


def equal(p: Optional[Answer], g: Optional[Answer], opts: Options) -> bool:
  """Whether prediction ``p`` matches gold ``g`` (not symmetric: see docs/rewards.md)."""
  if p is None or g is None:
    return False
  if isinstance(g, Text) or isinstance(p, Text):
    return isinstance(p, Text) and isinstance(g, Text) and p.key == g.key
  if isinstance(p, Equation) and not isinstance(g, Equation):
    # ``x = 5``, ``(x, y) = (1, 2)``, ``2+3 = 5`` for a gold value.
    return _chain_equal(p, g, opts)
  if isinstance(g, Scalar):
    if isinstance(p, Scalar):
      return scalar_equal(p, g, opts)
    if isinstance(p, Seq) and p.kind in ("set", "list") and len(p.items) == 1:
      return equal(p.items[0], g, opts)
    return False
  if isinstance(g, Equation):
    if isinstance(p, Equation) and p.label is not None and p.label == g.label:
      return _chain_equal(p, g.sides[-1], opts)
    if isinstance(p, Equation) and g.label is not None and _is_constant(g.sides[-1]):
      # A solved gold (``x = 3``) needs a solved answer: ``2x = 6`` is the same equation but
      # leaves the work undone.
      return False
    if isinstance(p, Equation):
      if len(p.sides) == 2 and len(g.sides) == 2 and all(
          isinstance(x, Scalar) for x in p.sides + g.sides):
        # Same equation up to a non-zero constant factor: (pl - pr) = k (gl - gr).
        pd = p.sides[0].expr - p.sides[1].expr
        gd = g.sides[0].expr - g.sides[1].expr
        if gd == 0 or pd == 0:
          return False
        return _constant_ratio(pd, gd, opts)
      return _ordered_equal(p.sides, g.sides, opts)
    if g.label is not None:
      return equal(p, g.sides[-1], opts)
    return False
  if isinstance(g, RealSet):
    ps = _to_real_set(p)
    return ps is not None and _intervals_equal(ps, g.value, opts)
  if isinstance(g, Relation):
    if not isinstance(p, Relation):
      return False
    if p.ops == g.ops:
      return _ordered_equal(p.sides, g.sides, opts)
    flip = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "!=": "!="}
    if tuple(flip.get(o, o) for o in reversed(p.ops)) == g.ops:
      return _ordered_equal(tuple(reversed(p.sides)), g.sides, opts)
    return False
  if isinstance(g, Seq):
    if isinstance(p, Scalar) and len(g.items) == 1:
      return equal(p, g.items[0], opts)
    if g.kind in ("pair", "tuple") and isinstance(p, Matrix):
      if len(p.rows) == 1 or all(len(r) == 1 for r in p.rows):
        return _ordered_equal([x for r in p.rows for x in r], g.items, opts)
      return False
    if g.kind == "pair":
      if isinstance(p, Seq) and p.kind in ("pair", "tuple", "list"):
        return _ordered_equal(p.items, g.items, opts)
      gs = _to_real_set(g)
      ps = _to_real_set(p)
      return gs is not None and ps is not None and _intervals_equal(ps, gs, opts)
    if g.kind == "tuple":
      return isinstance(p, Seq) and p.kind in ("pair", "tuple", "list") and _ordered_equal(
          p.items, g.items, opts)
    # Gold set or bare list: order does not matter; a tuple is not a set, but a bare list gold
    # may be an unbracketed tuple, so a bracketed prediction must then keep its order.
    if isinstance(p, Seq):
      if p.kind in ("set", "list"):
        return _unordered_equal(p.items, g.items, opts)
      if g.kind == "list":
        return _ordered_equal(p.items, g.items, opts)
      return False
    if isinstance(p, RealSet) and g.kind == "set":
      gs = _to_real_set(g)
      return gs is not None and _intervals_equal(p.value, gs, opts)
    return False
  if isinstance(g, Matrix):
    if isinstance(p, Matrix):
      return len(p.rows) == len(g.rows) and all(
          _ordered_equal(pr, gr, opts) for pr, gr in zip(p.rows, g.rows))
    if isinstance(p, Seq) and p.kind in ("tuple", "pair") and (
        len(g.rows) == 1 or all(len(r) == 1 for r in g.rows)):
      return _ordered_equal(p.items, [x for r in g.rows for x in r], opts)
    return False
  return False
