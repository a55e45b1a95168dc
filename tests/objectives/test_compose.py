"""The combinator: binding by name, flags, metric reduction, custom objectives, import isolation."""

import dataclasses
import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax import advantages
from rlvr_jax.objectives import aggregation, binding, compose, reward_transforms, surrogates
from rlvr_jax.objectives import weighting
from rlvr_jax.types import AdvantageInputs, LossBatch, global_counts

B, T = 4, 3
MASK = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0]], np.float32)
RNG = np.random.default_rng(4)
LP = RNG.normal(-1, 0.3, (B, T)).astype(np.float32)
OLD = (LP + RNG.normal(0, 0.2, (B, T))).astype(np.float32)
ADV = np.repeat(np.array([[1.0], [-1.0], [0.5], [2.0]], np.float32), T, 1)


def batch(**extras):
  return LossBatch(mask=jnp.asarray(MASK), advantages=jnp.asarray(ADV),
                   old_logprobs=jnp.asarray(OLD), ref_logprobs=jnp.asarray(OLD),
                   rollout_logprobs=jnp.asarray(OLD - 0.1), rewards=jnp.ones(B),
                   correct=jnp.array([1.0, 0.0, 1.0, 0.0]),
                   group_ids=jnp.array([0, 0, 1, 1], jnp.int32), truncated=jnp.zeros(B),
                   extras=extras)


COUNTS = global_counts(jnp.asarray(MASK), jnp.array([0, 0, 1, 1], jnp.int32))


def test_custom_objective_in_a_few_lines_equals_hand_written_formula():
  objective = compose.make_objective(
      "custom",
      advantage=compose.advantage(advantages.group_center),
      token_weighting=[compose.token_weighting(weighting.rollout_importance_weights,
                                               level="token", mode="truncate", upper=1.05)],
      surrogate=compose.surrogate(surrogates.ppo_clip, epsilon_high=0.28),
      aggregation=functools.partial(aggregation.sum_over_constant, constant=4.0),
      regularizers=[compose.kl_loss(0.1, estimator="k2")],
  )
  assert objective.needs_reference and not objective.needs_entropy
  loss, metrics = objective.loss(jnp.asarray(LP), batch(), COUNTS)
  ratio = np.exp(LP - OLD)
  per_token = np.maximum(-ADV * ratio, -ADV * np.clip(ratio, 0.8, 1.28))
  w = np.minimum(np.exp(0.1), 1.05)  # old − rollout = 0.1 everywhere
  n_seq = 3
  expected = (per_token * w * MASK).sum() / 4.0 / n_seq
  expected += 0.1 * (0.5 * (LP - OLD) ** 2 * MASK).sum() / 4.0 / n_seq
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["sampling/importance_sampling_ratio/max"], np.exp(0.1),
                             rtol=1e-5)
  assert {"policy_loss", "loss", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean",
          "clip_ratio/region_mean", "approx_kl"} <= set(metrics)


def test_user_surrogate_bound_by_name_from_extras():
  def my_surrogate(logprobs, advantages, my_weight):
    return -advantages * my_weight * logprobs

  objective = compose.make_objective(
      "mine", advantage=compose.advantage(advantages.identity),
      surrogate=compose.surrogate(my_surrogate), aggregation=aggregation.token_mean)
  loss, _ = objective.loss(jnp.asarray(LP), batch(my_weight=jnp.full((B, T), 2.0)), COUNTS)
  np.testing.assert_allclose(loss, (-ADV * 2 * LP * MASK).sum() / MASK.sum(), rtol=1e-6)
  with pytest.raises(KeyError, match="my_weight"):
    objective.loss(jnp.asarray(LP), batch(), COUNTS)
  with pytest.raises(TypeError):
    compose.surrogate(surrogates.ppo_clip, not_a_knob=1)


def test_entropy_bonus_and_adaptive_coefficient():
  entropy = jnp.asarray(RNG.uniform(0, 1, (B, T)).astype(np.float32))
  objective = compose.make_objective(
      "ent", advantage=compose.advantage(advantages.identity),
      surrogate=compose.surrogate(surrogates.reinforce), aggregation=aggregation.token_mean,
      regularizers=[compose.entropy_bonus()])
  assert objective.needs_entropy
  loss_fn = lambda e: objective.loss(jnp.asarray(LP), batch(entropy_coef=jnp.float32(0.5)),
                                     COUNTS, e)
  (loss, metrics) = loss_fn(entropy)
  base = (-ADV * LP * MASK).sum() / MASK.sum()
  mean_h = (np.asarray(entropy) * MASK).sum() / MASK.sum()
  np.testing.assert_allclose(loss, base - 0.5 * mean_h, rtol=1e-5)
  np.testing.assert_allclose(metrics["entropy"], mean_h, rtol=1e-5)
  g = jax.grad(lambda e: loss_fn(e)[0])(entropy)
  np.testing.assert_allclose(g, -0.5 * MASK / MASK.sum(), rtol=1e-5)


def test_summarize_and_combine_metrics():
  diag = {"a_mean": jnp.asarray(MASK * 2), "x/min": jnp.asarray(LP), "x/max": jnp.asarray(LP),
          "seq": jnp.array([1.0, 2.0, 3.0, 100.0])}
  out = compose.summarize(diag, MASK, COUNTS)
  np.testing.assert_allclose(out["a_mean"], 2.0)
  np.testing.assert_allclose(out["x/min"], LP[MASK > 0].min())
  np.testing.assert_allclose(out["x/max"], LP[MASK > 0].max())
  np.testing.assert_allclose(out["seq"], 2.0)  # empty sequence excluded, / 3 sequences
  combined = compose.combine_metrics([{"m": 1.0, "r_min": 2.0, "r_max": 2.0},
                                      {"m": 2.0, "r_min": 1.0, "r_max": 5.0}])
  assert combined == {"m": 3.0, "r_min": 1.0, "r_max": 5.0}


def test_reward_chain_and_kl_in_reward_adapter():
  inputs = AdvantageInputs(
      rewards=jnp.array([[1.0, 0.0]]), mask=jnp.ones((1, 2, 3)),
      tokens=jnp.zeros((1, 2, 3), jnp.int32), lengths=jnp.array([[3, 3]]),
      truncated=jnp.zeros((1, 2)), token_rewards=jnp.zeros((1, 2, 3)),
      extras={"old_logprobs": jnp.zeros((1, 2, 3)), "ref_logprobs": -jnp.ones((1, 2, 3))})
  chain = compose.chain_rewards(
      compose.reward_transform(reward_transforms.remap_binary, read={"correct": "rewards"},
                               pos=1.0, neg=-1.0),
      compose.reward_transform(reward_transforms.overlong_soft_penalty, combine="add",
                               max_length=3, cache_length=2))
  assert chain.reads == {"rewards", "lengths"}
  # |y| = 3 = L_max: penalty ((3 - 2) - 3) / 2 = -1.
  np.testing.assert_allclose(chain(inputs.rewards, inputs), [[0.0, -2.0]])
  # Correctness is read as ``correct`` unless a binding says otherwise: no silent aliasing.
  remap = compose.reward_transform(reward_transforms.remap_binary, pos=1.0, neg=-1.0)
  assert remap.reads == {"correct"}
  with pytest.raises(KeyError, match="correct"):
    remap(inputs.rewards, inputs)
  with_correct = dataclasses.replace(inputs, extras={"correct": jnp.array([[0.0, 1.0]])})
  np.testing.assert_allclose(remap(inputs.rewards, with_correct), [[-1.0, 1.0]])
  stage = compose.with_kl_in_reward(compose.advantage(advantages.identity), beta=0.1,
                                    target="rewards")
  np.testing.assert_allclose(stage(inputs), [[1.0 - 0.3, -0.3]], rtol=1e-6)


def test_token_weights_need_token_level_surrogate():
  objective = compose.make_objective(
      "bad", advantage=compose.advantage(advantages.identity),
      token_weighting=[compose.token_weighting(weighting.rollout_importance_weights)],
      surrogate=compose.surrogate(surrogates.gmpo), aggregation=aggregation.sequence_mean)
  with pytest.raises(ValueError, match="token-level"):
    objective.loss(jnp.asarray(LP), batch(), COUNTS)
  with pytest.raises(ValueError):
    objective.loss(jnp.asarray(LP[:, :2]), batch(), COUNTS)


def test_import_pulls_no_heavy_dependencies():
  code = ("import sys, rlvr_jax.objectives, rlvr_jax.advantages; "
          "bad = [m for m in sys.modules if m.split('.')[0] in "
          "('transformers', 'torch', 'orbax', 'tensorflow', 'tensorflow_datasets', 'flax')]; "
          "print(bad); sys.exit(1 if bad else 0)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr


def test_after_warmup_switches_on_step():
  inputs = AdvantageInputs(
      rewards=jnp.array([[1.0, 0.0, 0.0, 0.0]]), mask=jnp.ones((1, 4, 2)),
      tokens=jnp.zeros((1, 4, 2), jnp.int32), lengths=jnp.full((1, 4), 2),
      truncated=jnp.zeros((1, 4)), token_rewards=jnp.zeros((1, 4, 2)),
      extras={"step": jnp.asarray(5)})
  stage = compose.after_warmup(compose.advantage(advantages.group_center),
                               compose.advantage(advantages.group_zscore), warmup_steps=10)
  np.testing.assert_allclose(stage(inputs), [[1.5, -0.5, -0.5, -0.5]], rtol=1e-5)
  late = dataclasses.replace(inputs, extras={"step": jnp.asarray(10)})
  np.testing.assert_allclose(stage(late), [[0.75, -0.25, -0.25, -0.25]], rtol=1e-6)


def test_loss_declares_what_it_reads():
  from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top
  grpo = presets.get("grpo")
  assert {"logprobs", "old_logprobs", "ref_logprobs", "advantages", "mask"} <= grpo.loss_reads
  assert "entropy" not in grpo.loss_reads
  assert "thr" in presets.get("thr").loss_reads
  assert isinstance(grpo.loss, compose.Loss) and grpo.loss.reads == grpo.loss_reads


def test_objective_reads_and_hparams_of_a_custom_objective():
  def my_advantage(rewards, my_baseline):
    return rewards - my_baseline[:, None]

  objective = compose.make_objective(
      "custom",
      reward_transform=compose.reward_transform(
          reward_transforms.overlong_soft_penalty, combine="add", max_length=3, cache_length=1),
      advantage=compose.with_kl_in_reward(compose.advantage(my_advantage), beta=0.1),
      token_weighting=[compose.token_weighting(weighting.high_entropy_mask)],
      surrogate=compose.surrogate(surrogates.gspo),
      aggregation=aggregation.seq_mean_token_mean,
      regularizers=[compose.entropy_bonus(0.01)],
      hparams={"beta": 0.1})
  assert objective.advantage_reads == {"lengths", "rewards", "my_baseline", "old_logprobs",
                                       "ref_logprobs", "mask"}
  assert objective.loss_reads == {"logprobs", "mask", "entropy", "old_logprobs", "advantages"}
  assert objective.needs_reference and objective.needs_entropy and not objective.whole_groups
  assert objective.hparams == {"beta": 0.1}
  # A plain callable is accepted as an advantage stage; it declares no reads.
  plain = compose.make_objective("plain", advantage=lambda inputs: inputs.rewards,
                                 surrogate=compose.surrogate(surrogates.reinforce),
                                 aggregation=aggregation.token_mean)
  assert plain.advantage_reads == frozenset() and plain.hparams == {}


def test_binding_reads_renames_and_checks_names():
  def fn(a, b, *, c=1.0, d=None):
    return a + b + c + (0 if d is None else d)

  stage = binding.bind("surrogate", fn, {"c": 2.0}, read={"b": "bee", "d": "dee"})
  assert stage.reads == {"a", "bee", "dee"}
  assert stage({"a": 1.0, "bee": 10.0, "dee": 100.0}) == 113.0
  with pytest.raises(KeyError, match="dee"):
    stage({"a": 1.0, "bee": 10.0})
  with pytest.raises(TypeError, match="no parameter"):
    binding.bind("surrogate", fn, {"e": 1})
  with pytest.raises(TypeError, match="no parameter"):
    binding.bind("surrogate", fn, {}, read=("e",))
  with pytest.raises(TypeError, match="both"):
    binding.bind("surrogate", fn, {"c": 1.0}, read=("c",))
  with pytest.raises(ValueError):
    binding.Stage("loss", fn, frozenset())


def test_make_objective_checks_stage_roles():
  adv = compose.advantage(advantages.identity)
  weight = compose.token_weighting(weighting.rollout_importance_weights)
  with pytest.raises(TypeError, match="surrogate"):
    compose.make_objective("bad", advantage=adv, surrogate=weight,
                           aggregation=aggregation.token_mean)
  with pytest.raises(TypeError, match="advantage"):
    compose.make_objective("bad", advantage=compose.surrogate(surrogates.reinforce),
                           surrogate=compose.surrogate(surrogates.reinforce),
                           aggregation=aggregation.token_mean)
  with pytest.raises(TypeError, match="regularizer"):
    compose.make_objective("bad", advantage=adv,
                           surrogate=compose.surrogate(surrogates.reinforce),
                           aggregation=aggregation.token_mean, regularizers=[weight])
  with pytest.raises(TypeError, match="reward"):
    compose.chain_rewards(adv)


def test_compose_keeps_the_public_names():
  from rlvr_jax.objectives import (advantage_stages, loss_stages,  # pylint: disable=g-import-not-at-top
                                   metrics, regularizers)
  assert compose.combine_metrics is metrics.combine_metrics
  assert compose.summarize is metrics.summarize
  assert compose.kl_loss is regularizers.kl_loss
  assert compose.entropy_bonus is regularizers.entropy_bonus
  assert compose.laser_self_reward_loss is regularizers.laser_self_reward_loss
  assert compose.surrogate is loss_stages.surrogate
  assert compose.token_weighting is loss_stages.token_weighting
  for name in ("advantage", "reward_transform", "chain_rewards", "token_reward_advantage",
               "after_warmup", "with_kl_in_reward"):
    assert getattr(compose, name) is getattr(advantage_stages, name)


def test_summarize_passes_scalar_extrema_through_and_rejects_other_shapes():
  out = compose.summarize({"coef_max": jnp.float32(0.3)}, MASK, COUNTS)
  np.testing.assert_allclose(out["coef_max"], 0.3)
  with pytest.raises(ValueError):
    compose.summarize({"coef": jnp.float32(0.3)}, MASK, COUNTS)
  nan_on_padding = np.where(MASK > 0, 1.0, np.nan).astype(np.float32)
  out = compose.summarize({"x": nan_on_padding, "x_min": nan_on_padding, "x_max": nan_on_padding},
                          MASK, COUNTS)
  np.testing.assert_allclose([out["x"], out["x_min"], out["x_max"]], [1.0, 1.0, 1.0])
