"""Length shaping against hand computations."""

import math
import subprocess
import sys

import numpy as np
import pytest

from rlvr_jax.rewards import shaping


def test_overlong_penalty_has_one_home_and_rewards_do_not_import_objectives():
  # DAPO's overlong penalty is rlvr_jax.objectives.reward_transforms.overlong_soft_penalty only.
  assert not hasattr(shaping, "overlong_soft_penalty")
  code = ("import sys, rlvr_jax.rewards.shaping; "
          "bad = [m for m in sys.modules if m.startswith('rlvr_jax.objectives')]; "
          "print(bad); sys.exit(1 if bad else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr


def test_kimi_length_reward():
  lengths = np.array([[100, 200, 300, 500], [50, 50, 50, 50], [10, 20, 30, 999]])
  correct = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 1]])
  valid = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]], bool)
  got = np.asarray(shaping.kimi_length_reward(lengths, correct, valid))
  lam0 = 0.5 - (np.array([100, 200, 300, 500]) - 100) / 400
  want0 = np.where(correct[0] == 1, lam0, np.minimum(0, lam0))
  lam2 = 0.5 - (np.array([10, 20, 30]) - 10) / 20
  want2 = np.append(np.where(correct[2, :3] == 1, lam2, np.minimum(0, lam2)), 0.0)
  np.testing.assert_allclose(got, [want0, [0, 0, 0, 0], want2], rtol=1e-6, atol=1e-7)


def test_cosine_length_reward_matches_open_r1_form():
  def open_r1(length, correct, max_len):
    lo, hi = (0.5, 1.0) if correct else (-0.5, -1.0)
    p = min(length / max_len, 1.0)
    return lo + 0.5 * (hi - lo) * (1 + math.cos(p * math.pi))
  lengths = np.array([0, 250, 500, 1000, 3000])
  for correct in (True, False):
    got = np.asarray(shaping.cosine_length_reward(lengths, np.full(5, correct), max_length=1000))
    np.testing.assert_allclose(got, [open_r1(l, correct, 1000) for l in lengths], atol=1e-6)
  assert float(shaping.cosine_length_reward(0, True, max_length=10)) == pytest.approx(1.0)
  assert float(shaping.cosine_length_reward(0, False, max_length=10)) == pytest.approx(-1.0)


def test_repetition_penalty():
  assert shaping.repetition_penalty("a b c a b c".split(), ngram_size=3) == pytest.approx(
      (1 - 3 / 4) * -1.0)
  assert shaping.repetition_penalty([1, 2], ngram_size=3) == 0.0
  assert shaping.repetition_penalty([1, 2, 3, 4], ngram_size=2, max_penalty=-0.5) == 0.0
  with pytest.raises(ValueError):
    shaping.repetition_penalty([1], max_penalty=1.0)
