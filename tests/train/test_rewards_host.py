"""RewardScorer: a verifier that returns NaN or infinity costs its item a reward error, loudly."""

import math
import textwrap
import warnings

import numpy as np
import pytest

from rlvr_jax.data import task as task_lib
from rlvr_jax.train import rewards_host

# Scores the completion's text as a float: "nan", "inf", "-inf" and "0.5" all parse.
VERIFIER_MODULE = textwrap.dedent("""
    from rlvr_jax.rewards import registry
    registry.register_verifier("test/float_of_text", lambda completion, example: float(completion))
""")


@pytest.fixture
def verifier_module(tmp_path, monkeypatch):
  (tmp_path / "float_of_text_verifier.py").write_text(VERIFIER_MODULE)
  monkeypatch.syspath_prepend(str(tmp_path))
  return "float_of_text_verifier"


@pytest.mark.parametrize("num_workers", [0, 1])
def test_non_finite_rewards_are_reward_errors(verifier_module, num_workers):
  completions = ["0.5", "nan", "inf", "-inf", "1", "nan"]
  examples = [task_lib.Example("q", "a", "test/float_of_text")] * len(completions)
  with rewards_host.RewardScorer(num_workers=num_workers, timeout_s=30.0, failure_reward=-1.0,
                                 verifier_modules=(verifier_module,)) as scorer:
    with pytest.warns(RuntimeWarning, match="'test/float_of_text'.*not finite") as record:
      result = scorer(completions, examples)
    assert len(record) == 1  # one warning for the verifier, not one per item
    np.testing.assert_array_equal(result.rewards, [0.5, -1.0, -1.0, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(result.errors, [False, True, True, True, False, True])
    assert not result.timeouts.any()
    assert np.isfinite(result.rewards).all()
    # The same verifier does not warn again in this scorer; the errors still count.
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      again = scorer(["nan"], examples[:1])
    assert again.errors.tolist() == [True] and again.rewards.tolist() == [-1.0]


def test_raising_verifier_is_an_error_without_warning(verifier_module):
  examples = [task_lib.Example("q", "a", "test/float_of_text")] * 2
  with rewards_host.RewardScorer(verifier_modules=(verifier_module,)) as scorer:
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      result = scorer(["not a number", "0.25"], examples)
  assert result.errors.tolist() == [True, False]
  assert result.rewards[0] == 0.0 and math.isclose(result.rewards[1], 0.25)
