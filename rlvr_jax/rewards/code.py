"""Code-execution rewards: run candidate programs against unit tests, score the pass vectors.

Host side (strings, processes): :func:`extract_code` pulls the program out of a completion,
:func:`run_tests` runs it against a problem's tests in the sandbox of
:mod:`rlvr_jax.rewards.sandbox`, :func:`run_tests_batch` does many solutions at once with a thread
pool, and :func:`pass_matrix` packs the verdicts into arrays.

JAX side (pure, jit-able, shapes ``[P, G, U]``: prompts, samples per prompt, unit tests):
:func:`all_pass_reward`, :func:`pass_fraction_reward` and :func:`verpo_reward`.

Two kinds of test are supported:

* stdin/stdout: ``{"input": str, "output": str}``. The program reads ``input`` on stdin (one
  fresh sandbox per test); it passes when it exits 0 and its stdout, compared here in the
  caller's process, equals ``output`` line by line after stripping trailing whitespace from each
  line and dropping trailing empty lines (optionally with a numeric tolerance per
  whitespace-separated token).
* assert-style: ``{"assert": str}``, Python source (typically ``assert f(2) == 4``, or a
  HumanEval ``check`` function and ``check(f)``) with the program's names in scope; it passes when
  every statement of it ran. The test does **not** run in the program's process: it runs in a
  separate checker sandbox where the program's functions and classes are stubs that forward
  calls to the candidate's sandbox, and values come back as plain data (see
  :mod:`rlvr_jax.rewards.sandbox`), so a program cannot forge a pass. All assert tests of one
  program (with the same ``input``) share one candidate/checker pair; each still gets
  ``timeout_s`` and a fresh test namespace. Built-in names in a test always mean the built-ins.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import re
from typing import Any, List, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.rewards import sandbox as sandbox_lib

Array = jax.Array

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_PY_TAGS = ("python", "py", "python3")


def extract_code(completion: str, language: str = "python") -> Optional[str]:
  """The last fenced code block of ``language`` in ``completion`` (else the last untagged block).

  A completion without a fenced block yields None (reward 0): running free text as a program
  rewards nothing useful and makes prose that happens to parse count as code.
  """
  tags = _PY_TAGS if language == "python" else (language,)
  tagged, untagged = None, None
  for m in _FENCE.finditer(completion):
    tag = m.group(1).lower()
    if tag in tags:
      tagged = m.group(2)
    elif not tag:
      untagged = m.group(2)
  return tagged if tagged is not None else untagged


@dataclasses.dataclass(frozen=True)
class TestResult:
  """Verdict on one test.

  Attributes:
    passed: whether the test passed.
    status: the sandbox status (``"ok"``, ``"timeout"``, ``"runtime_error"``, ...) or
      ``"wrong_answer"`` when the program ran cleanly but its output differed.
    wall_s: seconds the run took.
  """

  passed: bool
  status: str
  wall_s: float


def _normalise_lines(text: str) -> List[str]:
  lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
  while lines and not lines[-1]:
    lines.pop()
  return lines


def _tokens_close(got: str, want: str, float_tol: float) -> bool:
  a, b = got.split(), want.split()
  if len(a) != len(b):
    return False
  for x, y in zip(a, b):
    if x == y:
      continue
    try:
      fx, fy = float(x), float(y)
    except ValueError:
      return False
    if not abs(fx - fy) <= float_tol * max(1.0, abs(fy)):
      return False
  return True


def outputs_match(got: str, want: str, float_tol: Optional[float] = None) -> bool:
  """Line-wise comparison of program output with the expected output.

  Trailing whitespace of each line and trailing empty lines are ignored. With ``float_tol``,
  whitespace-separated tokens that both parse as floats match when
  ``|got - want| <= float_tol * max(1, |want|)``; other tokens must be equal.
  """
  g, w = _normalise_lines(got), _normalise_lines(want)
  if float_tol is None:
    return g == w
  return len(g) == len(w) and all(_tokens_close(a, b, float_tol) for a, b in zip(g, w))


def _check_test(test: Mapping[str, Any]) -> None:
  if "assert" not in test and "output" not in test:
    raise ValueError(f"a test needs 'output' (stdin/stdout) or 'assert'; got keys {list(test)}")


def _jobs(program: Optional[str], tests: Sequence[Mapping[str, Any]]) -> List[tuple]:
  """Units of work for one program: ``("stdio", [j])`` per stdin/stdout test and one
  ``("assert", [j, ...])`` per distinct ``input`` of its assert tests."""
  for t in tests:
    _check_test(t)
  if program is None:
    return [("none", list(range(len(tests))))]
  jobs, groups = [], {}
  for j, t in enumerate(tests):
    if "assert" in t:
      key = t.get("input", "")
      if key not in groups:
        groups[key] = []
        jobs.append(("assert", groups[key]))
      groups[key].append(j)
    else:
      jobs.append(("stdio", [j]))
  return jobs


def _run_job(program: Optional[str], tests: Sequence[Mapping[str, Any]], job: tuple,
             config: sandbox_lib.SandboxConfig, float_tol: Optional[float]) -> List[TestResult]:
  kind, idx = job
  if kind == "none":
    return [TestResult(False, "no_code", 0.0) for _ in idx]
  if kind == "assert":
    rs = sandbox_lib.run_assert_tests(program, [tests[j]["assert"] for j in idx],
                                      stdin=tests[idx[0]].get("input", ""), config=config)
    return [TestResult(passed=r.tests_completed, status=r.status, wall_s=r.wall_s) for r in rs]
  test = tests[idx[0]]
  r = sandbox_lib.run_python(program, stdin=test.get("input", ""), config=config)
  if r.status != "ok":
    return [TestResult(passed=False, status=r.status, wall_s=r.wall_s)]
  ok = outputs_match(r.stdout, test["output"], float_tol)
  return [TestResult(passed=ok, status="ok" if ok else "wrong_answer", wall_s=r.wall_s)]


def run_tests(program: Optional[str],
              tests: Sequence[Mapping[str, Any]],
              *,
              config: sandbox_lib.SandboxConfig = sandbox_lib.SandboxConfig(),
              float_tol: Optional[float] = None,
              max_workers: int = 1) -> List[TestResult]:
  """Runs ``program`` against every test in the sandbox.

  Each stdin/stdout test gets a fresh sandbox; the assert tests share one candidate/checker pair
  (see the module docstring).

  Args:
    program: Python source, or None (no code was extracted: every test fails with status
      ``"no_code"`` without running anything).
    tests: stdin/stdout tests ``{"input", "output"}`` and/or assert tests ``{"assert"}``.
    config: sandbox limits; ``config.timeout_s`` applies per test.
    float_tol: optional numeric tolerance for stdin/stdout comparison (see
      :func:`outputs_match`).
    max_workers: threads running units of this program concurrently.

  Returns:
    One :class:`TestResult` per test, in order. Never raises for anything the program does.
  """
  return run_tests_batch([program], [tests], config=config, float_tol=float_tol,
                         max_workers=max(1, max_workers))[0]


def run_tests_batch(programs: Sequence[Optional[str]],
                    tests: Sequence[Sequence[Mapping[str, Any]]],
                    *,
                    config: sandbox_lib.SandboxConfig = sandbox_lib.SandboxConfig(),
                    float_tol: Optional[float] = None,
                    max_workers: Optional[int] = None) -> List[List[TestResult]]:
  """:func:`run_tests` for many programs; ``tests[i]`` are program ``i``'s tests.

  The units of work (a stdin/stdout test, or the assert tests of one program) run on a thread
  pool of ``max_workers`` (default: the CPU count); threads only wait on processes, so the GIL is
  not a bottleneck.
  """
  if len(programs) != len(tests):
    raise ValueError(f"{len(programs)} programs but {len(tests)} test lists")
  jobs = [(i, job) for i, (prog, ts) in enumerate(zip(programs, tests))
          for job in _jobs(prog, ts)]
  results: List[List[Optional[TestResult]]] = [[None] * len(ts) for ts in tests]
  workers = max_workers or os.cpu_count() or 1

  def run(item):
    i, job = item
    return _run_job(programs[i], tests[i], job, config, float_tol)

  if workers <= 1 or len(jobs) <= 1:
    outs = [run(item) for item in jobs]
  else:
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(jobs))) as pool:
      outs = list(pool.map(run, jobs))
  for (i, (_, idx)), out in zip(jobs, outs):
    for j, r in zip(idx, out):
      results[i][j] = r
  return results  # type: ignore[return-value]


def pass_matrix(results: Sequence[Sequence[Sequence[TestResult]]],
                num_tests: Optional[int] = None) -> tuple:
  """Packs verdicts ``results[p][g][u]`` into ``(passes [P,G,U] bool, test_mask [P,U] bool)``.

  Problems with fewer tests than ``num_tests`` (default: the maximum) are padded with masked
  tests. All samples of a prompt must have been run against the same tests.
  """
  num_p = len(results)
  num_g = max((len(r) for r in results), default=0)
  if any(len(r) != num_g for r in results):
    raise ValueError("every prompt needs the same number of samples")
  u_max = max((len(s) for r in results for s in r), default=0)
  u = u_max if num_tests is None else num_tests
  if u < u_max:
    raise ValueError(f"num_tests={u} < the largest test count {u_max}")
  passes = np.zeros((num_p, num_g, u), dtype=bool)
  mask = np.zeros((num_p, u), dtype=bool)
  for p, r in enumerate(results):
    counts = {len(s) for s in r}
    if len(counts) > 1:
      raise ValueError(f"prompt {p}: samples were run against different numbers of tests")
    n = counts.pop() if counts else 0
    mask[p, :n] = True
    for g, s in enumerate(r):
      passes[p, g, :n] = [t.passed for t in s]
  return passes, mask


def _check(passes: Array, test_mask: Array) -> tuple:
  passes = jnp.asarray(passes)
  test_mask = jnp.asarray(test_mask)
  if passes.ndim != 3 or test_mask.ndim != 2:
    raise ValueError(f"passes must be [P,G,U] and test_mask [P,U]; got {passes.shape} and "
                     f"{test_mask.shape}")
  if test_mask.shape != (passes.shape[0], passes.shape[2]):
    raise ValueError(f"test_mask {test_mask.shape} does not match passes {passes.shape}")
  m = test_mask.astype(jnp.float32)[:, None, :]
  return passes.astype(jnp.float32) * m, m


@jax.jit
def all_pass_reward(passes: Array, test_mask: Array) -> Array:
  """Outcome reward ``r = prod_j pass_j`` over valid tests; ``[P,G,U],[P,U] -> [P,G]``.

  A problem without any valid test gets 0 (there is nothing to pass).
  """
  p, m = _check(passes, test_mask)
  n = m.sum(-1)
  return jnp.where(n > 0, (p.sum(-1) == n).astype(jnp.float32), 0.0)


@jax.jit
def pass_fraction_reward(passes: Array, test_mask: Array) -> Array:
  """Partial credit ``r = (1/U) sum_j pass_j`` over valid tests (open-r1 ``code_reward``).

  ``[P,G,U],[P,U] -> [P,G]``; 0 for a problem without valid tests.
  """
  p, m = _check(passes, test_mask)
  n = m.sum(-1)
  return p.sum(-1) / jnp.maximum(n, 1.0)


@functools.partial(jax.jit, static_argnames=("combine",))
def verpo_reward(passes: Array,
                 test_mask: Array,
                 *,
                 lam: float = 1.0,
                 eps: float = 1e-6,
                 combine: str = "add") -> Array:
  """VeRPO-style difficulty-weighted partial credit (arXiv 2601.03525), **experimental**.

  What the paper states: per prompt, the group's empirical pass rate of each test,
  ``rho_j = mean_i pass[i, j]``, gives a difficulty weight (harder test, larger weight); the dense
  reward is the weighted sum of passed tests, integrated with the global outcome (all tests
  pass). The exact weight and combination formulas were not available when this was written;
  this function implements the reconstruction of ``specs/rewards.md`` section 2:

      w_j   = (1 - rho_j) + eps,          w~_j = w_j / sum_k w_k    (valid tests only)
      local = sum_j w~_j pass[i, j]                                  in [0, 1]
      global = prod_j pass[i, j]
      combine="add":  r = global + lam * local
      combine="gate": r = 1 if global else lam * local

  It does not include v3's "density calibration" against cardinality bias.

  Args:
    passes: ``[P, G, U]`` bool/0-1, sample ``i`` of prompt ``p`` passes test ``j``.
    test_mask: ``[P, U]`` bool, valid (non-padding) tests.
    lam: weight of the local dense term.
    eps: keeps weights positive when every sample passes a test.
    combine: ``"add"`` or ``"gate"``, see above.

  Returns:
    ``[P, G]`` float32 rewards; 0 for prompts without valid tests.
  """
  if combine not in ("add", "gate"):
    raise ValueError(f"combine must be 'add' or 'gate', got {combine!r}")
  p, m = _check(passes, test_mask)
  rho = p.mean(axis=1, keepdims=True)  # [P, 1, U]
  w = ((1.0 - rho) + eps) * m
  w = w / jnp.maximum(w.sum(-1, keepdims=True), 1e-30)
  local = (w * p).sum(-1)
  glob = all_pass_reward(passes, test_mask)
  if combine == "add":
    return glob + lam * local
  return jnp.where(glob > 0, 1.0, lam * local)


def code_reward(completions: Sequence[str],
                tests: Sequence[Sequence[Mapping[str, Any]]],
                *,
                mode: str = "fraction",
                config: sandbox_lib.SandboxConfig = sandbox_lib.SandboxConfig(),
                float_tol: Optional[float] = None,
                max_workers: Optional[int] = None) -> List[float]:
  """Host-side per-completion reward: extract, run, score.

  Args:
    completions: model outputs; the program is the last fenced Python block.
    tests: the tests of each completion's problem.
    mode: ``"all_pass"`` (1 if every test passes) or ``"fraction"`` (share of tests passed).
      Group-dependent rewards (VeRPO) need :func:`pass_matrix` and :func:`verpo_reward`.
    config, float_tol, max_workers: as in :func:`run_tests_batch`.

  Returns:
    One float per completion; 0 for a completion without code or a problem without tests.
  """
  if mode not in ("all_pass", "fraction"):
    raise ValueError(f"mode must be 'all_pass' or 'fraction', got {mode!r}")
  programs = [extract_code(c) for c in completions]
  results = run_tests_batch(programs, tests, config=config, float_tol=float_tol,
                            max_workers=max_workers)
  out = []
  for res in results:
    n = len(res)
    k = sum(t.passed for t in res)
    if n == 0:
      out.append(0.0)
    elif mode == "all_pass":
      out.append(float(k == n))
    else:
      out.append(k / n)
  return out


def code_verifier(completion: str, example: Any) -> float:
  """Registry-style verifier ``(completion, example) -> 1.0 | 0.0`` for code tasks.

  Reads the tests from ``example.metadata["tests"]`` (the formats of :func:`run_tests`) and,
  optionally, ``example.metadata["timeout_s"]`` and ``example.metadata["float_tol"]``; returns
  1.0 when the last fenced Python block of ``completion`` passes every test. Suitable for
  ``rlvr_jax.rewards.registry.register_verifier("code", code_verifier)``; duck-typed so that this module
  does not import the data package.
  """
  meta = example.metadata
  tests = meta.get("tests") or []
  if not tests:
    return 0.0
  config = sandbox_lib.SandboxConfig(timeout_s=float(meta.get("timeout_s", 5.0)))
  results = run_tests(extract_code(completion), tests, config=config,
                      float_tol=meta.get("float_tol"))
  return float(all(r.passed for r in results))
