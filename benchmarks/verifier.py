"""Math verifier benchmark: ours vs. math-verify on the labelled suites, printed as JSON.

  python benchmarks/verifier.py [--cases FILE]... [--workers 2] [--timeout_s 5] [--show_errors]

By default both suites run, each reported on its own: the in-repo suite
(``tests/data/math_verifier_cases.jsonl``, written alongside the verifier) and the out-of-sample
suite (``tests/rewards/math_out_of_sample.jsonl``, labelled by hand before the verifier ran on
it; its real model outputs, categories ``model_*``, are also reported apart).

For each verifier and suite: accuracy, precision, recall (positive = label true), false positives
on the adversarial cases, accuracy on the cases whose label is not a policy choice (notes without
the ``policy:`` prefix), throughput (cases/s through a worker pool of ``--workers`` processes), the
largest wall time of a single case (measured one at a time, worker round trip included) and the
number of cases that hit the timeout. math-verify (``pip install math-verify``) is imported only
here, inside the workers; without it its entry says it was skipped.

math-verify runs in three published set-ups (see ``math_verify_baseline``), the gold always wrapped
in ``\\boxed{}``; the suite's error log on stderr is math-verify's own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from typing import Callable, Dict, List

from rlvr_jax.rewards import math as math_reward
from rlvr_jax.rewards import workers

_ROOT = os.path.join(os.path.dirname(__file__), "..")
_DEFAULT_CASES = (os.path.join(_ROOT, "tests", "data", "math_verifier_cases.jsonl"),
                  os.path.join(_ROOT, "tests", "rewards", "math_out_of_sample.jsonl"))


def math_verify_baseline(completion: str, gold: str, config: str) -> bool:
  """math-verify 0.9 in one of three published set-ups (runs inside a worker process).

  ``verl``: verl's ``math_verify`` scorer (prediction parsed with Expr then Latex configs).
  ``default``: ``parse()`` with its defaults on both sides.
  ``trl``: TRL's / open-r1's ``accuracy_reward`` (boxed-first LaTeX only, ``first_match``).
  """
  # pylint: disable=import-outside-toplevel
  from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
  from latex2sympy2_extended import NormalizationConfig
  gold_text = gold if "\\boxed" in gold else "\\boxed{" + gold + "}"
  if config == "verl":
    gold_parsed = parse(gold_text, extraction_config=(LatexExtractionConfig(),))
    pred_parsed = parse(completion,
                        extraction_config=(ExprExtractionConfig(), LatexExtractionConfig()))
  elif config == "default":
    gold_parsed, pred_parsed = parse(gold_text), parse(completion)
  elif config == "trl":
    gold_parsed = parse(gold_text, extraction_mode="first_match")
    pred_config = LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            nits=False, malformed_operators=False, basic_latex=True, boxed="all", units=True),
        boxed_match_priority=0, try_extract_without_anchor=False)
    pred_parsed = parse(completion, extraction_config=(pred_config,),
                        extraction_mode="first_match")
  else:
    raise ValueError(f"unknown math-verify config {config!r}")
  if not gold_parsed or not pred_parsed:
    return False
  return bool(verify(gold_parsed, pred_parsed))


def ours(completion: str, gold: str, config: str) -> bool:
  """Our verifier's in-process body (the pool supplies the timeout, as verify_batch does)."""
  del config  # One configuration: the defaults.
  return math_reward.verify_in_process(completion, gold)


def _score(name: str, fn: Callable[[str, str, str], bool], config: str, cases: List[Dict],
           num_workers: int, timeout_s: float, show_errors: bool) -> Dict:
  items = [(c["completion"], c["gold"], config) for c in cases]
  with workers.WorkerPool(num_workers, timeout_s) as pool:
    pool.map(fn, items[:num_workers])  # Start the workers and import the verifier.
    start = time.perf_counter()
    outcomes = pool.map(fn, items)
    elapsed = time.perf_counter() - start
    max_case_s = 0.0
    for item in items:
      t0 = time.perf_counter()
      pool.map(fn, [item])
      max_case_s = max(max_case_s, time.perf_counter() - t0)
  preds = [o.error is None and not o.timed_out and o.value is True for o in outcomes]
  result = {"verifier": name, **_metrics(cases, preds),
            "cases_per_s": round(len(cases) / elapsed, 1),
            "max_case_s": round(max_case_s, 3),
            "timeouts": sum(o.timed_out for o in outcomes),
            "errors": sum(o.error is not None and not o.timed_out for o in outcomes)}
  model = [k for k, c in enumerate(cases) if c["category"].startswith("model_")]
  if model:
    written = [k for k in range(len(cases)) if k not in set(model)]
    result["written_cases"] = _metrics([cases[k] for k in written], [preds[k] for k in written])
    result["model_outputs"] = _metrics([cases[k] for k in model], [preds[k] for k in model])
  if show_errors:
    result["wrong_ids"] = [c["id"] for c, p in zip(cases, preds) if p != c["label"]]
  return result


def _metrics(cases: List[Dict], preds: List[bool]) -> Dict:
  """Accuracy, precision, recall and error counts of ``preds`` against the cases' labels."""
  labels = [bool(c["label"]) for c in cases]
  tp = sum(p and l for p, l in zip(preds, labels))
  fp = sum(p and not l for p, l in zip(preds, labels))
  fn_ = sum(l and not p for p, l in zip(preds, labels))
  # Cases whose label is our documented policy rather than plain mathematical truth (notes that
  # start with "policy:", e.g. macro definitions next to a correct box, decimal precision).
  plain = [(p, l) for c, p, l in zip(cases, preds, labels) if not c["note"].startswith("policy:")]
  return {
      "cases": len(cases),
      "accuracy": round(sum(p == l for p, l in zip(preds, labels)) / len(cases), 4),
      "precision": round(tp / (tp + fp), 4) if tp + fp else None,
      "recall": round(tp / (tp + fn_), 4) if tp + fn_ else None,
      "adversarial_false_positives": sum(
          p and not l for c, p, l in zip(cases, preds, labels) if c["adversarial"]),
      "false_positives": fp,
      "false_negatives": fn_,
      "non_policy_cases": len(plain),
      "non_policy_accuracy": round(sum(p == l for p, l in plain) / len(plain), 4) if plain else None,
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cases", action="append",
                      help="a suite file (repeatable; default: the in-repo and out-of-sample suites)")
  parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
  parser.add_argument("--timeout_s", type=float, default=5.0)
  parser.add_argument("--show_errors", action="store_true")
  parser.add_argument("--math_verify_configs", default="verl,default,trl",
                      help="comma-separated subset of verl,default,trl")
  args = parser.parse_args(argv)
  have_math_verify = importlib.util.find_spec("math_verify") is not None
  reports = []
  for path in args.cases or _DEFAULT_CASES:
    with open(path, encoding="utf-8") as f:
      cases = [json.loads(line) for line in f if line.strip()]
    report = {"suite": os.path.relpath(path), "workers": args.workers,
              "timeout_s": args.timeout_s, "results": []}
    report["results"].append(
        _score("rlvr_jax", ours, "", cases, args.workers, args.timeout_s, args.show_errors))
    if not have_math_verify:
      report["results"].append({"verifier": "math-verify",
                                "skipped": "math-verify is not installed (pip install math-verify)"})
    else:
      for config in args.math_verify_configs.split(","):
        report["results"].append(_score(f"math-verify[{config}]", math_verify_baseline, config,
                                        cases, args.workers, args.timeout_s, args.show_errors))
    reports.append(report)
  json.dump(reports, sys.stdout, indent=2)
  sys.stdout.write("\n")


if __name__ == "__main__":
  main()
