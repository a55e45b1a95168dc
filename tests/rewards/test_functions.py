"""The TRL-style reward-function interface: weights, per-function metrics, failure policy."""

import time

import numpy as np
import pytest

from rlvr_jax.rewards import functions
from rlvr_jax.rewards import workers


def length_reward(prompts, completions, **kwargs):
  del prompts, kwargs
  return [float(len(c)) for c in completions]


def match_reward(prompts, completions, answer, **kwargs):
  del prompts, kwargs
  return [None if a is None else float(c.strip() == a) for c, a in zip(completions, answer)]


def flaky_reward(prompts, completions, **kwargs):
  del prompts, kwargs
  if any("boom" in c for c in completions):
    raise RuntimeError("verifier bug")
  return [1.0] * len(completions)


def hanging_reward(prompts, completions, **kwargs):
  del prompts, kwargs
  if any("hang" in c for c in completions):
    time.sleep(60)
  return [0.5] * len(completions)


def wrong_length_reward(prompts, completions, **kwargs):
  del prompts, completions, kwargs
  return [1.0]


PROMPTS = ["p0", "p1", "p2", "p3"]
COMPLETIONS = ["4", "five", "boom", "hang"]
COLUMNS = {"answer": ["4", "5", None, "x"]}


def test_weighted_combination_and_metrics():
  fns = [functions.RewardFunction("match", match_reward, weight=2.0),
         functions.RewardFunction("length", length_reward, weight=0.5)]
  out = functions.compute_rewards(fns, PROMPTS, COMPLETIONS, COLUMNS)
  match = np.array([1.0, 0.0, np.nan, 0.0])
  length = np.array([1.0, 4.0, 4.0, 4.0])
  np.testing.assert_allclose(out.per_function["match"], match)
  np.testing.assert_allclose(out.total, 2 * np.nan_to_num(match) + 0.5 * length)
  assert out.valid.all()
  m = out.metrics
  assert m["rewards/match/mean"] == pytest.approx(1 / 3)
  assert m["rewards/match/std"] == pytest.approx(np.std([1.0, 0.0, 0.0]))
  assert m["rewards/match/missing"] == 1.0 and m["rewards/match/failures"] == 0.0
  assert m["rewards/length/mean"] == pytest.approx(3.25)
  assert m["reward"] == pytest.approx(np.mean(out.total))


def test_exception_costs_only_its_chunk():
  errors = []
  fns = [functions.RewardFunction("flaky", flaky_reward),
         functions.RewardFunction("bad", wrong_length_reward)]
  # "bad" fails on every sample: besides its metric, a warning says so (only for it).
  with pytest.warns(RuntimeWarning, match="'bad' failed on every sample") as record:
    out = functions.compute_rewards(fns, PROMPTS, COMPLETIONS, chunk_size=2,
                                    on_error=lambda name, msg: errors.append((name, msg)))
  assert len(record) == 1
  np.testing.assert_allclose(out.per_function["flaky"], [1.0, 1.0, np.nan, np.nan])
  assert np.isnan(out.per_function["bad"]).all()
  assert out.metrics["rewards/flaky/failures"] == 2.0
  assert out.metrics["rewards/bad/failures"] == 4.0
  assert [n for n, _ in errors] == ["flaky", "bad", "bad"]
  assert "verifier bug" in errors[0][1]
  # Policy "zero": a missing reward contributes 0; samples with no reward at all are invalid.
  np.testing.assert_allclose(out.total[:2], [1.0, 1.0])
  np.testing.assert_array_equal(out.valid, [True, True, False, False])


def test_timeout_in_worker_pool_costs_only_its_chunk():
  fns = [functions.RewardFunction("hang", hanging_reward, timeout_s=2.0),
         functions.RewardFunction("flaky", flaky_reward)]
  with workers.WorkerPool(num_workers=2, timeout_s=2.0) as pool:
    start = time.monotonic()
    out = functions.compute_rewards(fns, PROMPTS, COMPLETIONS, pool=pool, chunk_size=2)
    assert time.monotonic() - start < 40
  np.testing.assert_allclose(out.per_function["hang"], [0.5, 0.5, np.nan, np.nan])
  np.testing.assert_allclose(out.per_function["flaky"], [1.0, 1.0, np.nan, np.nan])
  assert out.metrics["rewards/hang/failures"] == 2.0
  np.testing.assert_allclose(out.total[:2], [1.5, 1.5])


def test_argument_checks():
  fn = functions.RewardFunction("length", length_reward)
  with pytest.raises(ValueError):
    functions.compute_rewards([fn, fn], PROMPTS, COMPLETIONS)
  with pytest.raises(ValueError):
    functions.compute_rewards([fn], PROMPTS[:2], COMPLETIONS)
  with pytest.raises(ValueError):
    functions.compute_rewards([fn], PROMPTS, COMPLETIONS, {"answer": ["x"]})


def non_finite_reward(prompts, completions, **kwargs):
  del prompts, kwargs
  values = {"nan": float("nan"), "inf": float("inf"), "-inf": -float("inf"), "big": 10**400}
  return [values.get(c, 1.0) for c in completions]


def test_non_finite_values_are_failures_of_their_samples_only():
  fns = [functions.RewardFunction("odd", non_finite_reward),
         functions.RewardFunction("length", length_reward, weight=0.5)]
  completions = ["ok", "nan", "inf", "-inf", "big", "ok2"]
  errors = []
  with pytest.warns(RuntimeWarning, match="'odd' returned values that are not finite") as record:
    out = functions.compute_rewards(fns, ["p"] * 6, completions,
                                    on_error=lambda name, msg: errors.append((name, msg)))
  assert len(record) == 1
  np.testing.assert_array_equal(out.per_function["odd"],
                                [1.0, np.nan, np.nan, np.nan, np.nan, 1.0])
  assert out.metrics["rewards/odd/failures"] == 4.0
  assert out.metrics["rewards/odd/missing"] == 4.0
  assert np.isfinite(out.total).all()
  np.testing.assert_allclose(out.total, [2.0, 1.5, 1.5, 2.0, 1.5, 2.5])
  assert errors and all(name == "odd" for name, _ in errors)
  assert out.metrics["rewards/odd/mean"] == 1.0 and out.metrics["reward"] == pytest.approx(
      np.mean(out.total))
