"""RLVMR meta-reasoning rewards and GRPO-MR advantages, with hostile tag usage."""

import numpy as np
import pytest

from rlvr_jax.rewards import meta_reasoning as mr


def step(tag, body, action):
  head = f"<{tag}>{body}</{tag}>" if tag else body
  return f"{head}<action>{action}</action>"


def test_rules_hand_computed():
  texts = [step("planning", "step 1: find mug, step 2: heat it", "go to cabinet 1"),
           step("explore", "mug may be on the shelf", "go to shelf 1"),
           step("explore", "try the shelf again", "go to shelf 1"),     # repeated action
           step("monitor", "on track", "take mug 1 from shelf 1"),      # invalid in env
           step("reflection", "that failed, open it first", "open shelf 1"),
           step("reflection", "still fine", "take mug 1 from shelf 1")]  # previous was valid
  valid = [True, True, True, False, True, True]
  r, tags = mr.meta_reasoning_rewards(texts, valid, success=True)
  np.testing.assert_array_equal(r, [1, 1, 0, 0, 1, 0])
  np.testing.assert_array_equal(tags, [1, 2, 2, 0, 3, 3])
  # Planning pays only in successful episodes; the others do not depend on the outcome.
  r_fail, _ = mr.meta_reasoning_rewards(texts, valid, success=False)
  np.testing.assert_array_equal(r_fail, [0, 1, 0, 0, 1, 0])
  r_scaled, _ = mr.meta_reasoning_rewards(texts, valid, True, planning_reward=0.5,
                                          exploration_reward=0.2, reflection_reward=0.3)
  np.testing.assert_allclose(r_scaled, [0.5, 0.2, 0, 0, 0.3, 0])


def test_edge_cases():
  r, tags = mr.meta_reasoning_rewards([], [], True)
  assert r.shape == (0,) and tags.shape == (0,)
  with pytest.raises(ValueError):
    mr.meta_reasoning_rewards(["a"], [True, False], True)
  with pytest.raises(TypeError):
    mr.meta_reasoning_rewards(["a"], [True], float("nan"))
  rewards, tags, mask, valid = mr.meta_reasoning_batch(
      [[step("explore", "x", "a")], []], [[True], []], [False, True])
  np.testing.assert_array_equal(mask, [[True], [False]])
  np.testing.assert_array_equal(rewards, [[1.0], [0.0]])
  np.testing.assert_array_equal(valid, [[True], [False]])


# --- hostile inputs -------------------------------------------------------------------------

def test_every_tag_or_empty_tags_earn_nothing():
  honest = [step("planning", "step 1: a, step 2: b", "go to a"), step("explore", "b?", "go to b")]
  spam = ["<planning>p</planning><explore>e</explore><reflection>r</reflection>"
          "<action>go to a</action>",
          "<planning></planning><explore> </explore><action>go to b</action>"]
  r_honest, _ = mr.meta_reasoning_rewards(honest, [True, True], True)
  r_spam, tags = mr.meta_reasoning_rewards(spam, [True, True], True)
  np.testing.assert_array_equal(tags, [0, 0])
  assert r_spam.sum() == 0.0 < r_honest.sum()
  # An unclosed tag is no tag either.
  assert mr.step_tag("<planning>plan without end<action>x</action>") == "none"


def test_cosmetic_action_repeats_are_not_exploration():
  texts = [step("explore", "look", "go to shelf 1"), step("explore", "look", "  Go to  SHELF 1 ")]
  r, _ = mr.meta_reasoning_rewards(texts, [True, True], False)
  np.testing.assert_array_equal(r, [1.0, 0.0])


def test_reflection_needs_a_preceding_failure():
  r, _ = mr.meta_reasoning_rewards([step("reflection", "hmm", "go to a")], [True], True)
  assert r[0] == 0.0  # nothing to reflect on at the first step
  # Repeating the failed action after a "reflection" is not a recovery.
  texts = [step("", "", "open box"), step("reflection", "retry", "open box")]
  r, _ = mr.meta_reasoning_rewards(texts, [False, True], True)
  assert r[1] == 0.0


def test_two_actions_is_no_action():
  texts = ["<explore>x</explore><action>go to a</action><action>go to b</action>"]
  r, tags = mr.meta_reasoning_rewards(texts, [True], True)
  assert r[0] == 0.0 and tags[0] == 0


# --- advantages -------------------------------------------------------------------------------

def _reference(outcome, r, tags, mask, valid, w, c, std, eps=1e-6):
  """Loop transcription of RLVMR's episode_norm_reward + step_norm_reward_by_tag over steps."""
  p, g, k = r.shape
  out = np.zeros_like(r, dtype=np.float64)

  def norm(values):
    values = np.asarray(values, np.float64)
    if len(values) == 1:
      mean, sd = 0.0, 1.0
    else:
      mean, sd = values.mean(), values.std(ddof=1)
    return (values - mean) / (sd + eps) if std else values - mean

  for i in range(p):
    rows = [(j, t) for j in range(g) for t in range(k) if mask[i, j, t]]
    ep = norm([outcome[i, j] - c * (not valid[i, j, t]) for j, t in rows])
    for (j, t), a in zip(rows, ep):
      out[i, j, t] = a
    for tag in range(4):
      sub = [(j, t) for j, t in rows if tags[i, j, t] == tag]
      if not sub:
        continue
      st = norm([r[i, j, t] for j, t in sub])
      for (j, t), a in zip(sub, st):
        out[i, j, t] += w * a
  return out


@pytest.mark.parametrize("std,w,c", [(True, 1.0, 0.1), (False, 0.5, 0.0)])
def test_advantages_match_reference(std, w, c):
  rng = np.random.default_rng(1)
  p, g, k = 3, 4, 5
  outcome = (rng.random((p, g)) < 0.5).astype(np.float32)
  r = (rng.random((p, g, k)) < 0.5).astype(np.float32)
  tags = rng.integers(0, 4, (p, g, k))
  mask = rng.random((p, g, k)) < 0.8
  mask[0, 0, 0] = True
  valid = rng.random((p, g, k)) < 0.8
  got = np.asarray(mr.rlvmr_advantages(outcome, r, tags, mask, valid, step_weight=w,
                                       invalid_action_penalty=c, normalize_std=std))
  np.testing.assert_allclose(got, _reference(outcome, r, tags, mask, valid, w, c, std),
                             rtol=1e-5, atol=1e-5)


def test_advantages_single_step_group_and_nan_padding():
  # One valid step per prompt: mean 0, std 1, so the advantage is the raw value (+ w * raw).
  outcome = np.array([[1.0]])
  got = mr.rlvmr_advantages(outcome, np.array([[[1.0, np.nan]]]), np.array([[[2, 0]]]),
                            np.array([[[True, False]]]), np.array([[[True, True]]]))
  np.testing.assert_allclose(np.asarray(got), [[[(1.0 / (1 + 1e-6)) * 2, 0.0]]], rtol=1e-6)
  with pytest.raises(ValueError):
    mr.rlvmr_advantages(outcome, np.zeros((1, 2, 2)), np.zeros((1, 2, 2), int),
                        np.ones((1, 2, 2), bool), np.ones((1, 2, 2), bool))
