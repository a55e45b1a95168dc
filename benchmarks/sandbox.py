"""Code-sandbox cost per test, printed as JSON.

  python benchmarks/sandbox.py [--runs 100] [--batch_programs 32] [--workers 0] [--namespaces auto]
                               [--raw]

Measures what a caller pays for one sandboxed test, end to end (temporary files, process start,
isolation set-up, the program, the comparison, clean-up), through the public API only, so the
same script times any version of ``rlvr_jax.rewards.sandbox``/``code``:

* ``sequential``: ``code.run_tests(program, [test])`` called ``--runs`` times one after another,
  for an assert-style test and for a stdin/stdout test; p50, p99, mean and max in milliseconds.
* ``sequential_assert_x8``: ``code.run_tests(program, [8 assert tests])``, ``--runs // 4`` times;
  the cost per test (a call's time / 8).
* ``batch``: ``code.run_tests_batch`` over ``--batch_programs`` programs x 4 tests with
  ``--workers`` threads (0: the CPU count); tests per second and the amortised cost per test.

``isolation_report`` of the configuration is printed alongside, so a number always comes with
the layers that were on when it was taken. ``--raw`` adds every sample (ms), to pool runs taken
in alternation with another version on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from rlvr_jax.rewards import code
from rlvr_jax.rewards import sandbox

PROGRAM = ("def add(a, b):\n  return a + b\n\n"
           "if __name__ == '__main__':\n"
           "  a, b = map(int, input().split())\n  print(add(a, b))\n")
ASSERT_TEST = {"assert": "assert add(2, 3) == 5"}
STDIO_TEST = {"input": "2 3\n", "output": "5\n"}


def _percentile(xs, q):
  xs = sorted(xs)
  if not xs:
    return float("nan")
  k = (len(xs) - 1) * q
  lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
  return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _summary(times_s, raw=False):
  ms = [t * 1e3 for t in times_s]
  out = {"runs": len(ms), "p50_ms": round(_percentile(ms, 0.5), 2),
         "p99_ms": round(_percentile(ms, 0.99), 2), "mean_ms": round(statistics.mean(ms), 2),
         "max_ms": round(max(ms), 2)}
  if raw:
    out["raw_ms"] = [round(x, 3) for x in ms]
  return out


def _sequential(tests, runs, config, raw):
  times, passed = [], 0
  for _ in range(runs):
    t0 = time.perf_counter()
    res = code.run_tests(PROGRAM, tests, config=config)
    times.append((time.perf_counter() - t0) / len(tests))
    passed += sum(r.passed for r in res)
  out = _summary(times, raw)
  out["passed"] = passed
  out["tests_per_call"] = len(tests)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=100)
  parser.add_argument("--batch_programs", type=int, default=32)
  parser.add_argument("--workers", type=int, default=0)
  parser.add_argument("--namespaces", default="auto")
  parser.add_argument("--label", default="")
  parser.add_argument("--raw", action="store_true")
  args = parser.parse_args(argv)

  config = sandbox.SandboxConfig(timeout_s=10.0, namespaces=args.namespaces)
  report = sandbox.isolation_report(config)
  # Warm-up: probes (cached per process) and the page cache.
  code.run_tests(PROGRAM, [ASSERT_TEST, STDIO_TEST], config=config)

  result = {
      "label": args.label,
      "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
               "python": sys.version.split()[0], "euid": os.geteuid(),
               "load_avg_1m": os.getloadavg()[0]},
      "isolation_report": report,
      "sequential_assert": _sequential([ASSERT_TEST], args.runs, config, args.raw),
      "sequential_stdio": _sequential([STDIO_TEST], args.runs, config, args.raw),
      "sequential_assert_x8": _sequential([ASSERT_TEST] * 8, max(1, args.runs // 4), config,
                                          args.raw),
  }
  workers = args.workers or os.cpu_count() or 1
  tests = [[ASSERT_TEST, STDIO_TEST, ASSERT_TEST, STDIO_TEST]] * args.batch_programs
  t0 = time.perf_counter()
  res = code.run_tests_batch([PROGRAM] * args.batch_programs, tests, config=config,
                             max_workers=workers)
  wall = time.perf_counter() - t0
  n = sum(len(r) for r in res)
  result["batch"] = {"tests": n, "workers": workers, "wall_s": round(wall, 3),
                     "tests_per_s": round(n / wall, 2), "amortised_ms": round(wall / n * 1e3, 2),
                     "passed": sum(t.passed for r in res for t in r)}
  print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
  main()
