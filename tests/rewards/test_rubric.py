"""Rubric aggregation, checklist scores and bidirectional verdicts."""

import math

import numpy as np
import pytest

from rlvr_jax.rewards import rubric

SCORES = np.array([[[1.0, 0.5, 0.0], [0.2, 1.0, 1.0]]])  # [P=1, G=2, K=3]
WEIGHTS = np.array([[2.0, 1.0, 1.0]])
VETO = np.array([[True, False, False]])


def test_weighted_mean_with_veto():
  got = np.asarray(rubric.rubric_aggregate(SCORES, WEIGHTS, VETO, veto_threshold=0.5))
  # Response 0 passes the critical item: (2*1 + 0.5 + 0) / 4; response 1 fails it (0.2 < 0.5).
  np.testing.assert_allclose(got, [[2.5 / 4, 0.0]], rtol=1e-6)
  no_veto = np.asarray(rubric.rubric_aggregate(SCORES, WEIGHTS, ~VETO & False))
  np.testing.assert_allclose(no_veto, [[2.5 / 4, 2.4 / 4]], rtol=1e-6)
  # A masked item leaves both numerator and denominator.
  masked = np.asarray(rubric.rubric_aggregate(SCORES, WEIGHTS, VETO,
                                              item_mask=np.array([[True, True, False]])))
  np.testing.assert_allclose(masked[0, 0], 2.5 / 3, rtol=1e-6)


def test_saturation():
  kappa = 2.0
  phi = lambda s: (1 - math.exp(-kappa * s)) / (1 - math.exp(-kappa))
  got = np.asarray(rubric.rubric_aggregate(SCORES, WEIGHTS, VETO & False, kappa=kappa))
  want = (2 * phi(0.2) + phi(1.0) + phi(1.0)) / 4
  assert got[0, 1] == pytest.approx(want, rel=1e-5)
  assert float(rubric.saturate(np.float32(1.0), kappa)) == pytest.approx(1.0)


def test_openrs_mode():
  signed = np.array([[[3.0, -1.0, 2.0], [0.0, 2.0, -2.0], [0.0, 0.1, 0.0]]])
  w = np.array([[5.0, 2.0, 1.0]])
  veto = np.array([[True, False, False]])
  got = np.asarray(rubric.rubric_aggregate(signed, w, veto, mode="openrs", min_score=0.1))
  # Row 0: critical item non-zero -> its score alone. Row 1: weighted mean (0+4-2)/(8+1e-6).
  # Row 2: 0.2/8 = 0.025 < 0.1 -> 0.
  np.testing.assert_allclose(got, [[3.0, 2.0 / (8 + 1e-6), 0.0]], rtol=1e-5)
  with pytest.raises(ValueError):
    rubric.rubric_aggregate(signed, w, veto, mode="max")


def test_checklist_and_verdict():
  res = np.array([[1, 0, 1], [1, 1, 1]])
  w = np.array([0.5, 0.3, 0.2])
  np.testing.assert_allclose(rubric.checklist_score(res, w), [0.7, 1.0], rtol=1e-6)
  np.testing.assert_allclose(rubric.checklist_score(res, w, mask=[1, 1, 0], normalize=True),
                             [0.5 / 0.8, 1.0], rtol=1e-6)
  v = rubric.bidirectional_verdict([2.0, -2.0, 2.0, 0.0], [-1.0, 1.0, 1.0, 0.0], margin=0.5)
  np.testing.assert_allclose(v, [1.0, -1.0, 0.0, 0.0])
  assert rubric.OPENRS_WEIGHTS == {"core": 5.0, "important": 2.0, "highlight": 1.0}
