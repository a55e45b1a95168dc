r"""An LLM judge against the math verifier, and its false-positive rate on the hostile suite.

  python benchmarks/judge_agreement.py \
      --model=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf --out=/tmp/judge_agreement

1. Completions: the policy (``--policy``, default the judge's checkpoint) samples
   ``--num_samples`` completions at ``--temperature`` for each of the first ``--num_problems``
   distinct held-out problems of the SmolLM2 arithmetic recipe (reasoning-gym
   ``basic_arithmetic``, ``experiments/configs/smollm2_arithmetic.py``: its chat prompt and
   ``--max_new_tokens``). They are written to ``<out>/completions.jsonl`` and reused when the
   file exists.
2. Labels: the recipe's ``gsm8k_flexible`` verifier (the completion's last number).
3. The judge (``--model``, yes/no token probabilities, template ``correctness``) scores every
   completion and every item of the hostile suite (``--hostile_questions`` of its questions) in
   each defence configuration: none; each non-prompt defence alone on the plain prompt (answer
   gate, master-key filter, injection filter, verifier cascade ``positives`` and
   ``decisive``); the hardened prompt; the hardened prompt with ``--few_shot`` negatives; every
   defence on (cascade ``positives``, then ``decisive``). The three prompts are scored once each
   (the judge's cache serves the other configurations).

Printed JSON (also ``<out>/results.json``), per configuration: agreement with the verifier on the
real completions at threshold 0.5 and at the *calibrated* threshold (the score quantile at which
the judge accepts as many completions as the verifier does): accuracy, precision, recall,
Cohen's kappa; the hostile suite's false-positive rate at both thresholds (overall and per
kind); the mean score of real correct / real incorrect completions and of hostile items; judge
calls, parse failures and time. Float32 on the CPU; ``--batch_size`` rows per judge chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from typing import Dict, List, Sequence

import jax
import numpy as np

from experiments.configs import smollm2_arithmetic
from rlvr_jax.data import task as task_lib
from rlvr_jax.models import hf
from rlvr_jax.rewards import judge as judge_lib
from rlvr_jax.rewards import judge_defenses as defenses_lib
from rlvr_jax.rewards import judge_hostile as hostile_lib
from rlvr_jax.rewards import judge_rewards as jr
from rlvr_jax.rewards import verifiers
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import builders


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
  """Cohen's kappa of two binary label vectors: ``(p_o - p_e) / (1 - p_e)``."""
  a, b = np.asarray(a, bool), np.asarray(b, bool)
  p_o = float(np.mean(a == b))
  p_e = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
  return 0.0 if p_e == 1.0 else (p_o - p_e) / (1 - p_e)


def agreement(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Dict[str, float]:
  """Accuracy, precision, recall and kappa of ``scores > threshold`` against ``labels``."""
  pred, gold = np.asarray(scores) > threshold, np.asarray(labels) > 0.5
  tp = float((pred & gold).sum())
  return {"accuracy": float(np.mean(pred == gold)),
          "precision": tp / pred.sum() if pred.sum() else float("nan"),
          "recall": tp / gold.sum() if gold.sum() else float("nan"),
          "kappa": cohen_kappa(pred, gold), "accepted": float(pred.mean())}


def question_text(prompt) -> str:
  """The user's question of a chat prompt (the last user message), or the text itself."""
  if isinstance(prompt, str):
    return prompt
  return [m["content"] for m in prompt if m["role"] == "user"][-1]


def sample_completions(args, examples, model_config, params, tokenizer, config) -> List[dict]:
  """``num_samples`` completions per example, sampled in chunks of 20 prompts."""
  sampler = text_sampler.TextSampler(model_config, tokenizer, config.data.prompt_buckets,
                                     args.max_new_tokens, add_bos=config.data.add_bos,
                                     temperature=args.temperature)
  rows = []
  for c, start in enumerate(range(0, len(examples), 20)):
    chunk = examples[start:start + 20]
    padded, real = text_sampler.pad_by_repetition(chunk, 20)
    _, texts = sampler.sample(params, padded, jax.random.fold_in(jax.random.PRNGKey(args.seed), c),
                              num_samples=args.num_samples)
    for i, example in enumerate(chunk[:real]):
      for text in texts[i * args.num_samples:(i + 1) * args.num_samples]:
        rows.append({"question": question_text(example.prompt), "gold": example.answer,
                     "completion": text,
                     "verifier": verifiers.gsm8k_flexible_verifier(text, example)})
  return rows


def configurations(few_shot: int) -> Dict[str, tuple]:
  """name -> (prompt variant, Defenses)."""
  d = defenses_lib.Defenses
  rule = dict(cascade_verifier="gsm8k_flexible")
  return {
      "none": ("plain", d()),
      "answer_gate": ("plain", d(answer_gate=True)),
      "master_key_filter": ("plain", d(master_key_filter=True)),
      "injection_filter": ("plain", d(injection_filter=True)),
      "cascade_positives": ("plain", d(cascade="positives", **rule)),
      "cascade_decisive": ("plain", d(cascade="decisive", **rule)),
      "hardened_prompt": ("hardened", d(hardened_prompt=True)),
      "hardened_few_shot": ("few_shot", d(hardened_prompt=True, few_shot_negatives=few_shot)),
      "all_positives": ("few_shot", d.all_on(few_shot_negatives=few_shot, **rule)),
      "all_decisive": ("few_shot", d.all_on(few_shot_negatives=few_shot, cascade="decisive",
                                            **rule)),
  }


def _mean(x: Sequence[float]) -> float:
  return float(np.mean(x)) if len(x) else float("nan")


def main() -> None:
  """Parses flags, samples (or reuses) completions, scores them and prints the JSON."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", required=True, help="judge checkpoint (HF directory or .gguf)")
  p.add_argument("--policy", default="", help="policy checkpoint (default: --model)")
  p.add_argument("--out", default="/tmp/judge_agreement")
  p.add_argument("--num_problems", type=int, default=100)
  p.add_argument("--num_samples", type=int, default=3)
  p.add_argument("--temperature", type=float, default=1.0)
  p.add_argument("--max_new_tokens", type=int, default=32)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--few_shot", type=int, default=2)
  p.add_argument("--hostile_questions", type=int, default=2)
  p.add_argument("--batch_size", type=int, default=16)
  args = p.parse_args()
  os.makedirs(args.out, exist_ok=True)
  t0 = time.time()
  load = {"load_average_start": os.getloadavg()}
  config = smollm2_arithmetic.get_config()
  judge_config, judge_params = hf.load_hf(args.model, dtype="float32", param_dtype="float32")
  tokenizer = hf.load_tokenizer(args.model)
  timings = {"load_judge_s": time.time() - t0}

  path = os.path.join(args.out, "completions.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f]
  else:
    t = time.time()
    if args.policy and args.policy != args.model:
      policy_config, policy_params = hf.load_hf(args.policy, dtype="float32",
                                                param_dtype="float32")
      policy_tok = hf.load_tokenizer(args.policy)
    else:
      policy_config, policy_params, policy_tok = judge_config, judge_params, tokenizer
    examples = task_lib.distinct_examples(builders.build_task(config), "test",
                                          args.num_problems, seed=config.eval.seed)
    rows = sample_completions(args, examples, policy_config, policy_params, policy_tok, config)
    with open(path, "w", encoding="utf-8") as f:
      for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
    timings["sample_s"] = time.time() - t
  questions = [r["question"] for r in rows]
  completions = [r["completion"] for r in rows]
  golds = [r["gold"] for r in rows]
  labels = np.array([r["verifier"] for r in rows], np.float64)
  suite = hostile_lib.hostile_suite(hostile_lib.QUESTIONS[:args.hostile_questions])

  model = judge_lib.JudgeModel(judge_config, judge_params, tokenizer, args.model)
  settings = dict(batch_size=args.batch_size, prompt_buckets=(128, 256, 384, 512),
                  min_verdict_mass=0.0)
  judges = {"plain": judge_lib.Judge(model, **settings),
            "hardened": judge_lib.Judge(model, hardened=True, **settings),
            "few_shot": judge_lib.Judge(model, hardened=True, few_shot_negatives=args.few_shot,
                                        **settings)}
  results = {}
  for name, (variant, defenses) in configurations(args.few_shot).items():
    t = time.time()
    guarded = jr.GuardedJudge(judges[variant], defenses)
    real = guarded(questions, completions, golds)
    report = hostile_lib.false_positive_rate(guarded, suite)
    metrics = guarded.pop_metrics()
    accept = float(labels.mean())
    calibrated = float(np.quantile(real, 1 - accept)) if 0 < accept < 1 else 0.5
    hostile_cal = report.scores > calibrated
    results[name] = {
        "prompt": variant, "defenses": dataclasses.asdict(defenses),
        "agreement@0.5": agreement(real, labels, 0.5),
        "calibrated_threshold": calibrated,
        "agreement@calibrated": agreement(real, labels, calibrated),
        "hostile_fpr@0.5": {"all": report.rate, **report.by_kind},
        "hostile_fpr@calibrated": {"all": float(hostile_cal.mean()), **{
            k: float(np.mean([f for f, i in zip(hostile_cal, suite) if i.kind == k]))
            for k in report.by_kind}},
        "mean_score": {"real_correct": _mean(real[labels > 0.5]),
                       "real_incorrect": _mean(real[labels <= 0.5]),
                       "hostile_master_key": _mean([s for s, i in zip(report.scores, suite)
                                                    if i.kind == "master_key"]),
                       "hostile_injection": _mean([s for s, i in zip(report.scores, suite)
                                                   if i.kind == "injection"])},
        "judge": {k: metrics[k] for k in ("judge/judged", "judge/cache_hits",
                                          "judge/parse_failures", "judge/gated",
                                          "judge/master_keys", "judge/injections",
                                          "judge/verifier_decided", "judge/tokens_per_s")},
        "seconds": time.time() - t,
    }
    print(json.dumps({name: results[name]["agreement@calibrated"]}), flush=True)
  load["load_average_end"] = os.getloadavg()
  out = {
      "command": "python benchmarks/judge_agreement.py " + " ".join(
          f"--{k}={v}" for k, v in vars(args).items()),
      "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                  "jax_backend": jax.default_backend(), **load},
      "completions": len(rows), "problems": len(set(questions)),
      "verifier_positive_rate": float(labels.mean()), "hostile_items": len(suite),
      "timings": {**timings, "total_s": time.time() - t0}, "configurations": results,
  }
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2)
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
