"""Rewards from an LLM judge: reference-based correctness behind defences, and rubric methods.

Every function here takes flat, aligned lists (``N`` questions, responses, references, rubrics)
and a :class:`rlvr_jax.rewards.judge.Judge`, and returns ``[N]`` float64 rewards; the trainer's
group hook (:mod:`rlvr_jax.rewards.judge_group`) flattens a step's ``[P, G]`` groups into them.
Each method batches all of its judge calls (every item x criterion, both orders of a comparison)
into one :meth:`Judge.evaluate` call.

* :class:`GuardedJudge`: the binary reference-based judge ("is the final answer the reference?")
  behind the defences of :mod:`rlvr_jax.rewards.judge_defenses`; with the ``"soft"`` parser and
  ``"1"``/``"0"`` verdict words it is the model-based soft reward of Su et al., "Crossing the
  Reward Bridge: Expanding RL with Verifiable Rewards Across Diverse Domains" (arXiv 2503.23829):
  ``r = P(1)`` when the judge's greedy verdict is 1, ``1 - P(0)`` when it is 0. [experimental:
  the paper's reward-model prompt and its judging of only the response's final part were not
  reproduced; the template is this library's.]
* :func:`rlbff_rewards`: RLBFF (Wang et al., arXiv 2509.21319): the judge answers, per principle,
  whether the response satisfies it (entailment, yes/no); a response's reward is the weighted mean
  of ``P(yes)`` over its principles, a critical principle below 0.5 vetoes it (0). [experimental:
  the paper's aggregation over several principles was not found; the weighted mean is
  ``specs/rewards.md`` 8.1's choice.]
* :func:`rubric_anchor_rewards`: Rubric Anchors / Rubicon (arXiv 2508.12790): a 0-10 score per
  rubric criterion, rescaled to [0, 1], aggregated by :func:`rlvr_jax.rewards.rubric.
  rubric_aggregate` (weights, critical-criterion veto, optional saturation ``kappa``).
  [experimental: the paper's exact aggregation is not public; this is ``specs/rewards.md`` 8.2's
  template.]
* :func:`openrs_rewards`: OpenRS pairwise adaptive meta-rubrics (arXiv 2602.14069, code
  Qwen-Applications/OpenRS): each criterion compared between the response and an anchor (the
  reference answer) in both orders, signed scores aggregated by OpenRS's ``parse_pair_score``
  (critical items decide alone; ``|R| < min_score`` is 0), and the two orders combined by its
  bidirectional debiasing into +1 / 0 / -1. [experimental: OpenRS compares two policy responses;
  the reference as the anchor is this library's choice for a per-sample reward.]
* :func:`cm2_rewards`: CM2 checklist rewards (arXiv 2602.12268): the judge decides each binary
  checklist item on the response (``P(yes) >= 0.5``), scored by
  :func:`rlvr_jax.rewards.checklist.evaluate_checklist` and
  :func:`~rlvr_jax.rewards.checklist.checklist_outcome_reward` (a single-turn episode: one step).
* :func:`rlvrr_style_rewards`: RLVRR's style reward (Jiang et al., "From Verifiable Dot to Reward
  Chain", arXiv 2601.18533; code YJiangcm/RLVRR ``style_reward_func``): ``sum_k w_k 1[style point k holds]``. The released code
  checks each style point with LLM-written Python checks; here the judge decides each point
  (``P(yes) >= 0.5``; ``soft=True`` uses ``P(yes)``). [experimental: judge instead of generated
  code.] RLVRR's content reward (keyword LCS) is not a judge reward and is not built here.
* :func:`search_gen_v_rewards`: Search-Gen-V's nugget-as-rubric verifier (Ma et al., arXiv
  2510.14660; code linyue-ma/Search-Gen-V): the judge labels every nugget in one reply as
  support / partial_support / not_support, and the reward is the paper's weighted mean
  ``R = sum_i w_i V_i / sum_i w_i`` of the judgments. [experimental: the label values 1 / 0.5 / 0
  are this library's reading; the paper writes ``V`` as a real number.]

Rubrics are sequences of :class:`RubricItem` (:func:`parse_rubric` reads the JSON-friendly forms
found in ``example.metadata["rubric"]`` or in a config).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from rlvr_jax.rewards import checklist as checklist_lib
from rlvr_jax.rewards import judge as judge_lib
from rlvr_jax.rewards import judge_defenses as defenses_lib
from rlvr_jax.rewards import rubric as rubric_lib


@dataclasses.dataclass(frozen=True)
class RubricItem:
  """One criterion / principle / checklist item / nugget.

  Attributes:
    text: what the judge checks.
    weight: non-negative weight.
    critical: a veto item (Rubric Anchors, RLBFF) or a critical flaw (OpenRS).
    evidence: reference evidence shown to the judge (CM2's pass condition / evidence).
  """

  text: str
  weight: float = 1.0
  critical: bool = False
  evidence: str = ""


def parse_rubric(spec: Any) -> tuple:
  """A rubric from strings or dicts (``{"text"|"criterion"|"principle"|"nugget": ...,
  "weight": ..., "critical": ..., "evidence": ...}``); an empty spec gives ``()``."""
  items = []
  for entry in spec or ():
    if isinstance(entry, RubricItem):
      items.append(entry)
    elif isinstance(entry, str):
      items.append(RubricItem(entry))
    elif isinstance(entry, Mapping):
      text = next((entry[k] for k in ("text", "criterion", "principle", "nugget", "question")
                   if k in entry), None)
      if text is None:
        raise ValueError(f"rubric item {entry!r} has no text/criterion/principle/nugget")
      items.append(RubricItem(str(text), float(entry.get("weight", 1.0)),
                              bool(entry.get("critical", False)),
                              str(entry.get("evidence", ""))))
    else:
      raise TypeError(f"rubric items are str or dict, got {type(entry).__name__}")
  for item in items:
    if not np.isfinite(item.weight) or item.weight < 0:
      raise ValueError(f"rubric weights must be finite and >= 0, got {item.weight}")
  return tuple(items)


def _filtered(responses: Sequence[str], defenses: Optional[defenses_lib.Defenses]) -> np.ndarray:
  """``[N]`` bool: responses the master-key / injection filters zero before any judge call."""
  out = np.zeros(len(responses), bool)
  if defenses is None:
    return out
  for i, r in enumerate(responses):
    out[i] = ((defenses.master_key_filter and defenses_lib.is_master_key(r)) or
              (defenses.injection_filter and defenses_lib.addresses_grader(r)))
  return out


class GuardedJudge:
  """A reference-based correctness judge behind :class:`~.judge_defenses.Defenses`.

  ``guarded(questions, responses, references)`` returns ``[N]`` rewards in [0, 1], applying, in
  order: the verifier cascade's positives, the master-key filter, the injection filter, the answer
  gate, the cascade's decisive negatives, then the judge on what is left
  (:mod:`rlvr_jax.rewards.judge_defenses`).

  Args:
    judge: the judge; its prompt settings must match ``defenses`` (``hardened`` and the number of
      few-shot negatives).
    defenses: the switches.
  """

  def __init__(self, judge: judge_lib.Judge, defenses: defenses_lib.Defenses):
    few_shot = max(len(judge.few_shot) - 1, 0)
    if judge.hardened != defenses.hardened_prompt or few_shot != defenses.few_shot_negatives:
      raise ValueError(
          f"the judge's prompt (hardened={judge.hardened}, few-shot negatives={few_shot}) does "
          f"not match the defences (hardened_prompt={defenses.hardened_prompt}, "
          f"few_shot_negatives={defenses.few_shot_negatives}); build it with judge_for()")
    self.judge = judge
    self.defenses = defenses
    self._counts = dict(gated=0, master_keys=0, injections=0, verifier_decided=0, judged=0)
    self._score_sum, self._n = 0.0, 0

  def _verifier(self, name: str):
    from rlvr_jax.rewards import registry  # pylint: disable=g-import-not-at-top
    from rlvr_jax.rewards import verifiers  # pylint: disable=g-import-not-at-top,unused-import
    return registry.get_verifier(name)

  def __call__(self, questions: Sequence[str], responses: Sequence[str],
               references: Sequence[str], *, verifiers: Optional[Sequence[str]] = None,
               params: Any = None, version: str = "") -> np.ndarray:
    """``[N]`` rewards; ``verifiers`` names each item's rule verifier for the cascade (default:
    ``defenses.cascade_verifier`` for all)."""
    n = len(responses)
    if not len(questions) == len(references) == n:
      raise ValueError(f"need aligned lists, got {len(questions)}, {n}, {len(references)}")
    d = self.defenses
    scores = np.full(n, np.nan)
    verdicts = np.full(n, np.nan)
    if d.cascade != "off":
      names = list(verifiers) if verifiers is not None else [d.cascade_verifier] * n
      for i in range(n):
        if not names[i]:
          raise ValueError("the cascade needs a verifier: set cascade_verifier or pass verifiers")
        example = types.SimpleNamespace(prompt=questions[i], answer=references[i],
                                        verifier=names[i], metadata={})
        seen = defenses_lib.strip_question_echo(responses[i], questions[i])
        try:
          verdicts[i] = float(self._verifier(names[i])(seen, example))
        except Exception:  # pylint: disable=broad-except
          verdicts[i] = np.nan  # a verifier that fails decides nothing
      positive = verdicts >= 1.0
      scores[positive] = 1.0
      self._counts["verifier_decided"] += int(positive.sum())
    for i in range(n):
      if not np.isnan(scores[i]):
        continue
      r = responses[i]
      if d.master_key_filter and defenses_lib.is_master_key(r):
        scores[i] = 0.0
        self._counts["master_keys"] += 1
      elif d.injection_filter and defenses_lib.addresses_grader(r):
        scores[i] = 0.0
        self._counts["injections"] += 1
      elif d.answer_gate or d.cascade == "decisive":
        answer = defenses_lib.extract_final_answer(r, d.answer_kind, question=questions[i])
        if d.answer_gate and answer is None:
          scores[i] = 0.0
          self._counts["gated"] += 1
        elif d.cascade == "decisive" and answer is not None and verdicts[i] == 0.0:
          scores[i] = 0.0
          self._counts["verifier_decided"] += 1
    ask = np.flatnonzero(np.isnan(scores))
    if ask.size:
      items = [judge_lib.JudgeItem(question=questions[i], response=responses[i],
                                   reference=references[i]) for i in ask]
      scores[ask] = self.judge.score(items, params=params, version=version)
      self._counts["judged"] += int(ask.size)
    self._score_sum += float(scores.sum())
    self._n += n
    return scores

  def pop_metrics(self) -> Dict[str, float]:
    """The judge's ``judge/*`` metrics plus the defences' counts (``judge/gated``,
    ``judge/master_keys``, ``judge/injections``, ``judge/verifier_decided``, ``judge/judged``)
    and ``judge/mean_score`` since the last call; resets them."""
    out = self.judge.pop_metrics()
    out.update({f"judge/{k}": float(v) for k, v in self._counts.items()})
    out["judge/mean_score"] = self._score_sum / self._n if self._n else 0.0
    self._counts = {k: 0 for k in self._counts}
    self._score_sum, self._n = 0.0, 0
    return out


def judge_for(model: judge_lib.JudgeModel, defenses: defenses_lib.Defenses,
              **judge_kwargs) -> judge_lib.Judge:
  """A :class:`~rlvr_jax.rewards.judge.Judge` whose prompt follows ``defenses`` (hardened
  prompt, few-shot negatives); ``judge_kwargs`` are the Judge's other arguments."""
  return judge_lib.Judge(model, hardened=defenses.hardened_prompt,
                         few_shot_negatives=defenses.few_shot_negatives, **judge_kwargs)


def _aggregate(scores: Sequence[np.ndarray], rubrics: Sequence[tuple], *, mode: str,
               kappa: Optional[float] = None, min_score: float = 0.0) -> np.ndarray:
  """Per-response rubric scores (ragged) -> ``[N]`` through ``rubric_aggregate`` (``G = 1``)."""
  n = len(rubrics)
  k = max((len(r) for r in rubrics), default=0)
  if n == 0 or k == 0:
    return np.zeros(n)
  s = np.zeros((n, 1, k), np.float32)
  w = np.zeros((n, k), np.float32)
  veto = np.zeros((n, k), bool)
  valid = np.zeros((n, k), bool)
  for i, rubric in enumerate(rubrics):
    m = len(rubric)
    s[i, 0, :m] = scores[i][:m]
    w[i, :m] = [item.weight for item in rubric]
    veto[i, :m] = [item.critical for item in rubric]
    valid[i, :m] = True
  out = rubric_lib.rubric_aggregate(s, w, veto, mode=mode, item_mask=valid, kappa=kappa,
                                    min_score=min_score)
  return np.where(valid.any(-1), np.asarray(out, np.float64)[:, 0], 0.0)


def _per_criterion(judge: judge_lib.Judge, questions, responses, rubrics, references=None, *,
                   params=None, version="", skip=None) -> List[np.ndarray]:
  """One judge result per (response, criterion), batched in one call: ``N`` arrays ``[K_i]``."""
  items, owner = [], []
  for i, rubric in enumerate(rubrics):
    if skip is not None and skip[i]:
      continue
    for item in rubric:
      ref = item.evidence or (references[i] if references is not None else "")
      items.append(judge_lib.JudgeItem(question=questions[i], response=responses[i],
                                       reference=ref, criterion=item.text))
      owner.append(i)
  values = judge.score(items, params=params, version=version) if items else np.zeros(0)
  out = [np.zeros(len(r)) for r in rubrics]
  cursor = {i: 0 for i in range(len(rubrics))}
  for i, v in zip(owner, values):
    out[i][cursor[i]] = v
    cursor[i] += 1
  return out


def rlbff_rewards(judge: judge_lib.Judge, questions: Sequence[str], responses: Sequence[str],
                  rubrics: Sequence[tuple], *, defenses=None, params=None,
                  version: str = "") -> np.ndarray:
  """RLBFF: weighted mean of per-principle ``P(yes)`` (template ``"principle"``, a forward
  parser), 0 when a critical principle is below 0.5 or the response is filtered."""
  skip = _filtered(responses, defenses)
  probs = _per_criterion(judge, questions, responses, rubrics, params=params, version=version,
                         skip=skip)
  return np.where(skip, 0.0, _aggregate(probs, rubrics, mode="weighted"))


def rubric_anchor_rewards(judge: judge_lib.Judge, questions: Sequence[str],
                          responses: Sequence[str], references: Sequence[str],
                          rubrics: Sequence[tuple], *, kappa: Optional[float] = None,
                          defenses=None, params=None, version: str = "") -> np.ndarray:
  """Rubric Anchors: per-criterion scores (template ``"rubric_score"``, parser ``"number"``)
  aggregated with weights, critical-item veto (< 0.5) and optional saturation ``kappa``."""
  skip = _filtered(responses, defenses)
  scores = _per_criterion(judge, questions, responses, rubrics, references, params=params,
                          version=version, skip=skip)
  return np.where(skip, 0.0, _aggregate(scores, rubrics, mode="weighted", kappa=kappa))


def openrs_rewards(judge: judge_lib.Judge, questions: Sequence[str], responses: Sequence[str],
                   anchors: Sequence[str], rubrics: Sequence[tuple], *, min_score: float = 0.0,
                   margin: float = 0.0, defenses=None, params=None,
                   version: str = "") -> np.ndarray:
  """OpenRS: +1 / 0 / -1 from per-criterion pairwise verdicts against ``anchors`` in both orders
  (template ``"pairwise"``, parser ``"pairwise"``), see the module docstring."""
  skip = _filtered(responses, defenses)
  items, owner = [], []
  for i, rubric in enumerate(rubrics):
    if skip[i]:
      continue
    for item in rubric:
      for first, second in ((responses[i], anchors[i]), (anchors[i], responses[i])):
        items.append(judge_lib.JudgeItem(question=questions[i], response=first, other=second,
                                         criterion=item.text))
        owner.append(i)
  values = judge.score(items, params=params, version=version) if items else np.zeros(0)
  fwd = [np.zeros(len(r)) for r in rubrics]
  bwd = [np.zeros(len(r)) for r in rubrics]
  pos = {i: 0 for i in range(len(rubrics))}
  for j in range(0, len(values), 2):
    i = owner[j]
    fwd[i][pos[i]], bwd[i][pos[i]] = values[j], values[j + 1]
    pos[i] += 1
  score_fwd = _aggregate(fwd, rubrics, mode="openrs", min_score=min_score)
  score_bwd = _aggregate(bwd, rubrics, mode="openrs", min_score=min_score)
  verdict = np.asarray(rubric_lib.bidirectional_verdict(score_fwd, score_bwd, margin),
                       np.float64)
  has_items = np.array([len(r) > 0 for r in rubrics])
  return np.where(skip | ~has_items, 0.0, verdict)


def cm2_rewards(judge: judge_lib.Judge, questions: Sequence[str], responses: Sequence[str],
                rubrics: Sequence[tuple], *, threshold: float = 0.5, defenses=None,
                params=None, version: str = "") -> np.ndarray:
  """CM2: the checklist score of a single-step episode, items decided by the judge
  (``P(yes) >= threshold``; template ``"checklist"``, a forward parser)."""
  skip = _filtered(responses, defenses)
  probs = _per_criterion(judge, questions, responses, rubrics, params=params, version=version,
                         skip=skip)
  out = np.zeros(len(responses))
  for i, rubric in enumerate(rubrics):
    if skip[i] or not rubric:
      continue
    criteria = [checklist_lib.Criterion(id=str(k), turn=0, question=item.text,
                                        weight=item.weight, pass_condition=item.evidence)
                for k, item in enumerate(rubric)]
    decided = {str(k): bool(p >= threshold) for k, p in enumerate(probs[i])}
    verdicts = checklist_lib.evaluate_checklist(
        [checklist_lib.Step(turn=0, text=responses[i])], criteria,
        lambda c, evidence, trajectory: decided[c.id])
    out[i] = float(np.asarray(checklist_lib.checklist_outcome_reward(
        *[np.asarray(a)[None] for a in verdicts]))[0])
  return out


def rlvrr_style_rewards(judge: judge_lib.Judge, questions: Sequence[str],
                        responses: Sequence[str], rubrics: Sequence[tuple], *,
                        soft: bool = False, threshold: float = 0.5, defenses=None, params=None,
                        version: str = "") -> np.ndarray:
  """RLVRR style reward ``sum_k w_k 1[P_k(yes) >= threshold]`` (``soft``: ``sum_k w_k P_k``)
  over the style points (template ``"style"``, a forward parser)."""
  skip = _filtered(responses, defenses)
  probs = _per_criterion(judge, questions, responses, rubrics, params=params, version=version,
                         skip=skip)
  out = np.zeros(len(responses))
  for i, rubric in enumerate(rubrics):
    if skip[i]:
      continue
    w = np.array([item.weight for item in rubric])
    hit = probs[i] if soft else (probs[i] >= threshold).astype(np.float64)
    out[i] = float((w * hit).sum())
  return out


def search_gen_v_rewards(judge: judge_lib.Judge, questions: Sequence[str],
                         responses: Sequence[str], rubrics: Sequence[tuple], *, defenses=None,
                         params=None, version: str = "") -> np.ndarray:
  """Search-Gen-V: the weighted mean nugget label (support 1, partial 0.5, not 0) from one reply
  per response (template ``"nuggets"``, parser ``"labels"``); an unreadable reply scores 0."""
  skip = _filtered(responses, defenses)
  ask = [i for i in range(len(responses)) if not skip[i] and rubrics[i]]
  items = [judge_lib.JudgeItem(question=questions[i], response=responses[i],
                               criteria=tuple(item.text for item in rubrics[i])) for i in ask]
  out = np.zeros(len(responses))
  if items:
    for i, labels in zip(ask, judge.evaluate(items, params=params, version=version)):
      w = np.array([item.weight for item in rubrics[i]])
      out[i] = float((w * labels).sum() / w.sum()) if w.sum() > 0 else 0.0
  return out
