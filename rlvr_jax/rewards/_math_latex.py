"""A small LaTeX / plain-text expression parser that builds sympy expressions.

Private helper of :mod:`rlvr_jax.rewards.math`. It reads the *expression* part of a final answer
(structure such as tuples, sets, intervals and equations is split off before), for example
``\\frac{3}{4}``, ``2\\sqrt{3}+1``, ``3\\times 10^{5}``, ``\\binom{5}{2}``, ``x^2-1``, ``3+4i``,
``\\sin^2 x``, ``|x|``, ``2\\frac12`` and ``2 1/2`` (mixed numbers), ``{7 \\over 9}``, ``2.5e-3``.

Why our own parser rather than ``sympy.parsing.latex`` or ``latex2sympy2_extended``: no ANTLR
runtime (the two need different, conflicting pinned versions), no ``eval`` of model text, and
explicit guards against values that cannot be materialised (``10^{10^{10}}`` raises
:class:`TooLarge` at once instead of allocating a ten-billion-digit integer).

Conventions (documented in ``docs/rewards.md``): decimals become exact rationals (the caller is told
that a decimal was present, to apply its tolerance); ``e`` is Euler's number and ``i`` the imaginary
unit; other letters are symbols; juxtaposition multiplies; an integer directly followed by a proper
fraction of integers is a mixed number, and so is an integer followed, after a space, by a proper
fraction ``p/q`` of integer numerals; two numerals separated only by a space are not an expression.
"""

from __future__ import annotations

import math
import re
from typing import List, Optional, Tuple

import sympy

# Largest integer, in decimal digits, that an answer may denote; larger values raise TooLarge.
MAX_DIGITS = 10_000
_MAX_FACTORIAL = 2_000
_MAX_SYMBOLIC_EXPONENT = 10_000


class ParseError(ValueError):
  """The text is not an expression this parser understands."""


class TooLarge(ParseError):
  """The expression denotes a number too large to materialise safely."""


_TOKEN_RE = re.compile(
    r"(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+(?![a-zA-Z\d]))?)"
    r"|(?P<cmd>\\(?:[a-zA-Z]+|[^a-zA-Z\s]))"
    r"|(?P<id>[a-zA-Z])"
    r"|(?P<op>[-+*/^_!()\[\]{}|,=<>'])"
    r"|(?P<ws>\s+)")

_FRAC = {"\\frac", "\\dfrac", "\\tfrac", "\\cfrac"}
_BINOM = {"\\binom", "\\dbinom", "\\tbinom"}
_FUNCS = {
    "\\sin": sympy.sin, "\\cos": sympy.cos, "\\tan": sympy.tan, "\\cot": sympy.cot,
    "\\sec": sympy.sec, "\\csc": sympy.csc, "\\arcsin": sympy.asin, "\\arccos": sympy.acos,
    "\\arctan": sympy.atan, "\\sinh": sympy.sinh, "\\cosh": sympy.cosh, "\\tanh": sympy.tanh,
    "\\ln": sympy.log, "\\exp": sympy.exp, "\\log": None,
}
_INVERSE = {sympy.sin: sympy.asin, sympy.cos: sympy.acos, sympy.tan: sympy.atan}
GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
    "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon",
    "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma",
    "Phi", "Psi", "Omega",
}
_MUL_OPS = {"*", "\\cdot", "\\times", "\\ast"}
_DIV_OPS = {"/", "\\div"}


def tokenize(text: str) -> List[Tuple[str, str]]:
  """Splits ``text`` into ``(kind, text)`` tokens; kinds: num, cmd, id, op."""
  tokens = []
  pos = 0
  while pos < len(text):
    m = _TOKEN_RE.match(text, pos)
    if m is None:
      raise ParseError(f"unexpected character {text[pos]!r}")
    pos = m.end()
    if m.lastgroup != "ws":
      tokens.append((m.lastgroup, m.group()))
  return tokens


def _check_size(value: sympy.Expr) -> sympy.Expr:
  if value.is_Integer and abs(value) > 0 and value.p.bit_length() > MAX_DIGITS * 3.33:
    raise TooLarge("integer too large")
  return value


def _log10_abs(value: sympy.Rational) -> float:
  """log10 of a non-zero rational's magnitude, without float overflow (bit lengths)."""
  num, den = abs(int(value.p)), int(value.q)
  return (num.bit_length() - den.bit_length()) * math.log10(2)


def _safe_pow(base: sympy.Expr, exp: sympy.Expr) -> sympy.Expr:
  """``base ** exp`` unless that would materialise a huge number (then TooLarge)."""
  if exp.is_Rational and base.is_Rational and base != 0:
    # Digits of the result ~ |exp| * |log10 base|; +1 covers bases within a factor 2 of 1.
    if abs(float(exp)) * (abs(_log10_abs(base)) + 1) > MAX_DIGITS:
      raise TooLarge("power too large")
  elif exp.is_Number and abs(exp) > _MAX_SYMBOLIC_EXPONENT:
    raise TooLarge("exponent too large")
  return _check_size(sympy.Pow(base, exp))


class _Parser:
  """Recursive-descent parser over the token list; one instance per expression."""

  def __init__(self, tokens: List[Tuple[str, str]]):
    self.toks = tokens
    self.i = 0
    self.abs_depth = 0
    self.saw_decimal = False

  # -- token helpers -----------------------------------------------------------------------
  def peek(self, offset: int = 0) -> Optional[Tuple[str, str]]:
    j = self.i + offset
    return self.toks[j] if j < len(self.toks) else None

  def peek_text(self, offset: int = 0) -> Optional[str]:
    t = self.peek(offset)
    return t[1] if t else None

  def peek_kind(self) -> Optional[str]:
    t = self.peek()
    return t[0] if t else None

  def take(self) -> Tuple[str, str]:
    if self.i >= len(self.toks):
      raise ParseError("unexpected end of input")
    t = self.toks[self.i]
    self.i += 1
    return t

  def expect(self, text: str) -> None:
    t = self.take()
    if t[1] != text:
      raise ParseError(f"expected {text!r}, got {t[1]!r}")

  # -- grammar -----------------------------------------------------------------------------
  def parse(self) -> sympy.Expr:
    value = self.over_expr()
    if self.i != len(self.toks):
      raise ParseError(f"trailing input at {self.peek_text()!r}")
    return value

  def over_expr(self) -> sympy.Expr:
    """An expression, or TeX's infix fraction ``a \\over b`` (it divides its whole group)."""
    value = self.expr()
    if self.peek_text() == "\\over":
      self.take()
      den = self.expr()
      if den == 0:
        raise ParseError("division by zero")
      value = value / den
    return value

  def expr(self) -> sympy.Expr:
    value = self.term()
    while self.peek_text() in ("+", "-"):
      op = self.take()[1]
      rhs = self.term()
      value = value + rhs if op == "+" else value - rhs
    return value

  def term(self) -> sympy.Expr:
    start = self.i
    value = self.unary()
    # A mixed number needs the whole part to be one integer numeral, optionally negated.
    consumed = [k for k, _ in self.toks[start:self.i]]
    bare_integer = value.is_Integer and consumed in (["num"], ["op", "num"])
    while True:
      t = self.peek_text()
      if t in _MUL_OPS:
        self.take()
        value = value * self.unary()
      elif t in _DIV_OPS:
        self.take()
        den = self.unary()
        if den == 0:
          raise ParseError("division by zero")
        value = value / den
      elif self.peek_kind() == "num" and self.toks[self.i - 1][0] == "num":
        # Two numerals side by side were separated by a space ("2 1/2", "12 13"): a mixed number
        # when a proper fraction of integers follows a whole number, otherwise not an expression
        # (juxtaposition would read "12 13" as 156).
        mixed = self.try_plain_mixed_number(value) if bare_integer else None
        if mixed is None:
          raise ParseError("two numerals side by side")
        value = mixed
      elif self.starts_primary():
        if bare_integer and t in _FRAC:
          mixed = self.try_mixed_number(value)
          if mixed is not None:
            value = mixed
            bare_integer = False
            continue
        value = value * self.power()
      else:
        return _check_size(value)
      bare_integer = False

  def try_mixed_number(self, whole: sympy.Integer) -> Optional[sympy.Expr]:
    """``2\\frac{1}{2}`` -> 5/2 when the fraction is a proper fraction of integers."""
    start = self.i
    frac = self.power()
    num, den = sympy.fraction(frac)
    if (frac.is_Rational and 0 < frac < 1 and num.is_Integer and den.is_Integer
        and self.peek_text() not in ("^",)):
      return whole + frac if whole >= 0 else whole - frac
    self.i = start
    return None

  def try_plain_mixed_number(self, whole: sympy.Integer) -> Optional[sympy.Expr]:
    """``2 1/2`` -> 5/2: an integer, a space, then a proper fraction ``p/q`` of integer numerals."""
    window = self.toks[self.i:self.i + 4]
    if len(window) < 3 or [k for k, _ in window[:3]] != ["num", "op", "num"] or \
        window[1][1] != "/" or not (window[0][1].isdigit() and window[2][1].isdigit()):
      return None
    if len(window) == 4 and window[3][1] in ("^", "!", "/"):
      return None
    num, den = int(window[0][1]), int(window[2][1])
    if not 0 < num < den:
      return None
    self.i += 3
    frac = sympy.Rational(num, den)
    return whole + frac if whole >= 0 else whole - frac

  def unary(self) -> sympy.Expr:
    t = self.peek_text()
    if t == "-":
      self.take()
      return -self.unary()
    if t == "+":
      self.take()
      return self.unary()
    return self.power()

  def power(self) -> sympy.Expr:
    base = self.postfix()
    if self.peek_text() == "^":
      self.take()
      exp = self.exponent()
      return _safe_pow(base, exp)
    return base

  def exponent(self) -> sympy.Expr:
    t = self.peek_text()
    if t == "{":
      return self.group("{", "}")
    if t in ("-", "+"):
      self.take()
      e = self.exponent()
      return -e if t == "-" else e
    return self.postfix()

  def postfix(self) -> sympy.Expr:
    value = self.primary()
    while self.peek_text() == "!":
      self.take()
      if not (value.is_Integer and 0 <= value <= _MAX_FACTORIAL):
        raise TooLarge("factorial of a non-integer or a large integer")
      value = sympy.factorial(value)
    return value

  def group(self, open_: str, close: str) -> sympy.Expr:
    self.expect(open_)
    saved_depth, self.abs_depth = self.abs_depth, 0
    value = self.over_expr() if open_ == "{" else self.expr()
    self.abs_depth = saved_depth
    self.expect(close)
    return value

  def argument(self) -> sympy.Expr:
    """A command argument: ``{...}``, or one token as in ``\\frac12`` / ``\\sqrt2``."""
    t = self.peek()
    if t is None:
      raise ParseError("missing argument")
    if t[1] == "{":
      return self.group("{", "}")
    if t[0] == "num":
      self.take()
      # ``\frac12`` means 1/2: a bare numeric argument is a single digit.
      digits = t[1]
      if len(digits) > 1 and digits.isdigit():
        self.toks[self.i - 1] = ("num", digits[1:])
        self.i -= 1
        return sympy.Integer(digits[0])
      return self.number(digits)
    if t[0] in ("id", "cmd"):
      return self.primary()
    raise ParseError(f"bad argument {t[1]!r}")

  def starts_primary(self) -> bool:
    t = self.peek()
    if t is None:
      return False
    kind, text = t
    if kind in ("num", "id"):
      return True
    if text in ("(", "{", "["):
      return True
    if text == "|":
      return self.abs_depth == 0
    if kind == "cmd":
      return text not in _MUL_OPS and text not in _DIV_OPS and text not in (
          "\\rfloor", "\\rceil", "\\right", "\\pm", "\\mp", "\\over")
    return False

  def number(self, text: str) -> sympy.Expr:
    if len(text) > MAX_DIGITS:
      raise TooLarge("numeral too long")
    if "." in text or "e" in text.lower():
      self.saw_decimal = True
      mantissa, _, exp = text.lower().partition("e")
      if exp and abs(int(exp)) > MAX_DIGITS:
        raise TooLarge("exponent too large")
      value = sympy.Rational(mantissa if mantissa != "." else "0")
      if exp:
        value = value * sympy.Integer(10) ** int(exp)
      return value
    return sympy.Integer(text)

  def primary(self) -> sympy.Expr:
    kind, text = self.take()
    if kind == "num":
      return self.number(text)
    if kind == "id":
      return self.subscripted(text)
    if text == "(":
      self.i -= 1
      return self.group("(", ")")
    if text == "[":
      self.i -= 1
      return self.group("[", "]")
    if text == "{":
      self.i -= 1
      return self.group("{", "}")
    if text == "|":
      self.abs_depth += 1
      value = self.expr()
      self.expect("|")
      self.abs_depth -= 1
      return sympy.Abs(value)
    if kind == "cmd":
      return self.command(text)
    raise ParseError(f"unexpected {text!r}")

  def subscripted(self, letter: str) -> sympy.Expr:
    if self.peek_text() == "_":
      self.take()
      t = self.take()
      if t[1] == "{":
        sub = []
        while self.peek_text() not in ("}", None):
          sub.append(self.take()[1])
        self.expect("}")
        name = f"{letter}_{''.join(sub)}"
      else:
        name = f"{letter}_{t[1]}"
      return sympy.Symbol(name)
    if letter == "e":
      return sympy.E
    if letter == "i":
      return sympy.I
    return sympy.Symbol(letter)

  def command(self, name: str) -> sympy.Expr:
    if name in _FRAC:
      num = self.argument()
      den = self.argument()
      if den == 0:
        raise ParseError("division by zero")
      return num / den
    if name == "\\sqrt":
      index = sympy.Integer(2)
      if self.peek_text() == "[":
        index = self.group("[", "]")
      radicand = self.argument()
      return _check_size(sympy.root(radicand, index))
    if name in _BINOM:
      n, k = self.argument(), self.argument()
      if n.is_Integer and n > _MAX_FACTORIAL:
        raise TooLarge("binomial too large")
      return sympy.binomial(n, k)
    if name == "\\pi":
      return sympy.pi
    if name == "\\infty":
      return sympy.oo
    if name in ("\\lfloor", "\\lceil"):
      value = self.expr()
      self.expect("\\rfloor" if name == "\\lfloor" else "\\rceil")
      return sympy.floor(value) if name == "\\lfloor" else sympy.ceiling(value)
    if name in ("\\mathrm", "\\mathit", "\\operatorname", "\\mathbf"):
      self.expect("{")
      word = []
      while self.peek_text() not in ("}", None):
        word.append(self.take()[1])
      self.expect("}")
      word = "".join(word)
      if word in ("e", "i"):
        return sympy.E if word == "e" else sympy.I
      if "\\" + word in _FUNCS:
        return self.function("\\" + word)
      if re.fullmatch(r"[a-zA-Z]", word):
        return sympy.Symbol(word)
      raise ParseError(f"unknown word {word!r}")
    if name in _FUNCS:
      return self.function(name)
    if name[1:] in GREEK:
      return sympy.Symbol(name[1:])
    raise ParseError(f"unsupported command {name}")

  def function(self, name: str) -> sympy.Expr:
    fn = _FUNCS[name]
    base = None
    if name == "\\log":
      if self.peek_text() == "_":
        self.take()
        base = self.argument()
      fn = (lambda x: sympy.log(x, base)) if base is not None else sympy.log
    power = None
    if self.peek_text() == "^":
      self.take()
      power = self.exponent()
    if self.peek_text() in ("(", "\\left"):
      arg = self.group("(", ")")
    else:
      # ``\sin 2x`` applies to the juxtaposed product ``2x``, not to ``2`` alone.
      arg = self.power()
      while self.starts_primary() and self.peek_text() not in _FUNCS:
        arg = arg * self.power()
    if power is not None and power == -1 and fn in _INVERSE:
      return _INVERSE[fn](arg)
    value = fn(arg)
    return _safe_pow(value, power) if power is not None else value


def parse_expression(text: str) -> Tuple[sympy.Expr, bool]:
  """Parses one expression.

  Args:
    text: normalised LaTeX or plain-text math (no ``$``, ``\\left``, units or ``\\%``).

  Returns:
    ``(expr, saw_decimal)``: the sympy expression and whether a decimal numeral occurred in it.

  Raises:
    ParseError: the text is not a supported expression.
    TooLarge: the expression denotes a number above ``MAX_DIGITS`` digits.
  """
  tokens = tokenize(text)
  if not tokens:
    raise ParseError("empty expression")
  parser = _Parser(tokens)
  try:
    value = parser.parse()
  except (TypeError, ZeroDivisionError, RecursionError, sympy.SympifyError) as e:
    raise ParseError(f"{type(e).__name__}: {e}") from e
  if not isinstance(value, sympy.Expr):
    raise ParseError("not an expression")
  return value, parser.saw_decimal
