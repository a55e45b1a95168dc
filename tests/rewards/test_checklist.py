"""CM2 checklist rewards: judges, per-turn verdicts, turn and outcome rewards, hostile inputs."""

import json

import numpy as np
import pytest

from rlvr_jax.rewards import checklist as cl
from rlvr_jax.rewards.checklist import Criterion, RuleCheck, Step


def _weather_checklist():
  """Two turns: call the tool with the right city, then report the temperature; then convert."""
  return [
      Criterion("C0", 0, "Did the assistant call get_weather with city=Paris?", weight=0.6,
                focus_on="tool_calls",
                rule=RuleCheck("json_field", field="arguments.city", value="Paris")),
      Criterion("C1", 0, "Does the reply report the temperature 21 C?", weight=0.4,
                focus_on="reply", depends_on=("C0",), rule=RuleCheck("regex", pattern=r"\b21\s*C\b")),
      Criterion("C0", 1, "Does the reply give 69.8 F?", weight=1.0, focus_on="reply",
                rule=RuleCheck("substring", pattern="69.8 F")),
  ]


CALL = ({"name": "get_weather", "arguments": {"city": "Paris"}},)


def _honest():
  return [Step(0, "<think>need weather</think>", CALL, '{"temp_c": 21}'),
          Step(0, "<think>done</think>It is 21 C in Paris."),
          Step(1, "That is 69.8 F.")]


def _rewards(steps, criteria=None, **kw):
  v = cl.evaluate_checklist(steps, criteria or _weather_checklist(), cl.rule_judge, **kw)
  b = cl.stack_verdicts([v])
  return (np.asarray(cl.checklist_turn_rewards(*b))[0],
          float(cl.checklist_outcome_reward(*b)[0]), v)


def test_all_criteria_met_hand_computed():
  turn, outcome, v = _rewards(_honest())
  np.testing.assert_array_equal(v.satisfied, [[True, True], [True, False]])
  np.testing.assert_array_equal(v.item_mask, [[True, True], [True, False]])
  # Each full turn score (1.0) is divided by the 2 checklist turns.
  np.testing.assert_allclose(turn, [0.5, 0.5])
  assert outcome == pytest.approx(1.0)


def test_partial_and_none_met():
  wrong_city = ({"name": "get_weather", "arguments": {"city": "Lyon"}},)
  steps = [Step(0, "", wrong_city, '{"temp_c": 21}'), Step(0, "It is 21 C."), Step(1, "No idea.")]
  turn, outcome, _ = _rewards(steps)
  np.testing.assert_allclose(turn, [0.4 / 2, 0.0])  # only C1 of turn 0 (weight 0.4 of 1.0)
  assert outcome == pytest.approx(0.2)
  turn, outcome, _ = _rewards([Step(0, "hello"), Step(1, "bye")])
  np.testing.assert_allclose(turn, [0.0, 0.0])
  assert outcome == 0.0


def test_zero_turns_and_unreached_turns():
  # An episode with no steps, and a checklist with no items: all zeros, no NaN.
  turn, outcome, v = _rewards([])
  np.testing.assert_array_equal(v.turn_reached, [False, False])
  np.testing.assert_allclose(turn, [0.0, 0.0])
  empty = cl.evaluate_checklist([Step(0, "x")], [], cl.rule_judge)
  assert empty.satisfied.shape == (0, 0)
  b = cl.stack_verdicts([empty])
  assert cl.checklist_outcome_reward(*b).shape == (1,)
  # The episode stopped after turn 0: turn 1 earns nothing even though its item would pass.
  turn, _, _ = _rewards(_honest()[:2])
  np.testing.assert_allclose(turn, [0.5, 0.0])


def test_dependencies_gate_credit():
  # The reply states 21 C before any tool call: satisfied without gating, not with it.
  steps = [Step(0, "It is 21 C."), Step(0, "", CALL, "{}")]
  loose, _, _ = _rewards(steps)
  strict, _, _ = _rewards(steps, respect_dependencies=True)
  assert loose[0] == pytest.approx(0.5)
  assert strict[0] == pytest.approx(0.6 / 2)
  # A dependency satisfied at the same step unlocks its dependant whatever the column order.
  crit = [Criterion("B", 0, "q-b", depends_on=("A",), rule=RuleCheck("substring", pattern="beta")),
          Criterion("A", 0, "q-a", rule=RuleCheck("substring", pattern="alpha"))]
  v = cl.evaluate_checklist([Step(0, "alpha beta")], crit, cl.rule_judge,
                            respect_dependencies=True)
  np.testing.assert_array_equal(v.satisfied, [[True, True]])


def test_against_numpy_reference_batch():
  rng = np.random.default_rng(0)
  b, t, c = 5, 4, 3
  sat = rng.random((b, t, c)) < 0.5
  w = rng.random((b, t, c)).astype(np.float32)
  m = rng.random((b, t, c)) < 0.8
  reached = rng.random((b, t)) < 0.7
  got = np.asarray(cl.checklist_turn_rewards(sat, w, m, reached))
  want = np.zeros((b, t))
  for i in range(b):
    n = sum(m[i, j].any() for j in range(t))
    for j in range(t):
      if reached[i, j] and m[i, j].any():
        want[i, j] = (w[i, j] * sat[i, j] * m[i, j]).sum() / (w[i, j] * m[i, j]).sum() / n
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_nan_handling():
  sat = np.array([[[True, True]]])
  m = np.array([[[True, False]]])
  # NaN in a padded slot is ignored; NaN in a real item's weight poisons that turn.
  ok = cl.checklist_turn_rewards(sat, np.array([[[1.0, np.nan]]]), m, np.array([[True]]))
  np.testing.assert_allclose(ok, [[1.0]])
  bad = cl.checklist_turn_rewards(sat, np.array([[[np.nan, 1.0]]]), m, np.array([[True]]))
  assert np.isnan(np.asarray(bad)[0, 0])
  with pytest.raises(ValueError):
    Criterion("x", 0, "q", weight=float("nan"))


def test_shape_and_label_checks():
  with pytest.raises(ValueError):
    cl.checklist_turn_rewards(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2))
  with pytest.raises(ValueError):
    cl.checklist_turn_rewards(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), np.zeros((1, 2, 3)),
                              np.zeros((1, 3)))
  with pytest.raises(ValueError, match="unknown ids"):
    cl.evaluate_checklist([], [Criterion("a", 0, "q", depends_on=("zz",))], cl.rule_judge)
  with pytest.raises(ValueError, match="num_turns"):
    cl.evaluate_checklist([], [Criterion("a", 3, "q")], cl.rule_judge, num_turns=2)
  with pytest.raises(ValueError):
    RuleCheck("fuzzy", pattern="x")


def test_judge_interface_and_verdict_types():
  seen = []

  def judge(criterion, evidence, trajectory):
    seen.append((criterion.id, evidence, len(trajectory)))
    return criterion.id == "C0"

  v = cl.evaluate_checklist(_honest(), _weather_checklist(), judge)
  # Turn 0: both items judged at step 0; only C1 is re-judged at step 1 (C0 already satisfied).
  assert seen[0] == ("C0", json.dumps([dict(CALL[0])], sort_keys=True), 1)
  assert [s[0] for s in seen[:3]] == ["C0", "C1", "C1"]
  assert seen[2][1] == "It is 21 C in Paris." and seen[2][2] == 2
  np.testing.assert_array_equal(v.satisfied, [[True, False], [True, False]])
  # None (a failed judge call) is "not satisfied"; other non-bool verdicts are errors.
  v = cl.evaluate_checklist(_honest(), _weather_checklist(), lambda *a: None)
  assert not v.satisfied.any()
  with pytest.raises(TypeError):
    cl.evaluate_checklist(_honest(), _weather_checklist(), lambda *a: 1.0)


def test_llm_judge_slot():
  prompts = []

  def complete(prompt):
    prompts.append(prompt)
    return "The call matches.\nVERDICT: YES" if "get_weather" in prompt else "VERDICT: NO"

  crit = [Criterion("C0", 0, "Did it call get_weather?", focus_on="tool_calls",
                    evidence=("get_weather(city=Paris)",))]
  v = cl.evaluate_checklist([Step(0, "", CALL)], crit, cl.llm_judge(complete))
  assert v.satisfied[0, 0] and "Reference evidence" in prompts[0]
  assert cl.llm_judge(lambda p: "no verdict here")(crit[0], "x", []) is None

  def broken(prompt):
    raise RuntimeError("judge server down")

  assert cl.llm_judge(broken)(crit[0], "x", []) is None


def test_rule_kinds():
  def judge(rule, evidence, question="q"):
    return cl.rule_judge(Criterion("c", 0, question, rule=rule), evidence, [])

  assert judge(RuleCheck("exact", pattern="Paris"), "  paris ")
  assert not judge(RuleCheck("exact", pattern="Paris", case_sensitive=True), "paris")
  assert not judge(RuleCheck("exact", pattern="Paris"), "Paris, France")
  assert judge(RuleCheck("substring", pattern="21  C"), "it is 21\nC now")
  assert judge(RuleCheck("regex", pattern=r"^it is \d+"), "It is 21")
  assert judge(RuleCheck("json_field", field="name", value="f"), '{"name": "f"}')
  assert not judge(RuleCheck("json_field", field="name", value="f"), 'name: f')
  assert not judge(RuleCheck("json_field", field="a.b", value=1), '[{"a": 2}]')
  with pytest.raises(ValueError):
    cl.rule_judge(Criterion("c", 0, "q"), "x", [])


# --- hostile inputs: each must score no more than an honest failure ---------------------------

def _honest_failure_outcome():
  return _rewards([Step(0, "I could not find it."), Step(1, "Sorry.")])[1]


def test_echoing_the_criterion_earns_nothing():
  crit = _weather_checklist()
  echo = [Step(0, " ".join(c.question for c in crit)), Step(1, crit[2].question)]
  # The echo contains "21 C" and "69.8 F" (they are in the questions) but is no evidence.
  _, outcome, _ = _rewards(echo)
  assert outcome <= _honest_failure_outcome() == 0.0
  pass_cond = Criterion("p", 0, "Is the code 7Q?", pass_condition="reply contains the code 7Q",
                        rule=RuleCheck("substring", pattern="7Q"))
  assert not cl.rule_judge(pass_cond, "Sure: reply contains the code 7Q", [])
  assert cl.rule_judge(pass_cond, "The code is 7Q.", [])


def test_repeating_satisfied_evidence_earns_nothing_more():
  once = _rewards(_honest())[1]
  spam = [Step(0, "", CALL * 5, '{"temp_c": 21}')] * 4 + [
      Step(0, "It is 21 C. It is 21 C. It is 21 C.")] * 3 + [Step(1, "69.8 F " * 10)]
  assert _rewards(spam)[1] == pytest.approx(once)
  # Repeating turn-0 evidence in turn 1 cannot satisfy turn 1's item.
  crossed = [Step(0, "", CALL), Step(0, "21 C"), Step(1, "", CALL), Step(1, "21 C, 21 C")]
  assert _rewards(crossed)[0][1] == 0.0


def test_json_rule_is_not_fooled_by_text():
  # Writing the call as prose, or the JSON in the reply, does not satisfy a tool_calls item.
  fake = [Step(0, 'get_weather(city="Paris") {"arguments": {"city": "Paris"}}'),
          Step(1, "")]
  turn, _, _ = _rewards(fake)
  assert turn[0] == 0.0
