"""Tests for rlvr_jax.rewards.math: extraction policy, equivalence rules, time bound, the suite.

Expected values are written by hand from the policy in docs/rewards.md, not produced by the code.
The labelled suite (tests/data/math_verifier_cases.jsonl) runs through the batched, parallel
verifier, exactly as the trainer calls it. So does the out-of-sample suite
(tests/rewards/math_out_of_sample.jsonl: answers written in the style of model outputs and real
SmolLM2-135M outputs, labelled by hand before the verifier ran on them), against floors on
precision and recall rather than exact agreement.
"""

import collections
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from rlvr_jax.rewards import math as rmath
from rlvr_jax.rewards import workers

_SUITE = os.path.join(os.path.dirname(__file__), "..", "data", "math_verifier_cases.jsonl")
_OUT_OF_SAMPLE = os.path.join(os.path.dirname(__file__), "math_out_of_sample.jsonl")
_SLACK_S = 3.0


@pytest.fixture(scope="module")
def pool():
  with workers.WorkerPool(num_workers=2, timeout_s=5.0) as p:
    # Warm both workers (their first item imports sympy) so that timings below measure the
    # verification and the kill, not the import.
    rmath.verify_batch(["\\boxed{1}"] * 2, ["1"] * 2, pool=p)
    yield p


@pytest.fixture(scope="module")
def warm_shared_pool():
  assert rmath.verify("\\boxed{1}", "1")


# ---------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize("completion, expected", [
    (r"so $\boxed{5}$.", "5"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
    (r"\fbox{12}", "12"),
    (r"\boxed 7", "7"),
    (r"first \boxed{5}, then I fixed it: \boxed{7}", "7"),
    (r"\boxed{2} and \boxed{3}", "2, 3"),
    (r"$\boxed{-1}, \boxed{4}$", "-1, 4"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    ("The answer is $\\frac{3}{4}$. Next sentence.", "$\\frac{3}{4}$"),
    ("Therefore the final answer is 3.5.", "3.5"),
    ("blah\n#### 1,234\n", "1,234"),
    ("work\n**Final Answer:** 42", "42"),
    ("Answer: B", "B"),
    ("done\nAnswer $\\frac{7}{2}$", "$\\frac{7}{2}$"),
    ("<think>\\boxed{1}</think> so the answer is 2.", "2"),
])
def test_extract_answer(completion, expected):
  assert rmath.extract_answer(completion) == expected


@pytest.mark.parametrize("completion", [
    r"\boxed{}",
    r"\boxed{ }",
    r"\boxed{5",
    r"\boxed{7} then \boxed{",          # The last box is unbalanced: no fallback to 7.
    r"\def\x{4} \boxed{\x}",
    r"\newcommand{\four}{4} \boxed{4}",
    r"\let\a=4 \boxed{4}",
    "We get x = 6, so y = 10.",          # No final-answer marker.
    "<think>\\boxed{9}</think> I am not sure.",
    "",
    r"\boxed{" + "1+" * 1000 + "1}",      # Longer than max_answer_chars.
])
def test_extract_answer_refuses(completion):
  assert rmath.extract_answer(completion) is None


def test_extract_answer_type_check():
  with pytest.raises(TypeError):
    rmath.extract_answer(None)


# ---------------------------------------------------------------------------------------------
# Equivalence (in process: these inputs are benign)


@pytest.mark.parametrize("pred, gold", [
    ("1,000", "1000"), ("0.5", r"\frac{1}{2}"), (r"\dfrac{6}{8}", "3/4"), (r"2\frac{1}{2}", "2.5"),
    (r"25\%", "0.25"), ("25", r"25\%"), (r"2\sqrt{2}", r"\sqrt{8}"), ("x^2+2x+1", "(x+1)^2"),
    ("x=3", "3"), ("3", "x=3"), ("y=2x+1", "2x-y+1=0"), (r"(-\infty, 3]", r"x\le 3"),
    (r"\{3,1,2\}", r"\{1,2,3\}"), ("2, 1", "1, 2"),
    (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"),
    ("3+4i", "4i+3"), (r"\infty", "\u221e"), (r"10\text{ cm}", "10"), (r"45^\circ", r"\frac{\pi}{4}"),
    (r"3\times 10^{5}", "300000"), (r"\text{Monday}", "monday"), ("\u22125", "-5"),
    ("B", r"\text{(B)}"), ("(B) 42", "B"), (r"0.\overline{3}", r"\frac13"),
    (r"\sin^2 x+\cos^2 x", "1"), (r"\pm 2", r"\{-2, 2\}"),
    ("f(x) = x^2", "x^2"), ("(3, 2)", "(p, q) = (3, 2)"), ("|AB| = 5", "5"), (r"\theta = 2", "2"),
    ("11,\\!111", "11111"), ("28 pct", r"28\%"), ("{1, 2, 3}", r"\{3, 2, 1\}"),
])
def test_equivalent(pred, gold):
  assert rmath.is_equivalent(pred, gold)


@pytest.mark.parametrize("pred, gold", [
    ("40", "4"), ("4x", "4"), ("14", "4"), ("4.0001", "4"), ("0.33", r"\frac13"),
    ("0.333333", r"\frac13"),
    ("1, 2, 4", "4"), ("2, 4", "4"), (r"\pm 4", "4"), ("4 = 40", "4"), ("2x = 8", "4"),
    ("(1, 2)", "(2, 1)"), ("(1, 2)", r"\{1, 2\}"), (r"(-\infty, 3)", r"(-\infty, 3]"),
    (r"-\infty", r"\infty"), ("45", r"\frac{\pi}{4}"), ("3-4i", "3+4i"), (r"\sqrt{x^2}", "x"),
    ("A or B", "B"), ("A, B", "B"), ("(B)(C)", "B"), ("a cat", "A"), (r"4\text{ maybe five}", "4"), ("Tuesday", "Monday"), (r"5\%", "0.5"),
    (r"10^{10^{10}}", "10"), ("", "4"), ("4", ""), ("AB = 40", "4"), ("x = 2 = 3", "3"),
    ("2x = 6", "x = 3"),
])
def test_not_equivalent(pred, gold):
  assert not rmath.is_equivalent(pred, gold)


def test_rel_tol_is_an_opt_in():
  # Off by default: a decimal never matches an exact gold without a finite decimal expansion.
  assert not rmath.is_equivalent("3.1416", r"\pi")
  assert rmath.is_equivalent("3.14", r"\pi", rel_tol=1e-3)
  assert not rmath.is_equivalent("3.14", r"\pi", rel_tol=1e-4)
  # Values with finite decimal expansions are compared exactly whatever the tolerance.
  assert not rmath.is_equivalent("4.01", "4", rel_tol=1e-2)


# ---------------------------------------------------------------------------------------------
# Numeric policy (docs/rewards.md, "Numeric policy"): (prediction, gold, expected verdict).


@pytest.mark.parametrize("pred, gold, expected", [
    # Integers are exact at any size: no float64 rounding.
    ("12345678901234567", "12345678901234567", True),
    ("12345678901234568", "12345678901234567", False),
    ("100000000000000000001", "100000000000000001001", False),
    ("18446744073709551616", "2^{64}", True),
    ("18446744073709551615", "2^{64}", False),
    ("-12345678901234567", "12345678901234567", False),
    (r"10^{21}-1", "999999999999999999999", True),
    # Rationals are exact too.
    (r"\frac{100000000000000001}{300000000000000000}", r"\frac13", False),
    (r"\frac{200000000000000000}{600000000000000000}", r"\frac13", True),
    ("0.1 + 0.2", "0.3", True),
    ("4.0", "4", True), ("4.01", "4", False), ("7.0000001", "7", False),
])
def test_integers_and_rationals_are_exact(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("1 + 10^{-30}", "1", False),
    (r"\sqrt{2} + 10^{-40}", r"\sqrt{2}", False),
    (r"\pi + 10^{-100}", r"\pi", False),
    # e^(pi sqrt 163) is within 7.5e-13 of an integer (relative 3e-30).
    (r"e^{\pi\sqrt{163}}", "262537412640768744", False),
    # Exact identities that sympy does not cancel on its own are still equal.
    (r"\sqrt{5+2\sqrt{6}}", r"\sqrt{2}+\sqrt{3}", True),
    (r"\sin^2(1)+\cos^2(1)", "1", True),
])
def test_tiny_differences_are_not_equal(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    # An exact gold (fraction, radical, multiple of pi) needs the exact value: no truncations.
    ("0.333", r"\frac13", False), ("0.3333", r"\frac13", False), ("0.333333", r"\frac13", False),
    ("0.6667", r"\frac23", False), ("1.4142", r"\sqrt2", False), ("3.14159", r"\pi", False),
    ("31.42", r"10\pi", False),
    # ... but a decimal that writes the exact value matches.
    ("0.125", r"\frac18", True), (".5", r"\frac12", True), ("0.05", r"\frac{1}{20}", True),
    # A decimal gold states its precision: at least as precise and rounding to it matches.
    ("3.14", "3.14", True), ("3.1416", "3.14", True), (r"\pi", "3.14", True),
    (r"\frac23", "0.67", True), (r"2\pi", "6.3", True), (r"10\pi", "31.4159", True),
    ("3.1", "3.14", False), ("3.15", "3.14", False), (r"2\pi", "6.29", False),
    ("2.5", "2.50", True), ("2.50", "2.5", True), ("12.3", "12.30", True),
    # Ties: half away from zero or half to even, never half down.
    ("0.65", "0.7", True), ("0.65", "0.6", True), (r"\frac34", "0.7", False),
    ("0.75", "0.8", True), ("-0.75", "-0.8", True),
    # Scientific-notation golds state their precision too.
    (r"2.46\times 10^{3}", r"2.5\times10^3", True), ("2400", r"2.5\times10^3", False),
])
def test_decimal_precision_policy(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    # Percent gold: the same number with the sign, the fraction, or the number without the sign.
    (r"25\%", r"25\%", True), ("0.25", r"25\%", True), ("25", r"25\%", True),
    (r"\frac14", r"25\%", True),
    # 100x too small or too large never passes.
    (r"0.25\%", r"25\%", False), (r"2500\%", r"25\%", False),
    ("0.0025", r"25\%", False), ("2500", r"25\%", False),
    # Bare gold: a percent answer means its value, or the gold counts percent.
    (r"25\%", "0.25", True), (r"25\%", "25", True), (r"40\%", r"\frac25", True),
    ("0.25", "25", False), ("2500", "25", False), (r"5\%", "0.5", False),
    # Percent words and wrappers.
    ("25 percent", r"25\%", True), (r"\text{25\%}", r"25\%", True),
    (r"\text{40 percent}", "0.4", True), (r"12.5\%", "12.5", True),
    # An exact percent gold needs the exact value.
    (r"33.3\%", r"33\frac{1}{3}\%", False), (r"\frac{100}{3}\%", r"33\frac{1}{3}\%", True),
])
def test_percent_semantics(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


# ---------------------------------------------------------------------------------------------
# Answer families that are correct in other spellings (and their wrong neighbours).


@pytest.mark.parametrize("pred, gold, expected", [
    (r"\dfrac{3}{8}", r"\frac38", True), (r"\tfrac{5}{12}", r"\frac{5}{12}", True),
    (r"{7 \over 9}", r"\frac79", True), (r"7 \over 9", r"\frac79", True),
    (r"{a \over b}", r"\frac{a}{b}", True), (r"{1 \over 2}", "0.5", True),
    ("14/18", r"\frac79", True), (r"\cfrac{1}{1+\cfrac{1}{2}}", r"\frac23", True),
    (r"{9 \over 7}", r"\frac79", False), (r"-\tfrac34", r"\frac34", False),
])
def test_fraction_variants(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("2 1/2", r"\frac52", True), ("1 3/4", r"\frac74", True), ("-1 2/3", r"-\frac53", True),
    ("5 3/8", "5.375", True), ("10 1/3 feet", r"\frac{31}{3}", True),
    (r"2\frac12", r"\frac52", True), (r"3 \frac{1}{4}", "3.25", True),
    # Not a product: "1 3/4" is never 3/4, and "2 1/2" never 1.
    ("1 3/4", r"\frac34", False), ("2 1/2", "1", False),
    # Two numerals separated by a space are not an expression.
    ("12 13", "156", False), ("2 3/2", "3", False),
])
def test_mixed_numbers(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("5 = x", "5", True), ("5 = x", "x = 5", True), ("-2 = y", "-2", True),
    ("3x - 2 = y", "y = 3x - 2", True), ("12 = n", "n = 12", True),
    ("7 = k", "8", False), ("5 = x", "-5", False), ("6 = 2x", "3", False),
])
def test_equation_with_the_variable_on_the_right(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    (r"1 < x \le 3", "(1, 3]", True), (r"3 > x > 1", "(1, 3)", True),
    (r"x \geq -2", r"[-2, \infty)", True), (r"1 \le x < 3", "(1, 3]", False),
    (r"x > -2", r"[-2, \infty)", False),
    (r"\{x : x > 4\}", r"(4, \infty)", True), (r"\{x \mid x > 4\}", r"(4, \infty)", True),
    (r"\{x \in \mathbb{R} : x \neq 0\}", r"(-\infty,0)\cup(0,\infty)", True),
    (r"\{x : 1 < x < 3\}", "(1, 3)", True), (r"\{x : x > 4\}", r"[4, \infty)", False),
    (r"\mathbb{R}", r"(-\infty, \infty)", True), (r"(-\infty, \infty)", r"\mathbb{R}", True),
    (r"\text{all real numbers}", r"(-\infty,\infty)", True), (r"\mathbb{R}", r"(0, \infty)", False),
    (r"x < 2 \text{ or } x > 5", r"(-\infty,2)\cup(5,\infty)", True),
    (r"x > 1 \text{ and } x < 3", "(1, 3)", True),
    (r"x < 2 \text{ or } x > 5", r"(-\infty,2)", False),
    # A named set is never a number.
    (r"\mathbb{R}", "5", False), (r"x \in \mathbb{R}", "5", False),
])
def test_intervals_as_inequalities_and_named_sets(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    (r"\text{Even}", r"\text{even}", True), (r"\text{NO SOLUTION}", "no solution", True),
    (r"\textbf{Yes}", "yes", True), ("Tuesday", r"\text{tuesday}", True),
    ("No", "no", True), (r"\text{NO}", r"\text{no}", True), ("Yes", "YES", True),
    (r"\text{odd}", r"\text{even}", False), (r"\text{No}", "yes", False),
    # One- and two-letter strings are variables: their case matters.
    ("x", "X", False), ("ab", "AB", False),
])
def test_text_differing_only_in_case(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    ("12 apples", "12", True), (r"12 \text{ apples}", "12", True), (r"5 \text{ cm}", "5", True),
    (r"8\ \text{marbles}", "8", True), (r"18 \text{ square units}", "18", True),
    ("6 friends", "6", True), (r"15\text{ km/h}", "15", True), ("9 pencils", "6", False),
    # Hedges, connectives, numbers and function names are not units.
    (r"4 \text{ maybe five}", "4", False), (r"5 \text{ or more}", "5", False),
    ("5 or 6", "5", False), ("5x", "5", False), ("12 dozen", "12", False),
    # Scale words multiply.
    ("1.5 million", "1500000", True), (r"3 \text{ thousand}", "3000", True),
    ("1.5 million", "1.5", False),
])
def test_numbers_followed_by_units_in_words(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


@pytest.mark.parametrize("pred, gold, expected", [
    (r"\text{infinity}", r"\infty", True), ("infinity", r"\infty", True),
    (r"\infty", r"\text{infinity}", True), (r"\text{Infinity}", r"\infty", True),
    (r"\text{negative infinity}", r"-\infty", True), ("-infinity", r"-\infty", True),
    (r"\text{infinity}", r"-\infty", False), (r"\text{infinity}", "5", False),
    # Numbers in words, canonical spellings only.
    ("twelve", "12", True), (r"\text{five}", "5", True), ("forty-two", "42", True),
    ("one hundred and five", "105", True), ("negative seven", "-7", True),
    ("two three", "5", False), ("five five", "10", False), ("eleven", "12", False),
])
def test_infinity_and_numbers_in_words(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


_M12_34 = r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"


@pytest.mark.parametrize("pred, gold, expected", [
    (r"\begin{bmatrix} 1 & 2 \\ 3 & 4 \end{bmatrix}", _M12_34, True),
    (r"\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}", _M12_34, True),
    (r"\left(\begin{array}{cc} 1 & 2 \\ 3 & 4 \end{array}\right)", _M12_34, True),
    (r"\left[\begin{matrix} 1 & 2 \\ 3 & 4 \end{matrix}\right]", _M12_34, True),
    (r"\frac{1}{2}\begin{pmatrix} 2 & 4 \\ 6 & 8 \end{pmatrix}", _M12_34, True),
    (r"2\begin{pmatrix} 1 & 2 \\ 0 & 1 \end{pmatrix}", r"\begin{pmatrix}2&4\\0&2\end{pmatrix}", True),
    (r"-\begin{pmatrix}1 & -2\\ 3 & 0\end{pmatrix}", r"\begin{pmatrix}-1&2\\-3&0\end{pmatrix}", True),
    (r"3\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}3\\6\end{pmatrix}", True),
    (r"2\begin{pmatrix} 1 & 2 \\ 0 & 1 \end{pmatrix}", r"\begin{pmatrix}1&2\\0&1\end{pmatrix}", False),
    (r"\begin{bmatrix} 1 & 2 \\ 4 & 3 \end{bmatrix}", _M12_34, False),
    # A determinant is not a matrix.
    (r"\begin{vmatrix} 1 & 2 \\ 3 & 4 \end{vmatrix}", _M12_34, False),
])
def test_matrix_environments_and_scalar_factors(pred, gold, expected):
  assert rmath.is_equivalent(pred, gold) is expected


# ---------------------------------------------------------------------------------------------
# Time bound and robustness


_HOSTILE = [
    r"10^{10^{10}}", r"9^{9^{9^{9}}}", r"9^9^9^9", "100000!", r"x^{10^{10}}",
    "(" * 400 + "1" + ")" * 400, "7" * 5000, "1" * 2500 + "/" + "3" * 2500,
    "{" * 2000 + "5" + "}" * 2000, r"\sqrt{" * 300 + "2" + "}" * 300, r"1000!^{1000!}",
    r"\{x : " + r"x > 1 \text{ or } " * 100 + r"x < 0\}", "2 1/2 " * 200,
]


@pytest.mark.parametrize("answer", _HOSTILE)
def test_pathological_inputs_return_false_within_timeout(answer, warm_shared_pool):
  start = time.monotonic()
  assert rmath.verify(r"\boxed{" + answer + "}", "5", timeout_s=2.0) is False
  assert time.monotonic() - start < 2.0 + _SLACK_S


@pytest.mark.parametrize("answer", _HOSTILE)
def test_pathological_inputs_are_bounded_without_the_worker(answer):
  # The size guards, not only the worker's timeout, bound the work: compared in process with
  # the length cap lifted, every hostile answer is refused quickly.
  start = time.monotonic()
  assert rmath.is_equivalent(answer, "5", max_answer_chars=20_000) is False
  assert time.monotonic() - start < 2.0 + _SLACK_S


def test_timeout_kills_and_scores_false(pool):
  # A timeout far below one verification's cost: every item is killed mid-work and scores False;
  # the pool then still answers normally.
  start = time.monotonic()
  with pytest.warns(RuntimeWarning, match="timeout too short"):
    assert rmath.verify_batch([r"\boxed{(x+1)^2}"], ["x^2+2x+1"], timeout_s=1e-3,
                              pool=pool) == [False]
  assert time.monotonic() - start < 1e-3 + _SLACK_S
  assert rmath.verify_batch([r"\boxed{(x+1)^2}"], ["x^2+2x+1"], pool=pool) == [True]


def test_verify_from_a_thread():
  result = []
  t = threading.Thread(target=lambda: result.append(rmath.verify(r"\boxed{\frac12}", "0.5")))
  t.start()
  t.join()
  assert result == [True]


def test_verify_batch_validates_arguments():
  with pytest.raises(ValueError):
    rmath.verify_batch(["a"], ["b", "c"])
  with pytest.raises(ValueError):
    rmath.verify_batch(["a"], ["b"], timeout_s=0)


def test_workers_that_cannot_start_are_reported_not_silent(tmp_path):
  # A script read from stdin: forkserver workers cannot re-import its __main__, so every item
  # fails; verify still returns False (one reward lost per item) but warns why.
  code = ("from rlvr_jax.rewards import math as m\n"
          "print(m.verify(r'\\boxed{2}', '2'), m.verify_in_process(r'\\boxed{2}', '2'))\n")
  proc = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True,
                        cwd=tmp_path, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == ["False", "True"]
  assert "RuntimeWarning: every math verification failed" in proc.stderr


def test_rewards_package_import_is_light():
  code = ("import sys, rlvr_jax.rewards; "
          "assert 'sympy' not in sys.modules, 'sympy imported eagerly'; "
          "import rlvr_jax.rewards.math; assert 'sympy' in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# The labelled suite


def _load_suite(path=_SUITE):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def test_suite_schema_and_coverage():
  cases = _load_suite()
  assert len(cases) >= 300
  keys = {"id", "category", "completion", "gold", "label", "adversarial", "note"}
  assert all(set(c) == keys for c in cases)
  assert len({c["id"] for c in cases}) == len(cases)
  assert all(isinstance(c["label"], bool) and isinstance(c["adversarial"], bool) for c in cases)
  categories = collections.Counter(c["category"] for c in cases)
  for name in ["extraction", "integers", "decimals_fractions", "latex_fractions", "mixed_numbers",
               "percentages", "radicals_pi", "algebraic", "equations", "intervals_inequalities",
               "sets_tuples", "matrices", "complex", "infinity", "units_degrees", "scientific",
               "text", "unicode", "adv_candidate_lists", "adv_contains_gold",
               "adv_empty_unbalanced", "adv_macro_tricks", "adv_long_responses",
               "adv_pathological", "exactness", "decimal_precision", "percent_scale",
               "answer_families"]:
    assert categories[name] >= 7, name
  assert any(len(c["completion"]) >= 50_000 for c in cases)


def test_suite_labels(pool):
  cases = _load_suite()
  got = rmath.verify_batch([c["completion"] for c in cases], [c["gold"] for c in cases],
                           timeout_s=5.0, pool=pool)
  wrong = [(c["id"], c["label"]) for c, g in zip(cases, got) if g != c["label"]]
  assert not wrong, f"{len(wrong)} suite cases disagree with their labels: {wrong}"


# ---------------------------------------------------------------------------------------------
# The out-of-sample suite


def test_out_of_sample_suite_schema():
  cases = _load_suite(_OUT_OF_SAMPLE)
  keys = {"id", "category", "completion", "gold", "label", "adversarial", "note"}
  assert all(set(c) == keys for c in cases)
  assert len({c["id"] for c in cases}) == len(cases)
  assert len(cases) >= 150
  assert sum(c["label"] for c in cases) >= 50 and sum(not c["label"] for c in cases) >= 50
  assert sum(c["category"].startswith("model_") for c in cases) >= 100  # real model outputs
  assert sum(c["adversarial"] for c in cases) >= 20


def test_out_of_sample_suite_floors(pool):
  cases = _load_suite(_OUT_OF_SAMPLE)
  got = rmath.verify_batch([c["completion"] for c in cases], [c["gold"] for c in cases],
                           timeout_s=5.0, pool=pool)
  labels = [c["label"] for c in cases]
  tp = sum(g and l for g, l in zip(got, labels))
  fp = [c["id"] for c, g, l in zip(cases, got, labels) if g and not l]
  fn = [c["id"] for c, g, l in zip(cases, got, labels) if l and not g]
  # Floors, not exact agreement: the labels are mathematical truth, and some misses are policy
  # (answers without a final-answer marker). Precision is what RL exploits, so its floor is high.
  assert not [c["id"] for c, g in zip(cases, got) if g and c["adversarial"]]
  assert tp / (tp + len(fp)) >= 0.99, fp
  assert tp / (tp + len(fn)) >= 0.85, fn
  plain_fn = [c["id"] for c, g, l in zip(cases, got, labels)
              if l and not g and not c["note"].startswith("policy:")]
  plain_pos = sum(l and not c["note"].startswith("policy:") for c, l in zip(cases, labels))
  assert 1 - len(plain_fn) / plain_pos >= 0.95, plain_fn
