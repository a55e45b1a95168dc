"""Every preset end to end: micro-batch accumulation, NaN-freedom, and verl/TRL numbers.

The peer references below are independent numpy transcriptions of the verl / TRL formulas
(``specs/landscape.md``), not calls into our code.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import advantages as adv_lib
from rlvr_jax.objectives import compose, presets, regularizers
from rlvr_jax.types import AdvantageInputs, LossBatch, global_counts

P, G, T = 4, 4, 6
B = P * G
MICRO = 4  # micro-batches of one group each (whole groups)
RNG = np.random.default_rng(3)
CORRECT = np.array([[1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0]], np.float32)
LENGTHS = np.array([[6, 3, 0, 5], [2, 6, 4, 1], [5, 5, 2, 3], [6, 4, 6, 2]], np.int32)
TRUNCATED = (LENGTHS == T).astype(np.float32)
MASK3 = (np.arange(T)[None, None] < LENGTHS[..., None]).astype(np.float32)
TOKENS = RNG.integers(0, 2, (P, G, T)).astype(np.int32)  # small vocabulary: shared prefixes
OLD = RNG.normal(-1.0, 0.4, (B, T)).astype(np.float32)
REF = (OLD + RNG.normal(0, 0.2, (B, T))).astype(np.float32)
ROLLOUT = (OLD + RNG.normal(0, 0.1, (B, T))).astype(np.float32)
LOGPROBS = (OLD + RNG.normal(0, 0.3, (B, T))).astype(np.float32)
ENTROPY = RNG.uniform(0.1, 2.0, (B, T)).astype(np.float32)
SELF_REWARDS = RNG.uniform(-0.2, 1.2, (P, G)).astype(np.float32)
THR = RNG.normal(0, 1, (B, T)).astype(np.float32)

OVERRIDES = {
    "dapo": dict(max_length=T, cache_length=2),
    "riskpo": dict(bundle_size=2),
    "dr_grpo": dict(constant=8.0),
}


def advantage_inputs(rewards):
  return AdvantageInputs(
      rewards=jnp.asarray(rewards), mask=jnp.asarray(MASK3), tokens=jnp.asarray(TOKENS),
      lengths=jnp.asarray(LENGTHS), truncated=jnp.asarray(TRUNCATED),
      token_rewards=jnp.zeros((P, G, T)),
      extras={
          "greedy_rewards": jnp.asarray([1.0, 0.0, 0.0, 1.0]),
          "self_rewards": jnp.asarray(SELF_REWARDS),
          "old_logprobs": jnp.asarray(OLD.reshape(P, G, T)),
          "ref_logprobs": jnp.asarray(REF.reshape(P, G, T)),
          "correct": jnp.asarray(CORRECT),
          "step": jnp.asarray(300),
      })


def loss_batch(rewards, advantages_bt, logprobs_shift=0.0):
  mask = MASK3.reshape(B, T)
  correct = CORRECT.reshape(B)
  truncated = TRUNCATED.reshape(B)
  return LossBatch(
      mask=jnp.asarray(mask), advantages=jnp.asarray(advantages_bt),
      old_logprobs=jnp.asarray(OLD - logprobs_shift), ref_logprobs=jnp.asarray(REF),
      rollout_logprobs=jnp.asarray(ROLLOUT), rewards=jnp.asarray(rewards).reshape(B),
      correct=jnp.asarray(correct), group_ids=jnp.repeat(jnp.arange(P, dtype=jnp.int32) + 10, G),
      truncated=jnp.asarray(truncated),
      extras={
          "thr": jnp.asarray(THR),
          "selfreward_position": jnp.asarray(np.minimum(LENGTHS.reshape(B), T - 1)),
          "selfreward_weights": regularizers.laser_class_weights(correct, truncated),
      })


@functools.lru_cache(maxsize=None)
def run(name):
  """Full-batch and accumulated micro-batch loss/grad/metrics, plus extreme log-ratios."""
  objective = presets.get(name, **OVERRIDES.get(name, {}))
  inputs = advantage_inputs(CORRECT)
  # The trainer runs these once per rollout batch under jit; so does the test.
  rewards = jax.jit(objective.reward_transform)(inputs.rewards, inputs)
  advantages = jax.jit(objective.advantage)(dataclasses.replace(inputs, rewards=rewards))
  adv_tokens = adv_lib.broadcast_to_tokens(advantages, inputs.mask).reshape(B, T)
  batch = loss_batch(rewards, adv_tokens)
  counts = global_counts(batch.mask, batch.group_ids)
  entropy = jnp.asarray(ENTROPY) if objective.needs_entropy else None
  step = jax.value_and_grad(objective.loss, has_aux=True)
  rows = B // MICRO

  @jax.jit
  def compute(logprobs, batch):
    (full, full_metrics), full_grad = step(logprobs, batch, counts, entropy)
    # The MICRO micro-batches run under one vmap (one compiled loss), each with the global counts.
    split = lambda x: x.reshape((MICRO, rows) + x.shape[1:])
    micro_entropy = None if entropy is None else split(entropy)
    (losses, metrics), grads = jax.vmap(
        lambda lp, mb, ent: step(lp, mb, counts, ent),
        in_axes=(0, 0, None if entropy is None else 0))(
            split(logprobs), jax.tree_util.tree_map(split, batch), micro_entropy)
    micro_metrics = compose.combine_metrics(
        [{k: v[i] for k, v in metrics.items()} for i in range(MICRO)])
    return (full, full_metrics, full_grad, jnp.sum(losses), micro_metrics,
            grads.reshape(logprobs.shape))

  out = compute(jnp.asarray(LOGPROBS), batch)
  extremes = [compute(jnp.asarray(LOGPROBS), dataclasses.replace(
      batch, old_logprobs=batch.old_logprobs - s)) for s in (1e4, -1e4)]
  return objective, rewards, advantages, batch, out, extremes


NAMES = presets.names()


def test_names_and_get():
  assert len(NAMES) == 22 and len(set(NAMES)) == 22
  with pytest.raises(KeyError):
    presets.get("nope")
  with pytest.raises(TypeError):
    presets.get("grpo", not_a_knob=1)
  assert presets.get("grpo", kl_coef=0.0).needs_reference is False


@pytest.mark.parametrize("name", NAMES)
def test_micro_batches_add_up_to_the_full_batch(name):
  _, _, _, _, (full, full_metrics, full_grad, micro, micro_metrics, micro_grad), _ = run(name)
  assert np.isfinite(full)
  np.testing.assert_allclose(micro, full, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(micro_grad, full_grad, rtol=1e-6, atol=1e-6)
  assert set(micro_metrics) == set(full_metrics)
  for key in full_metrics:
    np.testing.assert_allclose(micro_metrics[key], full_metrics[key], rtol=1e-5, atol=1e-6,
                               err_msg=key)
  # The loss depends on the policy: some token has a non-zero gradient.
  assert np.abs(np.asarray(full_grad)).max() > 0
  # Padding gets no gradient, except LaSeR's z_c position after EOS (mask 0 by contract).
  padding = MASK3.reshape(B, T) == 0
  if name == "laser":
    padding[np.arange(B), np.minimum(LENGTHS.reshape(B), T - 1)] = False
  np.testing.assert_array_equal(np.asarray(full_grad)[padding], 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_extreme_log_ratios_stay_finite(name):
  for full, metrics, grad, *_ in run(name)[5]:
    assert np.isfinite(full), name
    assert np.all(np.isfinite(grad)), name
    for key, value in metrics.items():
      assert not np.isnan(value), (name, key)


def test_flags():
  flags = {n: presets.get(n) for n in NAMES}
  assert {n for n, o in flags.items() if o.whole_groups} == {"real", "pacs"}
  assert {n for n, o in flags.items() if o.needs_entropy} == {"psr", "nsr", "w_reinforce"}
  assert {n for n, o in flags.items() if o.needs_reference} == {
      "grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline"}


# ---------------------------------------------------------------------------------------------
# verl / TRL numbers on the same inputs.

MASK = MASK3.reshape(B, T)
NONEMPTY = MASK.sum(-1) > 0


def np_group_zscore(r, eps):
  mean = r.mean(1, keepdims=True)
  std = r.std(1, ddof=1, keepdims=True)
  return np.where(std > 0, (r - mean) / (std + eps), 0.0)


def np_seq_mean_token_mean(x):
  return ((x * MASK).sum(-1)[NONEMPTY] / MASK.sum(-1)[NONEMPTY]).mean()


def np_token_mean(x):
  return (x * MASK).sum() / MASK.sum()


def verl_vanilla(lp, old, adv, lo, hi, c):
  ratio = np.exp(np.clip(lp - old, -20, 20))
  l1 = -adv * ratio
  l2 = -adv * np.clip(ratio, 1 - lo, 1 + hi)
  clip1 = np.maximum(l1, l2)
  return np.where(adv < 0, np.minimum(-adv * c, clip1), clip1)


def test_grpo_equals_verl_with_dual_clip_and_low_var_kl():
  objective = presets.get("grpo", dual_clip=3.0)
  inputs = advantage_inputs(CORRECT)
  adv = np.asarray(objective.advantage(inputs))
  np.testing.assert_allclose(adv, np_group_zscore(CORRECT, 1e-6), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(adv[0], [1.5, -0.5, -0.5, -0.5], rtol=1e-5)  # spec §3.3.2
  adv_bt = np.repeat(adv.reshape(B, 1), T, 1)
  batch = loss_batch(CORRECT, adv_bt, logprobs_shift=0.0)
  old = OLD.copy()
  loss, _ = jax.jit(objective.loss)(jnp.asarray(LOGPROBS), batch,
                                    global_counts(batch.mask, batch.group_ids))
  pg = np_seq_mean_token_mean(verl_vanilla(LOGPROBS, old, adv_bt, 0.2, 0.2, 3.0))
  kl = np.clip(REF - LOGPROBS, -20, 20)
  kl = np.clip(np.exp(kl) - kl - 1, -10, 10)
  np.testing.assert_allclose(loss, pg + 0.04 * np_seq_mean_token_mean(kl), rtol=1e-5)


def test_dapo_equals_trl_dapo_loss_and_verl_dapo_rewards():
  name = "dapo"
  _, rewards, adv, batch, (full, *_), _ = run(name)
  # verl dapo reward manager: ±1 score plus min(-(L - (L_max - L_cache)) / L_cache, 0).
  score = np.where(CORRECT > 0, 1.0, -1.0) + np.minimum(-(LENGTHS - (T - 2)) / 2.0, 0.0)
  np.testing.assert_allclose(rewards, score, rtol=1e-6)
  np.testing.assert_allclose(adv, np_group_zscore(score, 1e-6), rtol=1e-5, atol=1e-6)
  # TRL loss_type="dapo": −min(ρA, clamp(ρ, 1−ε, 1+ε_high)A), Σ(l·m)/Σm.
  a = np.asarray(batch.advantages)
  ratio = np.exp(LOGPROBS - OLD)
  per_token = -np.minimum(ratio * a, np.clip(ratio, 0.8, 1.28) * a)
  np.testing.assert_allclose(full, np_token_mean(per_token), rtol=1e-5)


def test_dr_grpo_equals_trl_dr_grpo_on_nonempty_sequences():
  _, _, adv, batch, (full, *_), _ = run("dr_grpo")
  centred = CORRECT - CORRECT.mean(1, keepdims=True)
  np.testing.assert_allclose(adv, centred, atol=1e-6)
  np.testing.assert_allclose(adv[0], [0.75, -0.25, -0.25, -0.25], rtol=1e-6)
  a = np.asarray(batch.advantages)
  ratio = np.exp(LOGPROBS - OLD)
  per_token = -np.minimum(ratio * a, np.clip(ratio, 0.8, 1.2) * a)
  # TRL: Σ(l·m) / (B · max_completion_length); we count non-empty sequences (docs).
  np.testing.assert_allclose(full, (per_token * MASK).sum() / (NONEMPTY.sum() * 8.0), rtol=1e-5)


def test_cispo_equals_trl_cispo():
  _, _, _, batch, (full, _, grad, *_), _ = run("cispo")
  a = np.asarray(batch.advantages)
  ratio = np.exp(LOGPROBS - OLD)
  weight = np.minimum(ratio, 5.0)  # TRL: clamp(coef_1, max=epsilon_high=5.0).detach()
  np.testing.assert_allclose(full, np_token_mean(-weight * a * LOGPROBS), rtol=1e-5)
  np.testing.assert_allclose(grad, -weight * a * MASK / MASK.sum(), rtol=1e-5, atol=1e-8)


def test_gspo_equals_verl_gspo():
  _, _, _, batch, (full, *_), _ = run("gspo")
  a = np.asarray(batch.advantages)
  seq = ((LOGPROBS - OLD) * MASK).sum(-1) / np.maximum(MASK.sum(-1), 1)
  s = np.exp(np.minimum(seq, 10.0))[:, None]
  per_token = np.maximum(-a * s, -a * np.clip(s, 1 - 3e-4, 1 + 4e-4))
  np.testing.assert_allclose(full, np_seq_mean_token_mean(per_token), rtol=1e-5)


def test_sapo_equals_trl_sapo():
  _, _, _, batch, (full, *_), _ = run("sapo")
  a = np.asarray(batch.advantages)
  ratio = np.exp(LOGPROBS - OLD)
  tau = np.where(a > 0, 1.0, 1.05)
  per_token = -(1 / (1 + np.exp(-tau * (ratio - 1)))) * 4 / tau * a
  np.testing.assert_allclose(full, np_seq_mean_token_mean(per_token), rtol=1e-5)


def test_rloo_advantage_equals_trl_rloo_with_k1_in_reward():
  _, _, adv, *_ = run("rloo")
  kl = ((OLD - REF) * MASK).sum(-1).reshape(P, G)
  r = CORRECT - 0.05 * kl
  baseline = (r.sum(1, keepdims=True) - r) / (G - 1)
  np.testing.assert_allclose(adv, r - baseline, rtol=1e-5, atol=1e-6)


def test_reinforce_pp_advantage_equals_verl():
  _, _, adv, *_ = run("reinforce_pp")
  m = MASK3.reshape(B, T)
  token_r = -0.001 * (OLD - REF) * m
  last = MASK3.reshape(B, T).sum(-1).astype(int) - 1
  for b in range(B):
    if last[b] >= 0:
      token_r[b, last[b]] += CORRECT.reshape(B)[b]
  returns = np.flip(np.cumsum(np.flip(token_r, 1), 1), 1) * m
  valid = returns[m > 0]
  whitened = (returns - valid.mean()) / np.sqrt(valid.var(ddof=1) + 1e-8) * m
  np.testing.assert_allclose(np.asarray(adv).reshape(B, T), whitened, rtol=1e-4, atol=1e-5)


def test_zero_variance_group_gets_no_gradient_in_grpo_family():
  # (DAPO is absent: its overlong penalty gives the all-wrong group reward variance.)
  for name in ("grpo", "cispo", "gspo"):
    _, _, adv, _, (_, _, grad, *_), _ = run(name)
    np.testing.assert_array_equal(np.asarray(adv)[2], 0.0)
    rows = slice(2 * G, 3 * G)
    if name == "grpo":  # the KL term still acts on the zero-variance group
      continue
    np.testing.assert_array_equal(np.asarray(grad)[rows], 0.0)


def test_binary_remap_presets_assign_the_paper_advantages():
  expected = {"psr": np.where(CORRECT > 0, 1.0, 0.0), "nsr": np.where(CORRECT > 0, 0.0, -1.0),
              "w_reinforce": np.where(CORRECT > 0, 0.1, -1.0)}
  for name, adv in expected.items():
    np.testing.assert_allclose(run(name)[2], adv, rtol=1e-6, err_msg=name)


def test_remax_advantage_and_sequence_reinforce_loss():
  _, _, adv, batch, (full, *_), _ = run("remax")
  np.testing.assert_allclose(adv, CORRECT - np.array([1.0, 0.0, 0.0, 1.0])[:, None])
  a = np.asarray(batch.advantages)
  np.testing.assert_allclose(full, (-a * LOGPROBS * MASK).sum() / NONEMPTY.sum(), rtol=1e-5)


def test_reinforce_pp_baseline_equals_verl_with_k2_kl_loss():
  _, _, adv, batch, (full, *_), _ = run("reinforce_pp_baseline")
  centred = np.repeat((CORRECT - CORRECT.mean(1, keepdims=True)).reshape(B, 1), T, 1) * MASK
  valid = centred[MASK > 0]
  whitened = (centred - valid.mean()) / np.sqrt(valid.var(ddof=1) + 1e-8) * MASK
  np.testing.assert_allclose(np.asarray(adv).reshape(B, T), whitened, rtol=1e-4, atol=1e-5)
  a = np.asarray(batch.advantages)
  pg = np_token_mean(verl_vanilla(LOGPROBS, OLD, a, 0.2, 0.2, 1e9))  # no dual-clip
  kl = np_token_mean(0.5 * (LOGPROBS - REF) ** 2)
  np.testing.assert_allclose(full, pg + 0.001 * kl, rtol=1e-5)


def test_real_and_pacs_presets_equal_their_official_formulas():
  score = ((LOGPROBS - OLD) * MASK).sum(-1)
  groups = np.repeat(np.arange(P), G)
  correct = CORRECT.reshape(B)
  # REAL (Red-RL/REAL compute_policy_loss_real): Σ over two-class groups / number of groups.
  mean_score = score / np.maximum(MASK.sum(-1), 1)
  total = 0.0
  for g in range(P):
    pos = (groups == g) & NONEMPTY & (correct == 1)
    neg = (groups == g) & NONEMPTY & (correct == 0)
    if pos.any() and neg.any():
      total += (np.log1p(np.exp(-mean_score[pos] / 0.5).sum())
                + np.log1p(np.exp(mean_score[neg] / 0.5).sum()))
  np.testing.assert_allclose(run("real")[4][0], total / P, rtol=1e-5)
  # PACS (ritzz-ai/PACS): β=1 sum score, RLOO, class-balanced BCE, mean over sequences.
  losses = []
  for i in range(B):
    idx = np.where(groups == groups[i])[0]
    psi = score[i] - (score[idx].sum() - score[i]) / (G - 1)
    y = correct[i]
    bce = np.log1p(np.exp(psi)) - y * psi
    n_pos = correct[idx].sum()
    w = G / (2 * (n_pos if y else G - n_pos)) if 0 < n_pos < G else 1.0
    losses.append(w * bce)
  np.testing.assert_allclose(run("pacs")[4][0], np.array(losses)[NONEMPTY].sum() / NONEMPTY.sum(),
                             rtol=1e-5)


def test_register_makes_a_user_objective_reachable_by_name():
  def factory(*, epsilon=0.2):
    return compose.make_objective(
        "test_user_objective",
        advantage=compose.advantage(adv_lib.group_center),
        surrogate=compose.surrogate(presets.surrogates.ppo_clip, epsilon_low=epsilon,
                                    epsilon_high=epsilon),
        aggregation=presets.aggregation.token_mean)

  with pytest.raises(ValueError, match="built-in"):
    presets.register("grpo", factory)
  with pytest.raises(TypeError):
    presets.register("test_user_objective", "not callable")
  presets.register("test_user_objective", factory)
  try:
    assert presets.names()[-1] == "test_user_objective"
    objective = presets.get("test_user_objective", epsilon=0.1)
    assert objective.name == "test_user_objective"
    assert objective.hparams == {"epsilon": 0.1}
    assert presets.defaults("test_user_objective") == {"epsilon": 0.2}
    # The registered factory is what runs: group centring of [[1, 0]] is [[0.5, -0.5]].
    inputs = dataclasses.replace(advantage_inputs(CORRECT), rewards=jnp.array(CORRECT))
    np.testing.assert_allclose(objective.advantage(inputs),
                               CORRECT - CORRECT.mean(axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(TypeError):
      presets.get("test_user_objective", not_a_knob=1)
  finally:
    del presets._PRESETS["test_user_objective"]  # keep the registry as other tests expect it


# ---------------------------------------------------------------------------------------------
# Keyword arguments as config data, resolved hparams, and what each objective reads.

PPO_CLIP_PRESETS = {"grpo", "dapo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline",
                    "psr", "nsr", "w_reinforce", "riskpo", "weighted_grpo", "tempo", "laser",
                    "thr"}


def test_every_preset_keyword_is_plain_config_data_and_recorded_as_hparams():
  for name in NAMES:
    defaults = presets.defaults(name)
    assert all(type(v) in (bool, int, float, str) for v in defaults.values()), (name, defaults)
    objective = presets.get(name, **OVERRIDES.get(name, {}))
    assert objective.hparams == {**defaults, **OVERRIDES.get(name, {})}, name
  assert presets.get("grpo", epsilon_high=0.28).hparams["epsilon_high"] == 0.28
  # Calling the preset function directly records them too.
  assert presets.dapo(epsilon_high=0.3).hparams == {**presets.defaults("dapo"),
                                                    "epsilon_high": 0.3}
  assert compose.make_objective(
      "x", advantage=presets.GRPO_ADVANTAGE, surrogate=presets.ppo_clip_stage(0.2, 0.2),
      aggregation=presets.aggregation.token_mean).hparams == {}


def test_ppo_clip_presets_take_epsilon_low_and_high_and_other_knobs_have_their_own_names():
  for name in NAMES:
    keys = set(presets.defaults(name))
    assert "epsilon" not in keys, name
    if name in PPO_CLIP_PRESETS:
      assert {"epsilon_low", "epsilon_high", "dual_clip"} <= keys, name
      defaults = presets.defaults(name)
      if name != "dapo":
        assert defaults["epsilon_high"] == defaults["epsilon_low"] == 0.2, name
      assert defaults["dual_clip"] == 0.0, name
  assert set(presets.defaults("cispo")) == {"is_lower", "is_upper"}
  assert set(presets.defaults("gmpo")) == {"log_clip_low", "log_clip_high"}
  assert set(presets.defaults("gspo")) == {"epsilon_low", "epsilon_high"}  # sequence-ratio PPO
  with pytest.raises(ValueError, match="dual_clip"):
    presets.get("grpo", dual_clip=0.5)


def test_experimental_presets_are_marked_by_the_decorator():
  assert presets.EXPERIMENTAL == {"dispo", "weighted_grpo", "tempo", "thr"}


def test_grpo_takes_clip_higher():
  objective = presets.get("grpo", epsilon_low=0.1, epsilon_high=0.3, kl_coef=0.0)
  assert not objective.needs_reference
  adv = np.asarray(objective.advantage(advantage_inputs(CORRECT)))
  adv_bt = np.repeat(adv.reshape(B, 1), T, 1)
  batch = loss_batch(CORRECT, adv_bt)
  loss, _ = objective.loss(jnp.asarray(LOGPROBS), batch,
                           global_counts(batch.mask, batch.group_ids))
  np.testing.assert_allclose(
      loss, np_seq_mean_token_mean(verl_vanilla(LOGPROBS, OLD, adv_bt, 0.1, 0.3, 1e9)),
      rtol=1e-5)


def test_cispo_truncation_bounds_and_gmpo_log_clip():
  _, _, _, batch, *_ = run("cispo")
  a = np.asarray(batch.advantages)
  ratio = np.exp(LOGPROBS - OLD)
  objective = presets.get("cispo", is_lower=0.9, is_upper=1.1)
  counts = global_counts(batch.mask, batch.group_ids)
  loss, _ = objective.loss(jnp.asarray(LOGPROBS), batch, counts)
  np.testing.assert_allclose(loss, np_token_mean(-np.clip(ratio, 0.9, 1.1) * a * LOGPROBS),
                             rtol=1e-5)
  # GMPO: the clip range bounds the token log-ratio, [−0.05, 0.1] here.
  objective = presets.get("gmpo", log_clip_low=0.05, log_clip_high=0.1)
  loss, _ = objective.loss(jnp.asarray(LOGPROBS), batch, counts)
  seq_adv = (a * MASK).sum(-1) / np.maximum(MASK.sum(-1), 1)
  sign = np.sign(seq_adv)[:, None]
  d = LOGPROBS - OLD
  term = np.minimum(sign * d, sign * np.clip(d, -0.05, 0.1)) * MASK
  per_seq = -seq_adv * np.exp(sign[:, 0] * term.sum(-1) / np.maximum(MASK.sum(-1), 1))
  np.testing.assert_allclose(loss, per_seq[NONEMPTY].sum() / NONEMPTY.sum(), rtol=1e-5)


def test_objectives_declare_what_they_read():
  reads = {n: presets.get(n, **OVERRIDES.get(n, {})) for n in NAMES}
  assert reads["grpo"].advantage_reads == {"rewards"}
  # The remaps read correctness explicitly (no fallback to the rewards).
  assert reads["dapo"].advantage_reads == {"rewards", "correct", "lengths"}
  assert reads["psr"].advantage_reads == {"rewards", "correct"}
  assert reads["rloo"].advantage_reads == {"rewards", "old_logprobs", "ref_logprobs", "mask"}
  assert {"token_rewards", "old_logprobs", "ref_logprobs"} <= reads["reinforce_pp"].advantage_reads
  assert reads["remax"].advantage_reads == {"rewards", "greedy_rewards"}
  assert reads["laser"].advantage_reads == {"rewards", "self_rewards", "truncated", "step"}
  assert reads["grpo"].loss_reads == {"logprobs", "mask", "old_logprobs", "advantages",
                                      "ref_logprobs"}
  assert {"selfreward_position", "selfreward_weights", "correct",
          "truncated"} <= reads["laser"].loss_reads
  assert "thr" in reads["thr"].loss_reads
  assert "entropy" in reads["psr"].loss_reads and "entropy" not in reads["grpo"].loss_reads
  assert {"group_ids", "correct"} <= reads["real"].loss_reads
  for objective in reads.values():  # the flags follow the reads
    assert objective.needs_reference == ("ref_logprobs" in objective.advantage_reads
                                         | objective.loss_reads)
    assert objective.needs_entropy == ("entropy" in objective.loss_reads)
    assert objective.loss.reads == objective.loss_reads  # a field of the loss, not patched on


def test_laser_exposes_the_self_reward_settings_the_trainer_reads():
  hparams = presets.get("laser", temperature=0.7).hparams
  assert (hparams["beta_v"], hparams["c_ref"], hparams["temperature"]) == (0.1, -23.0, 0.7)


def test_register_refuses_factories_that_are_not_config_data():
  def with_none(*, clip=None):
    return presets.grpo()

  def with_kwargs(**kwargs):
    return presets.grpo()

  def with_tuple(*, bounds=(0.1, 0.2)):
    return presets.grpo()

  for factory in (with_none, with_kwargs, with_tuple):
    with pytest.raises(TypeError):
      presets.register("test_bad_factory", factory)
  assert "test_bad_factory" not in presets.names()


# ---------------------------------------------------------------------------------------------
# NaN safety: masked positions may hold anything (issue 14, item 4).

GARBAGE = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, np.nan], np.float32)


def _garbage(x, where, offset=0):
  x = np.array(x, np.float32, copy=True)
  for k, (i, j) in enumerate(np.argwhere(where)):
    x[i, j] = GARBAGE[(k + offset) % len(GARBAGE)]
  return x


@functools.lru_cache(maxsize=None)
def compiled(name):
  """The preset and its jit'd stages, compiled once for the clean and the corrupted batch."""
  objective = presets.get(name, **OVERRIDES.get(name, {}))
  return (objective, jax.jit(objective.reward_transform), jax.jit(objective.advantage),
          jax.jit(jax.value_and_grad(objective.loss, has_aux=True)))


def nan_run(name, corrupt):
  """Rewards, advantages, loss, gradient and metrics with (or without) garbage on padding."""
  objective, reward_fn, advantage_fn, loss_fn = compiled(name)
  padding = MASK == 0
  inputs = advantage_inputs(CORRECT)
  old, ref = OLD, REF
  lp, ent = LOGPROBS, ENTROPY
  if corrupt:
    old, ref = _garbage(OLD, padding), _garbage(REF, padding, offset=1)
    keep = np.zeros_like(padding)
    if name == "laser":  # z_c's log-prob sits outside the mask and is a real value
      keep[np.arange(B), np.minimum(LENGTHS.reshape(B), T - 1)] = True
    lp = _garbage(LOGPROBS, padding & ~keep, offset=2)
    ent = _garbage(ENTROPY, padding, offset=3)
  inputs = dataclasses.replace(inputs, extras={
      **inputs.extras, "old_logprobs": jnp.asarray(old.reshape(P, G, T)),
      "ref_logprobs": jnp.asarray(ref.reshape(P, G, T))})
  rewards = reward_fn(inputs.rewards, inputs)
  advantages = advantage_fn(dataclasses.replace(inputs, rewards=rewards))
  adv_bt = np.asarray(adv_lib.broadcast_to_tokens(advantages, inputs.mask).reshape(B, T))
  batch = loss_batch(rewards, _garbage(adv_bt, padding, offset=4) if corrupt else adv_bt)
  batch = dataclasses.replace(
      batch, old_logprobs=jnp.asarray(old), ref_logprobs=jnp.asarray(ref),
      rollout_logprobs=jnp.asarray(_garbage(ROLLOUT, padding, offset=5) if corrupt else ROLLOUT))
  counts = global_counts(batch.mask, batch.group_ids)
  entropy = jnp.asarray(ent) if objective.needs_entropy else None
  (loss, metrics), grad = loss_fn(jnp.asarray(lp), batch, counts, entropy)
  return rewards, advantages, loss, grad, metrics


@pytest.mark.parametrize("name", NAMES)
def test_garbage_on_masked_positions_changes_nothing(name):
  clean, dirty = nan_run(name, False), nan_run(name, True)
  rewards, advantages, loss, grad, metrics = dirty
  assert np.isfinite(loss) and np.all(np.isfinite(grad)), name
  np.testing.assert_allclose(rewards, clean[0], rtol=1e-6, err_msg=name)
  np.testing.assert_allclose(advantages, clean[1], rtol=1e-5, atol=1e-6, err_msg=name)
  np.testing.assert_allclose(loss, clean[2], rtol=1e-6, atol=1e-7, err_msg=name)
  np.testing.assert_allclose(grad, clean[3], rtol=1e-6, atol=1e-7, err_msg=name)
  assert set(metrics) == set(clean[4])
  for key, value in metrics.items():
    assert not np.isnan(value), (name, key)
    np.testing.assert_allclose(value, clean[4][key], rtol=1e-6, atol=1e-7, err_msg=key)
