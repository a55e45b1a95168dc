"""Evaluation driver: sample ``n`` completions per prompt, score them, report pass@k, maj@k, mean@n.

The pieces, usable separately:

* a *sample function* ``sample_fn(examples, rng, n) -> texts`` returns ``len(examples) * n``
  completion texts, prompt-major (:meth:`rlvr_jax.rollout.text_sampler.TextSampler.sample_fn`,
  or :func:`make_sample_fn` from params, a model config and a tokenizer; tests pass their own);
* a *score function* ``score_fn(texts, examples) -> scores`` (default :func:`score_with_registry`:
  each example's registered verifier, in this process, an exception scoring 0; the trainer's
  worker-pool scorer fits the same signature);
* :func:`evaluate_examples` batches prompts, samples, scores, extracts each completion's final
  answer for majority voting, and summarises with :func:`rlvr_jax.eval.metrics.summarize`.

Metrics (``EvalResult.metrics``), averaged over problems:

* ``pass@k``: unbiased pass@k (Chen et al. 2021, arXiv 2107.03374) from ``n`` samples and
  ``c`` correct, ``1 - C(n-c, k) / C(n, k)``;
* ``maj@k``: whether the majority final answer of ``k`` samples is correct, in expectation over
  ``k``-subsets of the ``n`` (exact enumeration or Monte Carlo, see ``metrics.maj_at_k``);
  answers are compared as whitespace-normalised strings after the verifier's own extraction;
* ``mean@n``: mean correctness of the ``n`` samples (the unbiased pass@1 estimate);
* ``mean_score``: mean raw verifier score (differs from ``mean@n`` for partial-credit
  verifiers such as reasoning-gym's);
* ``num_problems``;
* ``greedy_accuracy``: with a ``greedy_fn``, the fraction of problems whose one greedy
  completion is correct.

A sample is *correct* when its score is ``>= correct_threshold`` (1.0: full marks). Heavy modules
(models, rollout) are imported only by :func:`make_sample_fn`, so ``rlvr_jax.eval`` stays light.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from rlvr_jax.data import task as task_lib
from rlvr_jax.rewards import registry
from rlvr_jax.rewards import verifiers as verifiers_lib
from rlvr_jax.eval import metrics as metrics_lib

SampleFn = Callable[[Sequence[task_lib.Example], Any, int], List[str]]
ScoreFn = Callable[[Sequence[str], Sequence[task_lib.Example]], np.ndarray]


def _procedural_final(completion: str) -> Optional[str]:
  from rlvr_jax.data import procedural  # pylint: disable=g-import-not-at-top
  return procedural.extract_final(completion)


def _math_final(completion: str) -> Optional[str]:
  from rlvr_jax.rewards import math as math_rewards  # pylint: disable=g-import-not-at-top
  return math_rewards.extract_answer(completion)


# Final-answer extraction per verifier, for majority voting: the same text the verifier judges.
_ANSWER_EXTRACTORS: Dict[str, Callable[[str], Optional[str]]] = {
    "exact": lambda c: c,
    "answer_tag": verifiers_lib.extract_answer_tag,
    "reasoning_gym": verifiers_lib.extract_answer_tag,
    "boxed": verifiers_lib.extract_boxed,
    "gsm8k": lambda c: verifiers_lib.extract_gsm8k(c, flexible=False),
    "gsm8k_flexible": lambda c: verifiers_lib.extract_gsm8k(c, flexible=True),
    "math": _math_final,
    "procedural/integer": _procedural_final,
    "procedural/countdown": _procedural_final,
}


def register_answer_extractor(verifier: str, fn: Callable[[str], Optional[str]]) -> None:
  """Sets how the final answer of a completion scored by ``verifier`` is found (for maj@k)."""
  _ANSWER_EXTRACTORS[verifier] = fn


def extract_final_answer(completion: str, verifier: str) -> Optional[str]:
  """The whitespace-normalised final answer, or None (no vote).

  Verifiers without a registered extractor vote with their whole completion.
  """
  answer = _ANSWER_EXTRACTORS.get(verifier, lambda c: c)(completion)
  if answer is None:
    return None
  answer = verifiers_lib.normalize_text(answer)
  return answer or None


def score_with_registry(completions: Sequence[str],
                        examples: Sequence[task_lib.Example]) -> np.ndarray:
  """``[len]`` float64 scores from each example's registered verifier; an exception scores 0.

  Runs in this process: no timeout beyond what a verifier enforces itself (``"math"`` runs in a
  worker with a hard timeout). Pass the trainer's ``RewardScorer`` for a bounded pool instead.
  """
  if len(completions) != len(examples):
    raise ValueError(f"{len(completions)} completions for {len(examples)} examples.")
  scores = np.zeros(len(completions), np.float64)
  for i, (completion, example) in enumerate(zip(completions, examples)):
    try:
      scores[i] = float(registry.get_verifier(example.verifier)(completion, example))
    except Exception:  # pylint: disable=broad-except
      # One broken completion or verifier must not abort an evaluation run.
      scores[i] = 0.0
  return scores


@dataclasses.dataclass
class EvalResult:
  """Outcome of :func:`evaluate_examples`.

  Attributes:
    metrics: ``pass@k``, ``maj@k`` for each k, ``mean@n``, ``mean_score``, ``num_problems``.
    groups: :func:`rlvr_jax.eval.metrics.summarize` output per grouping (``"all"`` included).
    records: one dict per problem: ``prompt``, ``answer``, ``verifier``, ``metadata``,
      ``completions`` (when kept), ``scores``, ``correct``, ``final_answers``, ``answer_ids``.
  """

  metrics: Dict[str, float]
  groups: Dict[str, Dict[str, float]]
  records: List[Dict[str, Any]]


def evaluate_examples(sample_fn: SampleFn, examples: Sequence[task_lib.Example], rng: Any, *,
                      num_samples: int, ks: Sequence[int] = (1,), batch_size: int = 32,
                      score_fn: Optional[ScoreFn] = None, correct_threshold: float = 1.0,
                      by: Sequence[Sequence[str]] = (), keep_completions: bool = True,
                      maj_num_samples: int = 1000, seed: int = 42,
                      greedy_fn: Optional[SampleFn] = None) -> EvalResult:
  """Samples ``num_samples`` completions per example, scores them, and summarises.

  Args:
    sample_fn: ``(examples, rng, n) -> texts`` (prompt-major, ``len(examples) * n`` texts).
    examples: the evaluation problems.
    rng: PRNG key; batch ``i`` uses ``jax.random.fold_in(rng, i)``.
    num_samples: ``n`` completions per problem; every ``k`` in ``ks`` must be ``<= n``.
    ks: the k of pass@k and maj@k.
    batch_size: prompts per ``sample_fn`` call. The last batch is padded by repeating its last
      example (the padding's samples are dropped), so every call has the same shape and a
      jit-compiled sampler compiles once.
    score_fn: ``(texts, examples) -> scores``; default :func:`score_with_registry`.
    correct_threshold: a sample is correct when its score is at least this.
    by: metadata groupings for per-group metrics, e.g. ``[("level",)]``.
    keep_completions: store completion texts in the records.
    maj_num_samples, seed: Monte-Carlo settings of maj@k (see ``metrics.maj_at_k``).
    greedy_fn: optional greedy sample function (``n`` is 1); adds ``greedy_accuracy``, the
      fraction of problems whose greedy completion is correct, and each record's
      ``greedy_score``.

  Returns:
    :class:`EvalResult`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from rlvr_jax.rewards import pseudo_labels  # pylint: disable=g-import-not-at-top
  if not examples:
    raise ValueError("evaluate_examples needs at least one example.")
  bad = [k for k in ks if not 1 <= k <= num_samples]
  if bad:
    raise ValueError(f"every k must be in [1, num_samples={num_samples}]; got {bad}.")
  score_fn = score_fn or score_with_registry
  records: List[Dict[str, Any]] = []
  for batch_index, start in enumerate(range(0, len(examples), batch_size)):
    chunk = list(examples[start:start + batch_size])
    real = len(chunk)
    chunk += [chunk[-1]] * (batch_size - real)
    texts = list(sample_fn(chunk, jax.random.fold_in(rng, batch_index), num_samples))
    if len(texts) != batch_size * num_samples:
      raise ValueError(f"sample_fn returned {len(texts)} texts for {batch_size} prompts x "
                       f"{num_samples} samples.")
    texts = texts[:real * num_samples]
    repeated = [e for e in chunk[:real] for _ in range(num_samples)]
    scores = np.asarray(score_fn(texts, repeated), np.float64).reshape(real, num_samples)
    if greedy_fn is not None:
      greedy_texts = list(greedy_fn(chunk, jax.random.fold_in(rng, batch_index), 1))[:real]
      greedy_scores = np.asarray(score_fn(greedy_texts, chunk[:real]), np.float64)
    finals = [[extract_final_answer(texts[p * num_samples + j], chunk[p].verifier)
               for j in range(num_samples)] for p in range(real)]
    codes = np.asarray(pseudo_labels.canonicalize_answers(finals))
    for p in range(real):
      ex = chunk[p]
      record = {
          "prompt": ex.prompt, "answer": ex.answer, "verifier": ex.verifier,
          "metadata": dict(ex.metadata),
          "scores": scores[p].tolist(),
          "correct": (scores[p] >= correct_threshold).tolist(),
          "final_answers": finals[p],
          "answer_ids": codes[p].tolist(),
      }
      if keep_completions:
        record["completions"] = texts[p * num_samples:(p + 1) * num_samples]
      if greedy_fn is not None:
        record["greedy_score"] = float(greedy_scores[p])
        if keep_completions:
          record["greedy_completion"] = greedy_texts[p]
      records.append(record)
  groups = metrics_lib.summarize(records, ks=ks, by=by, maj_num_samples=maj_num_samples,
                                 seed=seed)
  overall = dict(groups["all"])
  metrics = {key: float(value) for key, value in overall.items() if key != "mean@n"}
  metrics[f"mean@{num_samples}"] = float(overall["mean@n"])
  metrics["mean_score"] = float(np.mean([np.mean(r["scores"]) for r in records]))
  if greedy_fn is not None:
    metrics["greedy_accuracy"] = float(np.mean(
        [r["greedy_score"] >= correct_threshold for r in records]))
  return EvalResult(metrics=metrics, groups=groups, records=records)


def make_sample_fn(params: Any, model_config: Any, tokenizer: Any, *, max_new_tokens: int,
                   prompt_buckets: Sequence[int], add_bos: bool = False,
                   temperature: float = 1.0, top_p: Optional[float] = None,
                   top_k: Optional[int] = None) -> SampleFn:
  """A sample function over :class:`rlvr_jax.rollout.text_sampler.TextSampler` (prompt
  rendering, bucketing, stop tokens and decoding as in training); ``temperature=0`` is greedy."""
  from rlvr_jax.rollout import text_sampler  # pylint: disable=g-import-not-at-top
  sampler = text_sampler.TextSampler(model_config, tokenizer, tuple(prompt_buckets),
                                     max_new_tokens, add_bos=add_bos, temperature=temperature,
                                     top_p=top_p, top_k=top_k)
  return sampler.sample_fn(params)


def evaluate_policy(sampler: Any, params: Any, examples: Sequence[task_lib.Example], rng: Any, *,
                    num_samples: int, batch_size: int, score_fn: Optional[ScoreFn] = None,
                    greedy: bool = True) -> Dict[str, float]:
  """The RL loop's held-out metrics of a policy: ``pass@1`` (from ``num_samples`` samples per
  problem at the sampler's temperature) and, with ``greedy``, ``greedy_accuracy``.

  ``sampler`` is a :class:`rlvr_jax.rollout.text_sampler.TextSampler`; this is
  :func:`evaluate_examples` with its sample functions, no completions kept.
  """
  result = evaluate_examples(
      sampler.sample_fn(params), examples, rng, num_samples=num_samples, ks=(1,),
      batch_size=batch_size, score_fn=score_fn, keep_completions=False,
      greedy_fn=sampler.sample_fn(params, temperature=0.0) if greedy else None)
  keys = ("pass@1", "greedy_accuracy") if greedy else ("pass@1",)
  return {k: result.metrics[k] for k in keys}


def write_results(out_dir: str, result: EvalResult, *,
                  extra: Optional[Mapping[str, Any]] = None) -> Dict[str, str]:
  """Writes ``eval_metrics.json`` (metrics, groups, ``extra``) and ``eval_samples.jsonl``."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {"metrics": os.path.join(out_dir, "eval_metrics.json"),
           "samples": os.path.join(out_dir, "eval_samples.jsonl")}
  with open(paths["metrics"], "w", encoding="utf-8") as f:
    # default=repr: a metadata value JSON cannot hold is recorded as its repr, not dropped.
    json.dump({"metrics": result.metrics, "groups": result.groups, **dict(extra or {})}, f,
              indent=2, sort_keys=True, default=repr)
  with open(paths["samples"], "w", encoding="utf-8") as f:
    for record in result.records:
      f.write(json.dumps(record, ensure_ascii=False, default=repr) + "\n")
  return paths
