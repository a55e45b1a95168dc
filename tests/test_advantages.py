"""Tests for rlvr_jax.advantages, written from the formulas (numpy references, hand vectors)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import advantages as adv

RNG = np.random.default_rng(0)


def _np_std(x, ddof, axis=-1):
  x = np.asarray(x, np.float64)
  return np.std(x, axis=axis, ddof=ddof, keepdims=True)


# ---------------------------------------------------------------------------------------------
# specs/objectives.md §3.3 vectors.


def test_spec_vectors():
  r = jnp.array([[1.0, 0.0, 0.0, 0.0]])
  np.testing.assert_allclose(adv.group_zscore(r, epsilon=0.0), [[1.5, -0.5, -0.5, -0.5]],
                             rtol=1e-6)
  np.testing.assert_allclose(adv.group_zscore(r, ddof=0, epsilon=0.0),
                             [[math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3),
                               -1 / math.sqrt(3)]], rtol=1e-6)
  np.testing.assert_allclose(adv.group_center(r), [[0.75, -0.25, -0.25, -0.25]], rtol=1e-6)
  np.testing.assert_allclose(adv.leave_one_out(r), [[1.0, -1 / 3, -1 / 3, -1 / 3]], rtol=1e-6)
  # Default epsilon 1e-6 sits outside the std: 1.5 * std / (std + 1e-6).
  std = np.std([1, 0, 0, 0], ddof=1)
  np.testing.assert_allclose(adv.group_zscore(r)[0, 0], 0.75 / (std + 1e-6), rtol=1e-6)


def test_group_zscore_matches_numpy():
  r = RNG.normal(size=(5, 6)).astype(np.float32)
  for ddof, eps in [(1, 1e-6), (0, 1e-4)]:
    ref = (r - r.mean(1, keepdims=True)) / (_np_std(r, ddof) + eps)
    np.testing.assert_allclose(adv.group_zscore(r, ddof=ddof, epsilon=eps), ref, rtol=1e-5,
                               atol=1e-6)


def test_zero_variance_groups_are_exactly_zero():
  # 0.1 * 3 / 3 != 0.1 in float32, so a naive mean leaves ~1e-8 / 1e-6 = 0.01 behind.
  r = jnp.full((2, 7), 0.1, jnp.float32).at[1].set(0.7)
  lengths = jnp.arange(14).reshape(2, 7)
  outs = [
      adv.group_zscore(r), adv.group_center(r), adv.leave_one_out(r), adv.gpg(r),
      adv.gpg(r, normalize_by_std=True), adv.group_mean_batch_std(r), adv.opo_baseline(r, lengths),
      adv.pass_at_k_advantage(r, k=3), adv.normalize_then_sum(r[..., None], jnp.ones(1)),
  ]
  for out in outs:
    assert np.all(np.asarray(out) == 0.0)


def test_single_sample_policies():
  r = jnp.array([[0.5], [2.0]])
  assert np.all(np.asarray(adv.group_zscore(r)) == 0)
  np.testing.assert_allclose(adv.group_zscore(r, single_sample="reward"), r / (1 + 1e-6))
  assert np.all(np.asarray(adv.leave_one_out(r)) == 0)
  np.testing.assert_allclose(adv.leave_one_out(r, single_sample="reward"), r)
  np.testing.assert_allclose(adv.group_center(r, single_sample="reward"), r)
  np.testing.assert_allclose(adv.opo_baseline(r, jnp.ones((2, 1)), single_sample="reward"), r)
  assert np.all(np.asarray(adv.group_mean_batch_std(r)) == 0)
  with pytest.raises(ValueError):
    adv.group_zscore(r, single_sample="verl")


def test_shape_checks():
  with pytest.raises(ValueError):
    adv.group_zscore(jnp.zeros(4))
  with pytest.raises(ValueError):
    adv.greedy_baseline(jnp.zeros((2, 3)), jnp.zeros(3))
  with pytest.raises(ValueError):
    adv.broadcast_to_tokens(jnp.zeros((2, 3)), jnp.zeros((2, 4, 5)))


# ---------------------------------------------------------------------------------------------
# Other sequence estimators against numpy references.


def test_group_mean_batch_std_is_trl_batch_scaling():
  r = RNG.normal(size=(3, 4)).astype(np.float32)
  ref = (r - r.mean(1, keepdims=True)) / (np.std(r, ddof=1) + 1e-4)
  np.testing.assert_allclose(adv.group_mean_batch_std(r, epsilon=1e-4), ref, rtol=1e-5,
                             atol=1e-6)


def test_leave_one_out_explicit_loop():
  r = RNG.normal(size=(3, 5))
  ref = np.array([[r[p, i] - np.mean(np.delete(r[p], i)) for i in range(5)] for p in range(3)])
  np.testing.assert_allclose(adv.leave_one_out(jnp.asarray(r, jnp.float32)), ref, rtol=1e-5,
                             atol=1e-6)


def test_greedy_baseline_and_identity():
  r = jnp.array([[1.0, 0.0], [0.5, 0.25]])
  np.testing.assert_allclose(adv.greedy_baseline(r, jnp.array([1.0, 0.0])),
                             [[0.0, -1.0], [0.5, 0.25]])
  np.testing.assert_allclose(adv.identity(jnp.array([[1, 0]])), [[1.0, 0.0]])


def test_opo_length_weighted_baseline():
  r = np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 3.0]], np.float32)
  lengths = np.array([[2, 3, 5], [0, 0, 0]])
  # Group 0: baseline (2*1)/10 = 0.2. Group 1: all empty, falls back to the plain mean 2.
  np.testing.assert_allclose(adv.opo_baseline(r, lengths), [[0.8, -0.2, -0.2], [-1, 0, 1]],
                             rtol=1e-6)


def test_gpg_alpha():
  r = jnp.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
  centred = np.array([[0.75, -0.25, -0.25, -0.25], [0, 0, 0, 0], [-0.5, 0.5, 0.5, -0.5]])
  # B/(B-M) = 12/8: one of three groups has zero spread.
  np.testing.assert_allclose(adv.gpg(r), 1.5 * centred, rtol=1e-6)
  # verl: B / count_nonzero(R) = 12 / 7.
  np.testing.assert_allclose(adv.gpg(r, alpha="verl"), 12 / 7 * centred, rtol=1e-6)
  np.testing.assert_allclose(adv.gpg(r, alpha="none"), centred, rtol=1e-6)
  std = _np_std(np.asarray(r), 1)
  np.testing.assert_allclose(adv.gpg(r, normalize_by_std=True), 1.5 * centred / (std + 1e-4),
                             rtol=1e-5)


def _pass_at_k_bruteforce(r, k):
  g = len(r)
  out = np.zeros(g)
  for i in range(g):
    others = [j for j in range(g) if j != i]
    terms = [max(r[list(s) + [i]]) - max(r[list(s)]) for s in itertools.combinations(others, k - 1)]
    out[i] = np.mean(terms)
  return out


def test_pass_at_k_matches_subset_average_and_verl():
  r = np.array([[0.3, 0.9, 0.1, 0.6, 0.6], [1.0, 0.0, 0.0, 1.0, 0.0]], np.float32)
  for k in (2, 3, 5):
    got = adv.pass_at_k_advantage(r, k=k, normalize_by_std=False)
    ref = np.stack([_pass_at_k_bruteforce(row.astype(np.float64), k) for row in r])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  # k == G: verl grpo_passk, only the argmax gets (r_max - r_second) / (std + 1e-6).
  got = adv.pass_at_k_advantage(r, k=5)
  std0 = np.std(r[0].astype(np.float64), ddof=1)
  np.testing.assert_allclose(got[0], [0, 0.3 / (std0 + 1e-6), 0, 0, 0], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(got[1], 0.0)  # tie at the top: r_max - r_second = 0
  with pytest.raises(ValueError):
    adv.pass_at_k_advantage(r, k=1)


def test_weighted_grpo_pairs():
  c = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], np.float32)
  lam = 0.5
  remap = np.where(c > 0.5, 1.0, -lam).reshape(-1)
  ref = (remap - remap.mean()) / (np.std(remap, ddof=1) + 1e-6)
  np.testing.assert_allclose(adv.weighted_grpo_pairs(c, lambda_neg=lam), ref.reshape(2, 4),
                             rtol=1e-5)
  np.testing.assert_allclose(adv.weighted_grpo_pairs(c, lambda_neg=lam, scope="prompt"),
                             adv.group_zscore(c), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError):
    adv.weighted_grpo_pairs(c[:1], lambda_neg=lam)


def _riskpo_reference(r, bundle, a, b, w, credit, natural, eps=1e-6):
  """Loop transcription of the RiskPO code's semantics (per bundle, per paper)."""
  p, g = r.shape
  out = np.zeros_like(r, dtype=np.float64)
  for start in range(0, p, bundle):
    rows = list(range(start, start + bundle))
    x = np.array([sum(r[q, k] for q in rows) for k in range(g)], np.float64)
    q_d, q_u = np.quantile(x, a), np.quantile(x, b)
    std = np.std(x, ddof=1)
    for k in range(g):
      rvar = max(x[k] - q_d, 0) - max(x[k] - q_u, 0) + ((q_d - q_u) if natural else 0)
      rvar /= (b - a + eps)
      cvar = -max(q_d - x[k], 0) / (a + eps)
      pa = (w * cvar + rvar) / (w + 1) / (std + eps)
      ratios = [r[q, k] - r[q].mean() for q in rows]
      for q, ratio in zip(rows, ratios):
        if credit == "uniform":
          out[q, k] = pa
        elif credit == "score":
          out[q, k] = (0.5 if r[q, k] > 0 else 1.5) * pa
        elif credit == "std":
          s = np.std(r[q], ddof=1)
          out[q, k] = pa / ((s if s > 1e-3 else 1.0) + eps)
        else:
          total = sum(ratios)
          out[q, k] = pa * ratio / total if abs(total) > 1e-6 else pa / len(rows)
  return out


@pytest.mark.parametrize("credit", ["sum-mean", "uniform", "score", "std"])
def test_mvar_bundle_matches_reference(credit):
  r = (RNG.random((6, 5)) > 0.5).astype(np.float32)
  r[3] = 1.0  # a constant prompt inside the second bundle
  for natural in (False, True):
    got = adv.mvar_bundle(r, bundle_size=3, alpha=0.2, beta=0.8, omega=1.5, credit=credit,
                          natural_baseline=natural)
    ref = _riskpo_reference(r, 3, 0.2, 0.8, 1.5, credit, natural)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError):
    adv.mvar_bundle(r, bundle_size=4)


def test_mix_self_reward():
  r = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0]], np.float32)
  s = np.array([[0.9, 1.7, -0.2, 0.4], [0.5, 0.52, 0.5, 0.55]], np.float32)
  trunc = np.array([[0, 0, 0, 1], [0, 0, 0, 0]], np.float32)
  lam = 0.3
  base = (r - r.mean(1, keepdims=True)) / (_np_std(r, 1) + 1e-6)
  score = np.clip(s, 0, 1) * (1 - trunc)  # row 0: [0.9, 1, 0, 0]
  self_adv0 = (score[0] - score[0].mean()) / np.std(score[0], ddof=1)
  ref0 = (1 - lam) * base[0] + lam * self_adv0
  ref1 = base[1]  # std of row 1 scores ~0.024 <= tau_f: self advantage falls back to the base
  got = adv.mix_self_reward(r, s, lam=lam, tau_f=0.1, truncated=trunc)
  np.testing.assert_allclose(got, np.stack([ref0, ref1]), rtol=1e-5, atol=1e-6)
  custom = jnp.ones_like(r)
  got = adv.mix_self_reward(r, s, lam=lam, truncated=trunc, advantages=custom)
  np.testing.assert_allclose(got[1], np.ones(4), rtol=1e-6)


def test_multi_reward_aggregation_matches_trl():
  rp = RNG.normal(size=(3, 4, 2)).astype(np.float32)
  w = np.array([1.0, 0.5], np.float32)
  total = rp @ w
  ref_group = (total - total.mean(1, keepdims=True)) / (_np_std(total, 1) + 1e-4)
  np.testing.assert_allclose(adv.sum_then_normalize(rp, w, "group"), ref_group, rtol=1e-5,
                             atol=1e-6)
  ref_batch = (total - total.mean(1, keepdims=True)) / (np.std(total, ddof=1) + 1e-4)
  np.testing.assert_allclose(adv.sum_then_normalize(rp, w, "batch"), ref_batch, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(adv.sum_then_normalize(rp, w, "none"),
                             total - total.mean(1, keepdims=True), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(adv.sum_then_normalize(rp, w, adv.leave_one_out),
                             adv.leave_one_out(total), rtol=1e-6)
  # GDPO: per-function group z-score, weighted sum, batch z-score.
  z = (rp - rp.mean(1, keepdims=True)) / (np.std(rp, axis=1, ddof=1, keepdims=True) + 1e-4)
  s = z @ w
  ref = (s - s.mean()) / (np.std(s, ddof=1) + 1e-4)
  np.testing.assert_allclose(adv.normalize_then_sum(rp, w), ref, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Token-level estimators.


def test_broadcast_and_outcome_tokens():
  mask = jnp.array([[[1, 1, 0], [0, 0, 0], [1, 1, 1]]], jnp.float32)
  np.testing.assert_allclose(adv.broadcast_to_tokens(jnp.array([[2.0, 3.0, -1.0]]), mask),
                             [[[2, 2, 0], [0, 0, 0], [-1, -1, -1]]])
  np.testing.assert_allclose(adv.outcome_to_token_rewards(jnp.array([[2.0, 3.0, -1.0]]), mask),
                             [[[0, 2, 0], [0, 0, 0], [0, 0, -1]]])


def _carried_returns(token_rewards, mask, gamma):
  """verl 0.9.1's REINFORCE++ loop, transcribed: masked positions carry the running return."""
  b, t = token_rewards.shape
  returns = np.zeros_like(token_rewards, dtype=np.float64)
  running = np.zeros(b)
  for i in reversed(range(t)):
    new_running = token_rewards[:, i] + gamma * running
    returns[:, i] = new_running * mask[:, i]
    running = new_running * mask[:, i] + running * (1 - mask[:, i])
  return returns


def _returns_from_formula(token_rewards, mask, gamma):
  """G_t = sum over later model tokens t' of gamma^(#model tokens in (t, t']) r_t'; 0 on holes."""
  out = np.zeros(token_rewards.shape)
  for row in range(token_rewards.shape[0]):
    for t in range(token_rewards.shape[1]):
      if not mask[row, t]:
        continue
      k = 0
      for u in range(t, token_rewards.shape[1]):
        if mask[row, u]:
          out[row, t] += gamma ** k * token_rewards[row, u]
          k += 1
  return out


def _whiten(values, mask):
  m = mask > 0
  mean = values[m].mean()
  return (values - mean) / np.sqrt(np.var(values[m], ddof=1) + 1e-8) * m


def _holey_mask(rng, shape):
  """Model tokens with interior holes (observation spans) and right padding."""
  mask = (rng.random(shape) < 0.65).astype(np.float32)
  mask[..., 0], mask[..., 2], mask[..., 3] = 1.0, 0.0, 1.0  # every row has a hole at 2
  lengths = rng.integers(4, shape[-1] + 1, size=shape[:-1])
  return mask * (np.arange(shape[-1]) < lengths[..., None])


def test_reinforce_plus_plus_gamma_by_hand():
  tr = np.array([[[1.0, 2.0, 3.0], [0.0, 5.0, 9.0]]], np.float32)
  mask = np.array([[[1, 1, 1], [1, 1, 0]]], np.float32)
  # Row 0: G = [1 + .5*2 + .25*3, 2 + .5*3, 3] = [2.75, 3.5, 3]; row 1: [2.5, 5] (9 is padding).
  returns = np.array([2.75, 3.5, 3.0, 2.5, 5.0])
  ref = (returns - returns.mean()) / np.sqrt(np.var(returns, ddof=1) + 1e-8)
  got = adv.reinforce_plus_plus(tr, mask, gamma=0.5)
  np.testing.assert_allclose(got[0, 0], ref[:3], rtol=1e-5)
  np.testing.assert_allclose(got[0, 1], [ref[3], ref[4], 0.0], rtol=1e-5)


def test_returns_carry_through_holes_by_hand():
  # Model tokens at 0, 1, 4; an observation span at 2-3 (its "reward" 7 is ignored); padding at 5.
  tr = np.array([[0.0, 1.0, 7.0, 7.0, 4.0, 9.0]], np.float32)
  mask = np.array([[1, 1, 0, 0, 1, 0]], np.float32)
  # gamma counts model tokens only: G_4 = 4, G_1 = 1 + .5*4 = 3, G_0 = 0 + .5*3 = 1.5.
  np.testing.assert_allclose(adv.discounted_returns(tr, mask, gamma=0.5),
                             [[1.5, 3.0, 0.0, 0.0, 4.0, 0.0]], rtol=1e-6)
  # The tokens before the observation get credit for the reward after it (no reset at the hole).
  outcome = adv.outcome_to_token_rewards(np.array([[1.0]]), mask[None])
  np.testing.assert_allclose(outcome, [[[0, 0, 0, 0, 1, 0]]])
  np.testing.assert_allclose(adv.discounted_returns(outcome, mask[None]),
                             [[[1, 1, 0, 0, 1, 0]]])


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_plus_plus_with_holes_matches_verl_loop(gamma):
  rng = np.random.default_rng(1)
  tr = rng.normal(size=(2, 3, 9)).astype(np.float32)
  mask = _holey_mask(rng, (2, 3, 9))
  assert np.any(mask[..., :-1] < mask[..., 1:])  # interior holes exist
  flat_tr, flat_m = tr.reshape(6, 9), mask.reshape(6, 9)
  returns = _carried_returns(flat_tr, flat_m, gamma)
  np.testing.assert_allclose(returns, _returns_from_formula(flat_tr, flat_m, gamma), atol=1e-9)
  np.testing.assert_allclose(adv.discounted_returns(tr, mask, gamma=gamma).reshape(6, 9), returns,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(adv.reinforce_plus_plus(tr, mask, gamma=gamma).reshape(6, 9),
                             _whiten(returns, flat_m), rtol=1e-4, atol=1e-5)


def test_reinforce_plus_plus_matches_verl_loop_without_holes():
  tr = RNG.normal(size=(2, 3, 6)).astype(np.float32)
  lengths = np.array([[6, 3, 0], [1, 5, 4]])
  mask = (np.arange(6) < lengths[..., None]).astype(np.float32)
  returns = _carried_returns((tr * mask).reshape(6, 6), mask.reshape(6, 6), 0.9)
  np.testing.assert_allclose(adv.reinforce_plus_plus(tr, mask, gamma=0.9).reshape(6, 6),
                             _whiten(returns, mask.reshape(6, 6)), rtol=1e-4, atol=1e-5)


def test_remax_token_advantages_with_holes():
  rng = np.random.default_rng(2)
  tr = rng.normal(size=(2, 3, 8)).astype(np.float32)
  mask = _holey_mask(rng, (2, 3, 8))
  greedy = np.array([0.5, -1.0], np.float32)
  # verl remax: reverse cumulative sum of the masked rewards minus the baseline (on model tokens).
  flat = (tr * mask).reshape(6, 8)
  returns = np.flip(np.cumsum(np.flip(flat, -1), -1), -1).reshape(2, 3, 8)
  ref = (returns - greedy[:, None, None]) * mask
  np.testing.assert_allclose(adv.remax_token_advantages(tr, greedy, mask), ref, rtol=1e-5,
                             atol=1e-5)
  # Outcome rewards only: equal to the sequence-level greedy baseline on every model token.
  r = rng.normal(size=(2, 3)).astype(np.float32)
  outcome = adv.outcome_to_token_rewards(r, mask)
  np.testing.assert_allclose(adv.remax_token_advantages(outcome, greedy, mask),
                             adv.broadcast_to_tokens(adv.greedy_baseline(r, greedy), mask),
                             rtol=1e-5, atol=1e-6)


def test_turn_rewards_to_token_rewards():
  # Turn 0: tokens 0-1, observation 2-3 (turn id 0, masked), turn 1: tokens 4-5, padding 6.
  turn_ids = np.array([[0, 0, 0, 0, 1, 1, -1], [0, 0, 0, 0, 0, -1, -1]])
  mask = np.array([[1, 1, 0, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0, 0]], np.float32)
  turn_rewards = np.array([[0.25, 1.0, 5.0], [2.0, 3.0, 4.0]], np.float32)
  got = adv.turn_rewards_to_token_rewards(turn_rewards, turn_ids, mask)
  # Reward of turn k on its last model token; turns without tokens (k=2; k=1 in row 1) dropped.
  np.testing.assert_allclose(got, [[0, 0.25, 0, 0, 0, 1.0, 0], [0, 0, 2.0, 0, 0, 0, 0]])
  # A single final turn reduces to outcome_to_token_rewards.
  np.testing.assert_allclose(
      adv.turn_rewards_to_token_rewards(turn_rewards[:, :1], np.zeros((2, 7), int), mask),
      adv.outcome_to_token_rewards(turn_rewards[None, :, 0], mask[None])[0])


def test_group_baseline_with_holes_ignores_observation_tokens():
  rng = np.random.default_rng(3)
  r = rng.normal(size=(2, 3)).astype(np.float32)
  mask = _holey_mask(rng, (2, 3, 7))
  centred = r - r.mean(axis=1, keepdims=True)
  tokens = np.broadcast_to(centred[..., None], mask.shape).reshape(6, 7)
  np.testing.assert_allclose(adv.reinforce_plus_plus_baseline(r, mask).reshape(6, 7),
                             _whiten(tokens, mask.reshape(6, 7)), rtol=1e-4, atol=1e-5)


def test_reinforce_plus_plus_baseline():
  r = np.array([[1.0, 0.0], [1.0, 1.0]], np.float32)
  mask = np.array([[[1, 1, 1], [1, 0, 0]], [[1, 1, 0], [1, 0, 0]]], np.float32)
  centred = np.array([[0.5, -0.5], [0.0, 0.0]])
  vals = np.concatenate([np.full(3, 0.5), [-0.5], np.zeros(3)])
  scale = 1 / np.sqrt(np.var(vals, ddof=1) + 1e-8)
  ref = (centred[..., None] - vals.mean()) * scale * mask
  np.testing.assert_allclose(adv.reinforce_plus_plus_baseline(r, mask), ref, rtol=1e-5)
  # The token-mean of the result is 0 (re-centred over valid tokens).
  got = np.asarray(adv.reinforce_plus_plus_baseline(r, mask))
  assert abs(got[mask > 0].mean()) < 1e-6


def test_tempo_hand_drawn_tree():
  # Tree of one group (raw rewards):      root
  #                                         |  a (all three, V = 1/3)
  #                                   b (0,1, V=1/2)      e (2, V=0)
  #                                c (0: V=1)  d (1: V=0)     f (2)
  tokens = jnp.array([[[1, 2, 3], [1, 2, 4], [1, 5, 6]]])
  mask = jnp.ones((1, 3, 3))
  rewards = jnp.array([[1.0, 0.0, 0.0]])
  a = np.array([2 / 3, -1 / 3, -1 / 3]) / np.std([1, 0, 0], ddof=1)  # GRPO (epsilon aside)
  got = adv.tempo_tree_advantages(rewards, tokens, mask, eta=2.0, value_rewards="raw",
                                  epsilon=0.0)
  td = np.array([[0, 1 / 2 - 1 / 3, 1 - 1 / 2], [0, 1 / 2 - 1 / 3, 0 - 1 / 2], [0, 0 - 1 / 3, 0]])
  np.testing.assert_allclose(got[0], a[:, None] + 2.0 * td, rtol=1e-5, atol=1e-6)
  # Normalised values: V averages the GRPO z-scores instead.
  got = adv.tempo_tree_advantages(rewards, tokens, mask, eta=1.0, epsilon=0.0)
  td_n = np.array([[0, (a[0] + a[1]) / 2, a[0] - (a[0] + a[1]) / 2],
                   [0, (a[0] + a[1]) / 2, a[1] - (a[0] + a[1]) / 2],
                   [0, a[2], 0]])
  np.testing.assert_allclose(got[0], a[:, None] + td_n, rtol=1e-5, atol=1e-6)


def test_tempo_reduces_to_grpo_without_branches_and_handles_endings():
  rewards = jnp.array([[1.0, 0.0]])
  same = jnp.array([[[4, 5, 6], [4, 5, 6]]])
  grpo = adv.broadcast_to_tokens(adv.group_zscore(rewards), jnp.ones((1, 2, 3)))
  np.testing.assert_allclose(
      adv.tempo_tree_advantages(rewards, same, jnp.ones((1, 2, 3)), eta=1.0), grpo, rtol=1e-6)
  # Response 1 ends after the shared token 4 (padding id 4 too): the branch is "end vs 5".
  tokens = jnp.array([[[4, 5, 6], [4, 4, 4]]])
  mask = jnp.array([[[1, 1, 1], [1, 0, 0]]], jnp.float32)
  got = adv.tempo_tree_advantages(rewards, tokens, mask, eta=1.0, value_rewards="raw",
                                  epsilon=0.0)
  a = 1 / np.std([1, 0], ddof=1) / 2
  np.testing.assert_allclose(got[0], [[a, a + (1 - 0.5), a], [-a, 0, 0]], rtol=1e-6)


def test_advantage_metrics():
  r = jnp.array([[1.0, 0.0], [1.0, 1.0]])
  a = jnp.array([[1.0, -1.0], [0.0, 0.0]])
  mask = jnp.array([[[1, 1], [1, 0]], [[1, 0], [0, 0]]], jnp.float32)
  m = adv.advantage_metrics(r, a, mask)
  vals = np.array([1.0, 1.0, -1.0, 0.0])
  np.testing.assert_allclose(m["reward/mean"], 0.75)
  np.testing.assert_allclose(m["reward/std"], np.std([1, 0, 1, 1], ddof=1), rtol=1e-6)
  np.testing.assert_allclose(m["advantages/mean"], vals.mean())
  np.testing.assert_allclose(m["advantages/std"], vals.std(), rtol=1e-6)
  np.testing.assert_allclose(m["advantages/min"], -1.0)
  np.testing.assert_allclose(m["advantages/max"], 1.0)
  np.testing.assert_allclose(m["frac_reward_zero_std"], 0.5)
  empty = adv.advantage_metrics(r, a, jnp.zeros_like(mask))
  assert all(np.isfinite(v) for v in empty.values())


# ---------------------------------------------------------------------------------------------
# jit and constant-reward robustness.


def test_inside_user_jit_and_constant_rewards_are_finite():
  r = jnp.asarray(RNG.normal(size=(4, 4)), jnp.float32)
  const = jnp.full((4, 4), 0.3, jnp.float32)
  mask = jnp.ones((4, 4, 3), jnp.float32).at[:, :, 2].set(0.0)
  tokens = jnp.asarray(RNG.integers(0, 3, size=(4, 4, 3)), jnp.int32)
  lengths = jnp.full((4, 4), 2)

  @jax.jit
  def all_estimators(x):
    return {
        "group_zscore": adv.group_zscore(x, ddof=1, single_sample="zero"),
        "group_center": adv.group_center(x),
        "batch_std": adv.group_mean_batch_std(x),
        "loo": adv.leave_one_out(x),
        "gpg": adv.gpg(x, alpha="valid_fraction"),
        "passk": adv.pass_at_k_advantage(x, k=3),
        "opo": adv.opo_baseline(x, lengths),
        "greedy": adv.greedy_baseline(x, x[:, 0]),
        "pairs": adv.weighted_grpo_pairs(x, lambda_neg=0.5),
        "mvar": adv.mvar_bundle(x, bundle_size=2, credit="sum-mean"),
        "laser": adv.mix_self_reward(x, x * 0.5),
        "gdpo": adv.normalize_then_sum(jnp.stack([x, -x], -1), jnp.ones(2)),
        "rfpp": adv.reinforce_plus_plus(adv.outcome_to_token_rewards(x, mask), mask, gamma=0.9),
        "rfpp_baseline": adv.reinforce_plus_plus_baseline(x, mask),
        "tempo": adv.tempo_tree_advantages(x, tokens, mask, eta=0.5),
        "metrics": adv.advantage_metrics(x, adv.group_zscore(x), mask),
    }

  for x in (r, const):
    for name, out in jax.tree_util.tree_leaves_with_path(all_estimators(x)):
      assert np.all(np.isfinite(np.asarray(out))), name
  out = all_estimators(r)
  np.testing.assert_allclose(out["group_zscore"], adv.group_zscore(r), rtol=1e-6)
  ref = (np.asarray(r) - np.asarray(r).mean(1, keepdims=True)) * 4 / 3
  np.testing.assert_allclose(out["loo"], ref, rtol=1e-5, atol=1e-6)
  # Numeric coefficients are traced: changing them does not retrace.
  f = jax.jit(lambda x, eps: adv.group_zscore(x, epsilon=eps))
  np.testing.assert_allclose(f(r, 1e-4), adv.group_zscore(r, epsilon=1e-4), rtol=1e-6)
