"""Noisy-verifier corrections, including the spec's warning about group normalisation."""

import numpy as np
import pytest

from rlvr_jax.rewards import noisy


def _group_zscore(r, eps=1e-6):
  # Independent reference of GRPO's advantage (population std, eps outside the sqrt).
  r = np.asarray(r, np.float64)
  return (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + eps)


R_OBS = np.array([[1, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0], [1, 1, 1, 0, 1, 1]], np.float32)


def test_backward_correct_formula_and_unbiasedness():
  rho0, rho1 = 0.1, 0.2
  got = np.asarray(noisy.backward_correct(R_OBS, rho0, rho1))
  np.testing.assert_allclose(got, (R_OBS - 0.1) / 0.7, rtol=1e-6)
  # E[R^ | R*] = R*: average over the channel's two outcomes.
  r1 = (1 - rho1) * float(noisy.backward_correct(1.0, rho0, rho1)) + rho1 * float(
      noisy.backward_correct(0.0, rho0, rho1))
  r0 = rho0 * float(noisy.backward_correct(1.0, rho0, rho1)) + (1 - rho0) * float(
      noisy.backward_correct(0.0, rho0, rho1))
  assert r1 == pytest.approx(1.0, abs=1e-6) and r0 == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError):
    noisy.backward_correct(R_OBS, 0.6, 0.5)


def test_forward_weights_expectations():
  rho0, rho1 = 0.15, 0.25
  w1, w0 = float(noisy.forward_weights(1.0, rho1)), float(noisy.forward_weights(0.0, rho1))
  assert (w1, w0) == pytest.approx((0.25, -0.75))
  assert (1 - rho1) * w1 + rho1 * w0 == pytest.approx(0.0, abs=1e-7)
  assert rho0 * w1 + (1 - rho0) * w0 == pytest.approx(-(1 - rho0 - rho1), abs=1e-7)


def test_group_normalisation_cancels_backward_correction():
  # The spec's warning: an affine map with group-constant coefficients is a no-op under the
  # group z-score, and only a rescaling under mean-centring.
  corrected = np.asarray(noisy.backward_correct(R_OBS, 0.1, 0.2))
  np.testing.assert_allclose(_group_zscore(corrected, eps=0.0), _group_zscore(R_OBS, eps=0.0),
                             atol=1e-5)
  centred_obs = R_OBS - R_OBS.mean(1, keepdims=True)
  centred_cor = corrected - corrected.mean(1, keepdims=True)
  np.testing.assert_allclose(centred_cor, centred_obs / 0.7, atol=1e-6)


def test_correction_survives_where_applied():
  # Backward-corrected advantages keep the 1/(1-rho0-rho1) scale (no std division).
  adv = np.asarray(noisy.backward_corrected_advantages(R_OBS, 0.1, 0.2, baseline="mean"))
  centred_obs = R_OBS - R_OBS.mean(1, keepdims=True)
  np.testing.assert_allclose(adv, centred_obs / 0.7, atol=1e-6)
  assert not np.allclose(adv, centred_obs)
  g = R_OBS.shape[1]
  rloo = np.asarray(noisy.backward_corrected_advantages(R_OBS, 0.1, 0.2, baseline="rloo"))
  np.testing.assert_allclose(rloo, centred_obs / 0.7 * g / (g - 1), atol=1e-6)
  # Per-sample rates vary inside a group: the z-score no longer cancels the correction.
  rho0 = np.array([[0.0, 0.3, 0.0, 0.1, 0.0, 0.3]] * 3, np.float32)
  per_sample = np.asarray(noisy.backward_correct(R_OBS, rho0, 0.2))
  assert not np.allclose(_group_zscore(per_sample), _group_zscore(R_OBS), atol=1e-3)
  # Forward weights are used as advantages directly: exactly w, masked.
  mask = np.ones_like(R_OBS)
  mask[0, 0] = 0
  fwd = np.asarray(noisy.forward_corrected_advantages(R_OBS, 0.2, mask))
  np.testing.assert_allclose(fwd, np.where(R_OBS > 0, 0.2, -0.8) * mask, atol=1e-7)
  with pytest.raises(ValueError):
    noisy.backward_corrected_advantages(R_OBS, 0.1, 0.2, baseline="std")


def test_rho1_estimate_and_ema():
  np.testing.assert_allclose(noisy.estimate_rho1([3, 0], [9, 0]), [0.25, 0.0])
  assert float(noisy.ema_update(0.2, 0.4, momentum=0.75)) == pytest.approx(0.25)
