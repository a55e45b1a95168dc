"""CM2 checklist rewards for multi-turn, multi-step tool use (arXiv 2602.12268).

CM2 replaces a verifiable outcome with a per-turn checklist of binary, evidence-grounded
criteria ("dense criteria") and pays the checklist score once per user turn, at the turn's end
("sparse assignment"). Verified against the authors' code (namezhenzhang/CM2-RLCR-Tool-Agent
@2758991: ``verl/workers/reward_manager/checklist.py``, default ``reward_level="turn"``, and the
labelling prompt ``pipeline/prompts/checklist_labeling_prompt_v3.txt``):

* A checklist item belongs to one turn, has a weight (weights sum to 1 per turn), a
  ``focus_on`` field (which part of the interaction it is judged on), evidence snippets from the
  reference trajectory, and ``depends_on`` ids of items of the same turn.
* The judge is asked, for every assistant step (with its tool output), which items that step
  satisfies; an item counts for its turn if **any** step of that turn satisfied it:
  ``sat_{t,k} = OR_{s in turn t} judge(k, s)``. Satisfying an item twice earns nothing more.
* Turn reward ``r_t = sum_k w_{t,k} sat_{t,k} / N_turns`` (CM2 divides by the number of
  checklist turns, and by the number of checklists when several were labelled), placed at the
  last token of the turn's last step; a turn the episode never reached earns 0.

Here :func:`evaluate_checklist` runs the judge on the host, and :func:`checklist_turn_rewards`
(``[B, T]``, per turn) / :func:`checklist_outcome_reward` (``[B]``, their sum, for a
trajectory-level assignment) turn the verdicts into rewards. Differences from the code:

* Weights are divided by their per-turn sum, so unnormalised labels still give scores in
  ``[0, 1]`` (identical for CM2's labels, which sum to 1).
* ``respect_dependencies=True`` credits an item only at a step where all its dependencies are
  already satisfied within the turn (CM2 applies this gating only in its step-level mode; the
  default ``False`` is its turn-level behaviour).
* CM2's step-level mode (per-item group statistics turned into step advantages) is an advantage
  estimator and is not implemented here.

A judge is any callable ``judge(criterion, evidence, trajectory) -> bool``: ``evidence`` is the
text of the judged step selected by ``criterion.focus_on``, ``trajectory`` the steps up to and
including it. :func:`rule_judge` checks regex / substring / exact-match / JSON-field rules;
:func:`llm_judge` wraps a user's text-completion function (an LLM judge is not built here).
Judge verdicts must be ``True``/``False``; ``None`` (a failed judge call) counts as not
satisfied, anything else is an error.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

FOCUS_FIELDS = ("any", "reply", "thinking", "tool_calls", "observation")
RULE_KINDS = ("substring", "regex", "exact", "json_field")

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Step:
  """One assistant step of an episode and the tool output that answered it.

  Attributes:
    turn: 0-based index of the user turn the step belongs to.
    text: the assistant message (its private ``<think>...</think>`` part and its reply).
    tool_calls: the calls it made, each a mapping ``{"name": str, "arguments": {...}}``.
    observation: the tool output returned to this step (``""`` when none).
  """
  turn: int
  text: str = ""
  tool_calls: Tuple[Mapping[str, Any], ...] = ()
  observation: str = ""


@dataclasses.dataclass(frozen=True)
class RuleCheck:
  """A rule :func:`rule_judge` applies to a step's focused evidence.

  Attributes:
    kind: ``"substring"`` (``pattern`` occurs), ``"regex"`` (``re.search`` finds ``pattern``),
      ``"exact"`` (the stripped evidence equals ``pattern``) or ``"json_field"`` (the evidence
      parses as JSON, an object or a list of objects, and one object's dotted ``field``, e.g.
      ``"arguments.city"``, equals ``value``).
    pattern: the string or regex for the text kinds.
    field: dotted path for ``"json_field"``.
    value: expected JSON value for ``"json_field"`` (compared with ``==`` after parsing).
    case_sensitive: for the text kinds.
  """
  kind: str
  pattern: str = ""
  field: str = ""
  value: Any = None
  case_sensitive: bool = False

  def __post_init__(self):
    if self.kind not in RULE_KINDS:
      raise ValueError(f"kind must be one of {RULE_KINDS}, got {self.kind!r}")
    if self.kind == "json_field" and not self.field:
      raise ValueError("a json_field rule needs a field")
    if self.kind != "json_field" and not self.pattern:
      raise ValueError(f"a {self.kind} rule needs a non-empty pattern")


@dataclasses.dataclass(frozen=True)
class Criterion:
  """One binary checklist item (CM2's labelled item).

  Attributes:
    id: unique within its turn; ``depends_on`` refers to it.
    turn: the user turn it belongs to.
    question: the yes/no question put to a judge.
    weight: non-negative; normalised per turn.
    focus_on: which part of a step is the evidence: one of :data:`FOCUS_FIELDS`.
    pass_condition: the objective pass condition (for an LLM judge).
    evidence: reference snippets from the labelled trajectory (for an LLM judge).
    depends_on: ids of items of the same turn that must be satisfied first (used when
      ``respect_dependencies=True``).
    rule: the rule for :func:`rule_judge`; None for judges that do not need one.
  """
  id: str
  turn: int
  question: str
  weight: float = 1.0
  focus_on: str = "any"
  pass_condition: str = ""
  evidence: Tuple[str, ...] = ()
  depends_on: Tuple[str, ...] = ()
  rule: Optional[RuleCheck] = None

  def __post_init__(self):
    if self.focus_on not in FOCUS_FIELDS:
      raise ValueError(f"focus_on must be one of {FOCUS_FIELDS}, got {self.focus_on!r}")
    if self.turn < 0:
      raise ValueError(f"turn must be >= 0, got {self.turn}")
    if not np.isfinite(self.weight) or self.weight < 0:
      raise ValueError(f"weight must be finite and >= 0, got {self.weight}")


Judge = Callable[[Criterion, str, Sequence[Step]], Optional[bool]]


def focused_evidence(step: Step, focus_on: str) -> str:
  """The part of ``step`` a criterion with this ``focus_on`` is judged on.

  ``"reply"`` is the text without its ``<think>`` blocks, ``"thinking"`` their contents,
  ``"tool_calls"`` the calls as a JSON list (keys sorted), ``"observation"`` the tool output,
  ``"any"`` all four joined by newlines.
  """
  if focus_on == "reply":
    return _THINK.sub("", step.text).strip()
  if focus_on == "thinking":
    return "\n".join(m.strip() for m in _THINK.findall(step.text))
  if focus_on == "tool_calls":
    return json.dumps([dict(c) for c in step.tool_calls], sort_keys=True) if step.tool_calls else ""
  if focus_on == "observation":
    return step.observation
  if focus_on == "any":
    return "\n".join(focused_evidence(step, f) for f in FOCUS_FIELDS[1:])
  raise ValueError(f"focus_on must be one of {FOCUS_FIELDS}, got {focus_on!r}")


def _without_echo(evidence: str, criterion: Criterion, case_sensitive: bool) -> str:
  """Whitespace-collapsed evidence with verbatim copies of the criterion's own text removed.

  A policy that repeats the question ("Did the assistant report 42?") or the pass condition
  must not satisfy a substring or regex rule that this text itself would satisfy. The
  reference evidence snippets are not removed: a correct step may legitimately reproduce them.
  Lower-cased unless ``case_sensitive``.
  """
  fold = (lambda x: " ".join(x.split())) if case_sensitive else (
      lambda x: " ".join(x.split()).lower())
  text = fold(evidence)
  for echo in (criterion.question, criterion.pass_condition):
    e = fold(echo)
    if e:
      text = text.replace(e, " ")
  return text


def _field(obj: Any, path: str) -> Tuple[bool, Any]:
  for key in path.split("."):
    if not isinstance(obj, Mapping) or key not in obj:
      return False, None
    obj = obj[key]
  return True, obj


def rule_judge(criterion: Criterion, evidence: str, trajectory: Sequence[Step]) -> bool:
  """Rule-based judge: applies ``criterion.rule`` to ``evidence`` (``trajectory`` is unused).

  Text rules (substring, regex) match whitespace-collapsed evidence (case-folded unless
  ``case_sensitive``) from which verbatim echoes of the criterion's question and pass condition
  were removed. ``"exact"`` compares the stripped evidence.
  ``"json_field"`` needs the evidence to parse as JSON; it never matches free text.
  """
  del trajectory
  rule = criterion.rule
  if rule is None:
    raise ValueError(f"criterion {criterion.id!r} has no rule for the rule judge")
  if rule.kind == "exact":
    a, b = evidence.strip(), rule.pattern.strip()
    return a == b if rule.case_sensitive else a.lower() == b.lower()
  if rule.kind == "json_field":
    try:
      parsed = json.loads(evidence)
    except (TypeError, ValueError):
      return False
    items = parsed if isinstance(parsed, list) else [parsed]
    for item in items:
      found, value = _field(item, rule.field)
      if found and value == rule.value:
        return True
    return False
  text = _without_echo(evidence, criterion, rule.case_sensitive)
  if rule.kind == "substring":
    pattern = " ".join(rule.pattern.split())
    return (pattern if rule.case_sensitive else pattern.lower()) in text
  flags = 0 if rule.case_sensitive else re.IGNORECASE
  return re.search(rule.pattern, text, flags) is not None


def judge_prompt(criterion: Criterion, evidence: str) -> str:
  """A plain prompt asking an LLM judge for a YES/NO verdict on one criterion and one step."""
  ref = "\n".join(f"- {e}" for e in criterion.evidence) or "- (none)"
  return ("You are checking one step of an assistant's tool-use episode against one criterion.\n"
          f"Criterion: {criterion.question}\n"
          f"Pass condition: {criterion.pass_condition or criterion.question}\n"
          f"Reference evidence from a correct episode:\n{ref}\n"
          f"Part of the step to judge ({criterion.focus_on}):\n<<<\n{evidence}\n>>>\n"
          "Answer with a final line 'VERDICT: YES' or 'VERDICT: NO'.")


_VERDICT = re.compile(r"VERDICT:\s*(YES|NO)\b", re.IGNORECASE)


def llm_judge(complete: Callable[[str], str]) -> Judge:
  """Wraps a text-completion function (prompt -> reply) as a judge.

  The reply's last ``VERDICT: YES|NO`` decides; a reply without one (or a call that raises)
  gives ``None``, which :func:`evaluate_checklist` counts as not satisfied.
  """

  def judge(criterion: Criterion, evidence: str, trajectory: Sequence[Step]) -> Optional[bool]:
    del trajectory
    try:
      reply = complete(judge_prompt(criterion, evidence))
    except Exception:  # pylint: disable=broad-except
      # A judge outage must cost the sample its credit, never the training run.
      return None
    found = _VERDICT.findall(reply or "")
    return None if not found else found[-1].upper() == "YES"

  return judge


def _verdict(v: Any, criterion: Criterion) -> bool:
  if v is None:
    return False
  if isinstance(v, (bool, np.bool_)):
    return bool(v)
  raise TypeError(f"judge returned {v!r} for criterion {criterion.id!r}; need True, False or None")


class ChecklistVerdicts(NamedTuple):
  """Judged checklist of one episode (``[T, C]``) or a batch (``[B, T, C]``).

  Attributes:
    satisfied: bool, item satisfied in its turn.
    weights: float32 item weights (0 on padding).
    item_mask: bool, real items (False on padding).
    turn_reached: bool ``[..., T]``, the episode had at least one step in the turn.
  """
  satisfied: np.ndarray
  weights: np.ndarray
  item_mask: np.ndarray
  turn_reached: np.ndarray


def evaluate_checklist(steps: Sequence[Step],
                       criteria: Sequence[Criterion],
                       judge: Judge,
                       *,
                       num_turns: Optional[int] = None,
                       respect_dependencies: bool = False) -> ChecklistVerdicts:
  """Runs ``judge`` over an episode's steps and returns the per-turn checklist verdicts.

  Each step of turn ``t`` is judged on the turn's items not yet satisfied (once per item and
  step); an item is satisfied for the turn when any step satisfies it. With
  ``respect_dependencies`` an item is judged at a step only once every id in its
  ``depends_on`` is satisfied (at that step or earlier in the turn). Steps of turns without
  items are not judged.

  Args:
    steps: the episode's assistant steps in order.
    criteria: the checklist; items of a turn keep their order as columns.
    judge: ``judge(criterion, evidence, trajectory) -> bool | None``.
    num_turns: ``T``; default ``1 + max(criterion.turn)`` (0 for an empty checklist).
    respect_dependencies: see above.

  Returns:
    :class:`ChecklistVerdicts` with ``[T, C]`` arrays, ``C`` the largest number of items in a
    turn.
  """
  n_turns = (1 + max((c.turn for c in criteria), default=-1)) if num_turns is None else num_turns
  by_turn: List[List[Criterion]] = [[] for _ in range(n_turns)]
  for c in criteria:
    if c.turn >= n_turns:
      raise ValueError(f"criterion {c.id!r} is for turn {c.turn} but num_turns={n_turns}")
    by_turn[c.turn].append(c)
  for items in by_turn:
    ids = [c.id for c in items]
    if len(set(ids)) != len(ids):
      raise ValueError(f"duplicate criterion ids in one turn: {ids}")
    for c in items:
      missing = set(c.depends_on) - set(ids)
      if missing:
        raise ValueError(f"criterion {c.id!r} depends on unknown ids {sorted(missing)}")
  width = max((len(items) for items in by_turn), default=0)
  satisfied = np.zeros((n_turns, width), bool)
  weights = np.zeros((n_turns, width), np.float32)
  item_mask = np.zeros((n_turns, width), bool)
  reached = np.zeros((n_turns,), bool)
  for t, items in enumerate(by_turn):
    for k, c in enumerate(items):
      weights[t, k] = c.weight
      item_mask[t, k] = True

  for i, step in enumerate(steps):
    if step.turn < 0:
      raise ValueError(f"step {i} has a negative turn {step.turn}")
    if step.turn >= n_turns:
      continue
    t = step.turn
    reached[t] = True
    items = by_turn[t]
    judged = set()
    # Repeat until no new item becomes judgeable, so a dependency satisfied at this step
    # unlocks its dependants at the same step whatever their column order.
    changed = True
    while changed:
      changed = False
      for k, c in enumerate(items):
        if satisfied[t, k] or k in judged:
          continue
        if respect_dependencies:
          done = {items[j].id for j in range(len(items)) if satisfied[t, j]}
          if not set(c.depends_on) <= done:
            continue
        judged.add(k)
        if _verdict(judge(c, focused_evidence(step, c.focus_on), steps[:i + 1]), c):
          satisfied[t, k] = True
          changed = True
  return ChecklistVerdicts(satisfied, weights, item_mask, reached)


def stack_verdicts(verdicts: Sequence[ChecklistVerdicts]) -> ChecklistVerdicts:
  """Pads per-episode verdicts to the batch's largest ``T`` and ``C`` and stacks them."""
  n_turns = max((v.satisfied.shape[0] for v in verdicts), default=0)
  width = max((v.satisfied.shape[1] for v in verdicts), default=0)
  b = len(verdicts)
  out = ChecklistVerdicts(np.zeros((b, n_turns, width), bool),
                          np.zeros((b, n_turns, width), np.float32),
                          np.zeros((b, n_turns, width), bool), np.zeros((b, n_turns), bool))
  for i, v in enumerate(verdicts):
    t, c = v.satisfied.shape
    out.satisfied[i, :t, :c] = v.satisfied
    out.weights[i, :t, :c] = v.weights
    out.item_mask[i, :t, :c] = v.item_mask
    out.turn_reached[i, :t] = v.turn_reached
  return out


@jax.jit
def checklist_turn_rewards(satisfied: Array, weights: Array, item_mask: Array,
                           turn_reached: Array) -> Array:
  """CM2 turn-level rewards ``r_t = 1[reached_t] * score_t / N_turns``.

  ``score_t = sum_k w_k sat_k / sum_k w_k`` over the turn's real items (``[0, 1]``; CM2's
  labelled weights already sum to 1) and ``N_turns`` counts the turns with at least one real
  item (CM2's ``len(checklist)``). A turn without items, or not reached, gets 0; an episode
  without any items gets 0 everywhere. Summed over turns the rewards are the mean turn score.

  Numerics: padding may hold anything (NaN included) and is ignored; a NaN weight of a real
  item makes that turn's reward NaN (a broken label is never read as 0).

  Args:
    satisfied: ``[B, T, C]`` bool/0-1.
    weights: ``[B, T, C]`` non-negative.
    item_mask: ``[B, T, C]`` bool, real items.
    turn_reached: ``[B, T]`` bool.

  Returns:
    ``[B, T]`` float32 rewards, to be placed at the end of each turn.
  """
  sat = jnp.asarray(satisfied)
  w = jnp.asarray(weights, jnp.float32)
  m = jnp.asarray(item_mask, bool)
  reached = jnp.asarray(turn_reached, bool)
  if sat.ndim != 3 or w.shape != sat.shape or m.shape != sat.shape:
    raise ValueError(f"need satisfied, weights, item_mask [B,T,C]; got {sat.shape}, {w.shape}, "
                     f"{m.shape}")
  if reached.shape != sat.shape[:2]:
    raise ValueError(f"turn_reached must be [B,T] = {sat.shape[:2]}, got {reached.shape}")
  w = jnp.where(m, w, 0.0)
  hit = jnp.where(m, sat.astype(bool), False)
  total_w = w.sum(-1)
  score = jnp.where(hit, w, 0.0).sum(-1) / jnp.where(total_w > 0, total_w, 1.0)
  has_items = m.any(-1)
  n_turns = has_items.sum(-1, keepdims=True).astype(jnp.float32)
  r = jnp.where(reached & has_items, score, 0.0) / jnp.maximum(n_turns, 1.0)
  return r


@jax.jit
def checklist_outcome_reward(satisfied: Array, weights: Array, item_mask: Array,
                             turn_reached: Array) -> Array:
  """Trajectory-level assignment: ``R = sum_t r_t`` of :func:`checklist_turn_rewards`, ``[B]``.

  The mean over checklist turns of the turn scores, in ``[0, 1]``; paid once at the episode's
  end (the sparsest assignment of the same dense criteria).
  """
  return checklist_turn_rewards(satisfied, weights, item_mask, turn_reached).sum(-1)
