"""Code rewards: extraction, test running, pass matrices and the JAX reward functions."""

import numpy as np
import pytest

from rlvr_jax.rewards import code
from rlvr_jax.rewards import sandbox

CFG = sandbox.SandboxConfig(timeout_s=5.0)


def test_extract_code_prefers_last_python_block():
  text = ("Try:\n```python\nprint(1)\n```\nBetter:\n```py\nprint(2)\n```\n"
          "Output:\n```text\n2\n```")
  assert code.extract_code(text).strip() == "print(2)"
  assert code.extract_code("```\nprint(3)\n```").strip() == "print(3)"
  assert code.extract_code("print(4)") is None
  assert code.extract_code("```python\nunterminated") is None


@pytest.mark.parametrize("got,want,tol,expected", [
    ("1 2\n3  \n\n", "1 2\n3", None, True),
    ("1 2\n3", "1 2 3", None, False),
    ("0.3333334\n", "0.333333", 1e-5, True),
    ("0.34\n", "0.333333", 1e-5, False),
    ("abc 1.0", "abc 1", 1e-9, True),
    ("abd 1.0", "abc 1", 1e-9, False),
    ("", "", None, True),
])
def test_outputs_match(got, want, tol, expected):
  assert code.outputs_match(got, want, tol) is expected


def test_run_tests_stdio_and_assert():
  prog = ("def add(a, b):\n  return a + b\n"
          "if __name__ == '__main__':\n"
          "  a, b = map(int, input().split())\n  print(add(a, b))\n")
  tests = [{"input": "1 2\n", "output": "3\n"},
           {"input": "2 2\n", "output": "5\n"},
           {"assert": "assert add(5, 6) == 11"},
           {"assert": "assert add(5, 6) == 12"}]
  res = code.run_tests(prog, tests, config=CFG, max_workers=2)
  assert [r.passed for r in res] == [True, False, True, False]
  assert res[1].status == "wrong_answer"
  assert res[3].status == "wrong_answer"  # the checker ran the test: the assertion failed


def test_assert_tests_share_one_pair_per_input():
  # A program's assert tests with the same stdin share one candidate process (its module state
  # carries over, as for a module imported once); another stdin gets its own.
  prog = ("import sys\nCALLS = []\n"
          "def f():\n  CALLS.append(1)\n  return len(CALLS)\n"
          "def line():\n  return sys.stdin.readline().strip()\n")
  tests = [{"assert": "assert f() == 1"}, {"assert": "assert f() == 2"},
           {"assert": "assert line() == 'x'", "input": "x\n"},
           {"assert": "assert f() == 1", "input": "x\n"},
           {"input": "", "output": ""}]
  res = code.run_tests(prog, tests, config=CFG, max_workers=2)
  assert [r.passed for r in res] == [True] * 5, [(r.passed, r.status) for r in res]


def test_a_forged_pass_scores_zero():
  # The program's object claims equality with everything; the checker compares plain data.
  prog = ("class Yes:\n  def __eq__(self, o):\n    return True\n"
          "def add(a, b):\n  return Yes()\n")
  assert code.code_reward(["```python\n" + prog + "```"], [[{"assert": "assert add(2, 3) == 5"}]],
                          config=CFG) == [0.0]


def test_runtime_and_compile_errors_fail():
  res = code.run_tests("print(1/0)", [{"input": "", "output": "1"}], config=CFG)
  assert not res[0].passed and res[0].status == "runtime_error"
  res = code.run_tests("def f(:", [{"input": "", "output": ""}], config=CFG)
  assert not res[0].passed and res[0].status == "compile_error"
  res = code.run_tests(None, [{"input": "", "output": ""}], config=CFG)
  assert not res[0].passed and res[0].status == "no_code"
  with pytest.raises(ValueError):
    code.run_tests("print(1)", [{"input": ""}], config=CFG)


def test_batch_rewards_and_pass_matrix():
  tests = [{"input": f"{i}\n", "output": f"{i * i}\n"} for i in range(3)]
  completions = [
      "```python\nn = int(input())\nprint(n * n)\n```",  # all pass
      "```python\nn = int(input())\nprint(n * 2)\n```",  # right for n in {0, 2}
      "no code here",
  ]
  frac = code.code_reward(completions, [tests] * 3, mode="fraction", config=CFG, max_workers=2)
  allp = code.code_reward(completions, [tests] * 3, mode="all_pass", config=CFG, max_workers=2)
  # n*2 == n*n for n in {0, 2}.
  assert frac == pytest.approx([1.0, 2 / 3, 0.0])
  assert allp == [1.0, 0.0, 0.0]
  programs = [code.extract_code(c) for c in completions]
  res = code.run_tests_batch(programs, [tests] * 3, config=CFG, max_workers=2)
  passes, mask = code.pass_matrix([res])
  assert passes.shape == (1, 3, 3) and mask.shape == (1, 3)
  np.testing.assert_array_equal(passes[0], [[1, 1, 1], [1, 0, 1], [0, 0, 0]])


def test_pass_matrix_pads_tests():
  t = code.TestResult
  res = [[[t(True, "ok", 0)], [t(False, "ok", 0)]],
         [[t(True, "ok", 0), t(True, "ok", 0)], [t(False, "x", 0), t(True, "ok", 0)]]]
  passes, mask = code.pass_matrix(res)
  np.testing.assert_array_equal(mask, [[1, 0], [1, 1]])
  np.testing.assert_array_equal(passes[0], [[1, 0], [0, 0]])
  with pytest.raises(ValueError):
    code.pass_matrix([[[t(True, "ok", 0)], [t(True, "ok", 0), t(True, "ok", 0)]]])


# A prompt with G=4 samples and 3 valid tests (a 4th is padding), and a prompt without tests.
PASSES = np.array([[[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1]],
                   [[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]]], bool)
MASK = np.array([[1, 1, 1, 0], [0, 0, 0, 0]], bool)


def test_all_pass_and_fraction():
  np.testing.assert_allclose(code.all_pass_reward(PASSES, MASK), [[0, 0, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_allclose(code.pass_fraction_reward(PASSES, MASK),
                             [[2 / 3, 1 / 3, 1, 0], [0, 0, 0, 0]], rtol=1e-6)


def test_verpo_reward_against_hand_computation():
  eps = 1e-6
  # Valid tests of prompt 0: pass rates rho = (3/4, 2/4, 1/4).
  w = np.array([0.25, 0.5, 0.75]) + eps
  w = w / w.sum()
  p = PASSES[0, :, :3].astype(float)
  local = p @ w
  glob = np.array([0, 0, 1, 0], float)
  got = code.verpo_reward(PASSES, MASK, lam=0.5, eps=eps)
  np.testing.assert_allclose(got[0], glob + 0.5 * local, rtol=1e-5)
  np.testing.assert_allclose(got[1], 0.0)
  gate = code.verpo_reward(PASSES, MASK, lam=0.5, eps=eps, combine="gate")
  np.testing.assert_allclose(gate[0], np.where(glob > 0, 1.0, 0.5 * local), rtol=1e-5)
  # Harder tests weigh more: passing only the hardest test beats passing only the easiest.
  assert w[2] > w[0]
  with pytest.raises(ValueError):
    code.verpo_reward(PASSES, MASK, combine="mul")
  with pytest.raises(ValueError):
    code.verpo_reward(PASSES[0], MASK)


def test_code_verifier_reads_tests_from_example_metadata():
  class Ex:  # Duck-typed like rlvr_jax.data.task.Example.
    def __init__(self, metadata):
      self.metadata = metadata
      self.answer = ""

  ex = Ex({"tests": [{"assert": "assert sq(3) == 9"}, {"input": "4\n", "output": "16"}],
           "timeout_s": 5.0})
  good = ("```python\ndef sq(x):\n  return x * x\n"
          "if __name__ == '__main__':\n  print(sq(int(input())))\n```")
  half = "```python\ndef sq(x):\n  return x * x\n```"
  assert code.code_verifier(good, ex) == 1.0
  assert code.code_verifier(half, ex) == 0.0
  assert code.code_verifier(good, Ex({})) == 0.0
