"""Data stages: DAPO dynamic sampling, DARS, Scaf-GRPO hints, ViSurf injection, overlong filter."""

import math

import numpy as np
import pytest

from rlvr_jax.train import data_stages as ds


def test_zero_variance_groups():
  r = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0.5, 0.5, 0.5 + 1e-9]])
  np.testing.assert_array_equal(ds.zero_variance_groups(r), [True, True, False, False])
  np.testing.assert_array_equal(ds.zero_variance_groups(r, atol=1e-6), [True, True, False, True])
  with pytest.raises(ValueError, match=r"\[P, G\]"):
    ds.zero_variance_groups(np.zeros(3))


def _round(ids, rewards):
  ids = np.asarray(ids)
  return {"prompt_id": ids, "tokens": np.repeat(ids[:, None, None], 2, 1).repeat(3, 2)}, rewards


def test_dynamic_sampling_accumulates_until_full():
  state = ds.DynamicSamplingState()
  target, max_rounds = 3, 5
  # Round 1 keeps groups 0 and 2, round 2 keeps group 4: full after two rounds.
  rounds = iter([
      _round([0, 1, 2], np.array([[1, 0], [1, 1], [0, 1]])),
      _round([3, 4, 5], np.array([[0, 0], [1, 0], [0, 0]])),
      _round([6, 7, 8], np.array([[0, 1], [1, 0], [1, 0]])),
  ])
  while not state.done(target, max_rounds):
    state = ds.filter_and_accumulate(state, *next(rounds))
  assert (state.num_kept, state.num_rounds, state.num_generated) == (3, 2, 6)
  # A round that overshoots is truncated by take_batch.
  state = ds.filter_and_accumulate(state, *next(rounds))
  assert state.num_kept == 6
  out = ds.take_batch(state, target)
  np.testing.assert_array_equal(out["prompt_id"], [0, 2, 4])  # earliest survivors first
  np.testing.assert_array_equal(out["tokens"][:, 0, 0], [0, 2, 4])
  assert out["tokens"].shape == (3, 2, 3)


def test_dynamic_sampling_round_cap():
  state = ds.DynamicSamplingState()
  for ids in ([0, 1], [2, 3]):
    batch, rewards = _round(ids, np.array([[1, 0], [0, 0]]))
    state = ds.filter_and_accumulate(state, batch, rewards)
  assert state.done(target_groups=4, max_rounds=2) and not state.full(4)
  assert not state.done(target_groups=4, max_rounds=0)  # 0 = unlimited, as verl
  with pytest.raises(RuntimeError, match="kept 2/4 groups after 2 rounds"):
    ds.take_batch(state, 4)
  np.testing.assert_array_equal(ds.take_batch(state, 4, allow_partial=True)["prompt_id"], [0, 2])


def test_dynamic_sampling_keeps_single_sample_groups():
  state = ds.filter_and_accumulate(ds.DynamicSamplingState(), {"id": np.arange(3)},
                                   np.array([[1.0], [0.0], [1.0]]))
  assert state.num_kept == 3


def test_dynamic_sampling_shape_checks():
  with pytest.raises(ValueError, match="leading"):
    ds.filter_and_accumulate(ds.DynamicSamplingState(), {"x": np.zeros(3)}, np.zeros((2, 2)))
  state = ds.filter_and_accumulate(ds.DynamicSamplingState(), {"x": np.zeros(1)},
                                   np.array([[0, 1]]))
  with pytest.raises(ValueError, match="keys"):
    ds.filter_and_accumulate(state, {"y": np.zeros(1)}, np.array([[0, 1]]))


def _dars_reference(a, n, n_max, schedule, use_std):
  """Scalar transcription of the DARS rule in specs/rewards.md §6."""
  if a <= 1e-6:
    a = 0.5 / n
  if a >= 0.5:
    return 0
  s = 2 * math.sqrt(a * (1 - a)) if use_std else 2 * a * (1 - a)
  peak = n if use_std else 0.5 * n
  target = peak if schedule == "ET" else 2 * (1 - a) * peak
  return min(math.ceil((target - n * s) / s), n_max - n)


def test_dars_worked_examples():
  acc = np.array([1 / 8, 0.0, 3 / 8, 0.5, 1.0])
  # specs/rewards.md §6 (N=8, no std): ET 11, 27 capped at 24 (n_max 32), 1; HW 24, 56, 3.
  np.testing.assert_array_equal(ds.dars_extra_rollouts(acc, 8, 32, schedule="ET"),
                                [11, 24, 1, 0, 0])
  np.testing.assert_array_equal(ds.dars_extra_rollouts(acc, 8, 64, schedule="HW"),
                                [24, 56, 3, 0, 0])
  assert ds.dars_extra_rollouts(np.array([0.0]), 8, 1000, schedule="ET")[0] == 27


@pytest.mark.parametrize("schedule", ["ET", "HW"])
@pytest.mark.parametrize("use_std", [False, True])
def test_dars_matches_scalar_reference(schedule, use_std):
  n, n_max = 8, 64
  acc = np.arange(n + 1) / n
  expected = [_dars_reference(a, n, n_max, schedule, use_std) for a in acc]
  got = ds.dars_extra_rollouts(acc, n, n_max, schedule=schedule, use_std=use_std)
  np.testing.assert_array_equal(got, expected)
  assert got.dtype == np.int64


def test_dars_keep_and_pad():
  np.testing.assert_array_equal(ds.dars_keep_mask(np.array([0.0, 0.3, 1.0, 0.99])),
                                [False, True, False, True])
  np.testing.assert_array_equal(ds.dars_keep_mask(np.array([0.9]), upper=0.9), [False])
  padded, valid = ds.pad_groups([np.array([1.0, 0.0]), np.array([0.0, 0.0, 1.0])], 4, fill=-1)
  np.testing.assert_array_equal(padded, [[1, 0, -1, -1], [0, 0, 1, -1]])
  np.testing.assert_array_equal(valid, [[1, 1, 0, 0], [1, 1, 1, 0]])
  with pytest.raises(ValueError, match="> size"):
    ds.pad_groups([np.zeros(5)], 4)
  with pytest.raises(ValueError):
    ds.dars_extra_rollouts(np.array([0.1]), 8, 32, schedule="XX")


def test_scaf_hint_groups_respects_warmup():
  r = np.array([[0, 0], [0, 1], [0, 0]])
  np.testing.assert_array_equal(ds.scaf_hint_groups(r, step=50), [False] * 3)
  np.testing.assert_array_equal(ds.scaf_hint_groups(r, step=51), [True, False, True])
  np.testing.assert_array_equal(ds.scaf_hint_groups(r, step=1, warmup_steps=0), [True, False, True])


def test_scaf_hint_prompts():
  hints = {"knowledge": ["K1.", "K2."], "solution": ["S1.", "S2.", "S3.", "S4.", "S5."]}
  prompts = ds.scaf_hint_prompts("2+2?", hints)
  assert [p.level for p in prompts] == list(range(1, 9))
  assert [p.tier for p in prompts] == ["knowledge"] * 4 + ["solution"] * 4
  assert prompts[0].prompt == [
      {"role": "system", "content": ds.SCAF_SYSTEM_PROMPT},
      {"role": "user", "content": "Question: 2+2?\nKnowledge Hints: K1."}]
  assert prompts[1].prompt[1]["content"] == "Question: 2+2?\nKnowledge Hints: K1. K2."
  assert prompts[3].prompt[1]["content"] == "Question: 2+2?\nKnowledge Hints: K1. K2."
  assert prompts[7].prompt[1]["content"] == "Question: 2+2?\nSolution Hints: S1. S2. S3. S4."
  assert ds.scaf_hint_prompts("q", hints, system=None)[0].prompt[0]["role"] == "user"
  with pytest.raises(KeyError, match="solution"):
    ds.scaf_hint_prompts("q", {"knowledge": ["a"]})


def test_scaf_select_and_replace():
  levels = np.array([1, 2, 3, 4, 5, 6, 7, 8, 3])
  rewards = np.array([0, 0, 1, 1, 1, 0, 0, 0, 1])
  assert ds.scaf_select(levels, rewards) == 2  # lowest level 3; first of the ties
  assert ds.scaf_select(levels, np.zeros(9)) == -1
  group = {"prompt_tokens": np.zeros((4, 5), np.int32), "tokens": np.zeros((4, 3), np.int32),
           "reward": np.zeros(4)}
  hinted = {"prompt_tokens": np.arange(5, dtype=np.int32), "tokens": np.array([7, 8, 9]),
            "reward": np.array(1.0)}
  out = ds.scaf_replace(group, hinted)
  np.testing.assert_array_equal(out["prompt_tokens"][0], np.arange(5))
  np.testing.assert_array_equal(out["prompt_tokens"][1:], 0)
  np.testing.assert_array_equal(out["reward"], [1, 0, 0, 0])
  assert out["tokens"].dtype == np.int32
  np.testing.assert_array_equal(group["reward"], 0)  # input untouched
  with pytest.raises(ValueError, match="prompt bucket"):
    ds.scaf_replace(group, {**hinted, "prompt_tokens": np.arange(6)})


def test_inject_ground_truth():
  batch = {"tokens": np.arange(2 * 3 * 4).reshape(2, 3, 4), "rewards": np.zeros((2, 3))}
  ref = {"tokens": np.full((2, 4), -1), "rewards": np.ones(2)}
  out = ds.inject_ground_truth(batch, ref)
  assert out["tokens"].shape == (2, 4, 4)
  np.testing.assert_array_equal(out["tokens"][:, :3], batch["tokens"])
  np.testing.assert_array_equal(out["tokens"][:, 3], -1)
  np.testing.assert_array_equal(out["rewards"], [[0, 0, 0, 1]] * 2)
  np.testing.assert_array_equal(out["is_injected"], [[False, False, False, True]] * 2)
  with pytest.raises(ValueError, match="reference"):
    ds.inject_ground_truth(batch, {"tokens": np.zeros((2, 5)), "rewards": np.ones(2)})


def test_overlong_filter_and_prefix_mask():
  mask = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0]], np.float32)
  out = ds.overlong_filter(mask, np.array([0, 1, 0]))
  np.testing.assert_array_equal(out, [[1, 1, 0], [0, 0, 0], [1, 0, 0]])
  assert out.dtype == np.float32
  np.testing.assert_array_equal(ds.mask_prefix_tokens(mask, np.array([1, 2, 0])),
                                [[0, 1, 0], [0, 0, 1], [1, 0, 0]])


def test_group_stage_metrics():
  m = ds.group_stage_metrics(np.array([[1, 1], [0, 0], [1, 0], [0, 0]]))
  assert m == {"frac_reward_zero_std": 0.75, "groups/all_correct": 0.25, "groups/all_wrong": 0.5}


def test_dars_merge_appends_extra_rows_to_their_groups():
  stage1 = {"r": np.array([[1.0, 0.0], [0.0, 0.0]]), "tokens": np.arange(8).reshape(2, 2, 2)}
  # Two extra rows for group 1, one for group 0, interleaved.
  extra = {"r": np.array([5.0, 6.0, 7.0]), "tokens": np.array([[50, 51], [60, 61], [70, 71]])}
  out = ds.dars_merge(stage1, extra, np.array([1, 0, 1]), 5)
  np.testing.assert_array_equal(out["r"], [[1, 0, 6, 0, 0], [0, 0, 5, 7, 0]])
  np.testing.assert_array_equal(out["valid"], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
  np.testing.assert_array_equal(out["tokens"][1, 2:4], [[50, 51], [70, 71]])
  np.testing.assert_array_equal(out["tokens"][0, 3:], 0)
  with pytest.raises(ValueError, match="keys"):
    ds.dars_merge(stage1, {"r": extra["r"]}, np.array([1, 0, 1]), 5)


def test_scaf_hinted_examples_text_and_chat():
  from rlvr_jax.data import task as task_lib  # pylint: disable=g-import-not-at-top
  hints = {"knowledge": ["K1.", "K2."], "solution": ["S1."]}
  text = task_lib.Example("3+4=", "7", "procedural/integer", {"key": "3+4"})
  out = ds.scaf_hinted_examples(text, hints, parts_per_tier=2)
  assert [level for level, _ in out] == [1, 2, 3, 4]
  assert [e.prompt for _, e in out] == [
      "Knowledge Hints: K1.\n3+4=", "Knowledge Hints: K1. K2.\n3+4=",
      "Solution Hints: S1.\n3+4=", "Solution Hints: S1.\n3+4="]
  assert all(e.answer == "7" and e.metadata == {"key": "3+4"} for _, e in out)
  chat = task_lib.Example([{"role": "system", "content": "Box it."},
                           {"role": "user", "content": "What is 3+4?"}], "7", "math")
  level, hinted = ds.scaf_hinted_examples(chat, hints, parts_per_tier=2)[1]
  assert level == 2
  assert hinted.prompt == [{"role": "system", "content": "Box it."},
                           {"role": "user",
                            "content": "Question: What is 3+4?\nKnowledge Hints: K1. K2."}]
  assert chat.prompt[1]["content"] == "What is 3+4?"  # the original is not modified


def test_procedural_hints_and_gold_completion():
  from rlvr_jax.data import task as task_lib  # pylint: disable=g-import-not-at-top
  arithmetic = task_lib.Example("12+30=", "42", "procedural/integer")
  assert ds.procedural_hints(arithmetic) == {"knowledge": ["2 characters."],
                                             "solution": ["Starts 4.", "Starts 42."]}
  countdown = task_lib.Example("1 2 3:6", "6", "procedural/countdown",
                               {"solution": "1+2+3"})
  assert ds.procedural_hints(countdown)["solution"] == [
      "Begin with 1+", "Begin with 1+2", "Begin with 1+2+", "Begin with 1+2+3"]
  given = task_lib.Example("q", "a", "math", {"hints": {"knowledge": ["k"]}})
  assert ds.procedural_hints(given) == {"knowledge": ["k"]}
  assert ds.procedural_hints(task_lib.Example("q", "a", "math")) is None
  assert ds.gold_completion(arithmetic) == "42"
  assert ds.gold_completion(task_lib.Example("q", "a", "math", {"sft_target": "\\boxed{a}"})) == (
      "\\boxed{a}")


def test_completion_arrays():
  out = ds.completion_arrays([[5, 2], [7, 8, 9, 2]], 3, pad_id=0)
  np.testing.assert_array_equal(out["tokens"], [[5, 2, 0], [7, 8, 9]])
  np.testing.assert_array_equal(out["lengths"], [2, 3])
  np.testing.assert_array_equal(out["mask"], [[1, 1, 0], [1, 1, 1]])
  np.testing.assert_array_equal(out["truncated"], [0, 1])


def test_append_self_reward_token_and_self_rewards():
  tokens = np.array([[5, 2, 0], [7, 8, 9], [6, 6, 2]])
  lengths, truncated = np.array([2, 3, 3]), np.array([0, 1, 0])
  out, positions = ds.append_self_reward_token(tokens, lengths, truncated, token_id=99, pad_id=0)
  np.testing.assert_array_equal(out, [[5, 2, 99, 0], [7, 8, 9, 0], [6, 6, 2, 99]])
  np.testing.assert_array_equal(positions, [2, 3, 3])
  logprobs = np.log(np.array([[0.5, 0.5, 0.25, 1.0], [0.5, 0.5, 0.5, 1.0],
                              [0.5, 0.5, 0.5, 0.125]]))
  r = ds.laser_self_rewards(logprobs, positions, truncated, beta_v=0.1, c_ref=-2.0,
                            temperature=2.0)
  # r_s = 0.1 (2 log p - (-2)); the truncated row scores 0.
  np.testing.assert_allclose(r, [0.1 * (2 * np.log(0.25) + 2), 0.0,
                                 0.1 * (2 * np.log(0.125) + 2)], rtol=1e-6)
