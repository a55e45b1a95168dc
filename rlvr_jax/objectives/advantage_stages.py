"""Advantage-side stages (R and A): run once per rollout batch on ``[P, G]`` groups, under jit.

* ``reward_transform(fn, ...)`` binds a reward transform (``reward_transforms``);
  ``chain_rewards(*stages)`` applies several in order (``chain_rewards()`` is the identity).
  ``Stage`` call: ``(rewards [P,G], AdvantageInputs) -> rewards [P,G]``.
* ``advantage(fn, ...)`` binds an estimator from ``rlvr_jax.advantages``;
  ``token_reward_advantage`` feeds a token-reward estimator (REINFORCE++) the outcome reward on
  the last token; ``after_warmup`` switches estimators at a step; ``with_kl_in_reward`` adds an
  in-reward KL penalty before an estimator. ``Stage`` call: ``AdvantageInputs -> [P,G] |
  [P,G,T]``, stop-gradiented.

Array arguments are read by name from ``AdvantageInputs`` fields and ``extras`` (see
``binding``); a reward transform reads the *current* rewards as ``rewards``. Each stage's
``reads`` is the union of what it and its inner stages read.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from rlvr_jax import advantages as advantages_lib
from rlvr_jax.objectives import binding
from rlvr_jax.objectives import regularizers
from rlvr_jax.objectives import reward_transforms
from rlvr_jax.objectives.binding import Read, Stage
from rlvr_jax.types import AdvantageInputs

Array = jax.Array
sg = jax.lax.stop_gradient


def _apply_reward(bound: Stage, combine: str, rewards: Array, inputs: AdvantageInputs) -> Array:
  namespace = binding.advantage_namespace(inputs)
  namespace["rewards"] = rewards
  out = bound(namespace)
  return rewards + out if combine == "add" else out


def reward_transform(fn: Callable, *, combine: str = "replace", read: Read = (),
                     **hparams) -> Stage:
  """Binds a reward transform ``fn(<arrays by name>, **hparams) -> [P,G]``.

  ``combine='replace'`` uses its output as the new rewards, ``'add'`` adds it (DAPO's overlong
  penalty). ``rewards`` is the current rewards (after earlier stages of a chain). Correctness is
  read as ``correct`` (``AdvantageInputs.extras['correct']``) unless ``read`` says otherwise:
  ``read={"correct": "rewards"}`` thresholds the reward itself (binary verifiers).
  """
  if combine not in ("replace", "add"):
    raise ValueError(f"combine must be 'replace' or 'add', got {combine!r}")
  bound = binding.bind("reward", fn, hparams, read=read)
  return Stage("reward", functools.partial(_apply_reward, bound, combine), bound.reads,
               {"combine": combine})


def _apply_chain(stages: tuple, rewards: Array, inputs: AdvantageInputs) -> Array:
  for stage in stages:
    rewards = stage(rewards, inputs)
  return rewards


def chain_rewards(*stages: Stage) -> Stage:
  """Applies reward stages in order (``chain_rewards()`` is the identity transform)."""
  for stage in stages:
    if getattr(stage, "role", "reward") != "reward":
      raise TypeError(f"chain_rewards takes reward stages, got a {stage.role!r} stage")
  reads = frozenset().union(*(binding.reads_of(s) for s in stages))
  return Stage("reward", functools.partial(_apply_chain, tuple(stages)), reads)


def _apply_advantage(bound: Stage, inputs: AdvantageInputs) -> Array:
  return sg(bound(binding.advantage_namespace(inputs)))


def advantage(fn: Callable, *, read: Read = (), **hparams) -> Stage:
  """Binds an advantage estimator; its array arguments are read from ``AdvantageInputs``.

  Parameters with a default are left alone unless bound in ``hparams`` or named in ``read`` (then
  read by name, e.g. ``read=("truncated",)`` for ``advantages.mix_self_reward``).
  """
  bound = binding.bind("advantage", fn, hparams, read=read)
  return Stage("advantage", functools.partial(_apply_advantage, bound), bound.reads)


def _apply_token_reward(bound: Stage, inputs: AdvantageInputs) -> Array:
  namespace = binding.advantage_namespace(inputs)
  outcome = advantages_lib.outcome_to_token_rewards(inputs.rewards, inputs.mask)
  namespace["token_rewards"] = outcome + inputs.token_rewards
  return sg(bound(namespace))


def token_reward_advantage(fn: Callable, **hparams) -> Stage:
  """Binds a token-reward estimator ``fn(token_rewards, mask, ...)`` (REINFORCE++).

  Its ``token_rewards`` are each sequence's outcome reward on its last valid token
  (``advantages.outcome_to_token_rewards``) plus ``AdvantageInputs.token_rewards`` (e.g. the
  in-reward KL penalty of ``with_kl_in_reward``).
  """
  bound = binding.bind("advantage", fn, hparams)
  reads = bound.reads | {"rewards", "mask", "token_rewards"}
  return Stage("advantage", functools.partial(_apply_token_reward, bound), reads)


def _apply_after_warmup(stage: Callable, before: Callable, warmup_steps: int,
                        inputs: AdvantageInputs) -> Array:
  if "step" not in inputs.extras:
    raise KeyError("after_warmup needs AdvantageInputs.extras['step'] (scalar int).")
  late = jnp.asarray(inputs.extras["step"]) >= warmup_steps
  return jnp.where(late, stage(inputs), before(inputs))


def after_warmup(stage: Callable[[AdvantageInputs], Array],
                 before: Callable[[AdvantageInputs], Array], warmup_steps: int) -> Stage:
  """Uses ``before`` while ``extras['step'] < warmup_steps`` and ``stage`` afterwards (LaSeR's
  ``self_rewarding_warmup_steps``); both are traced, the switch is a ``jnp.where``."""
  reads = binding.reads_of(stage) | binding.reads_of(before) | {"step"}
  return Stage("advantage", functools.partial(_apply_after_warmup, stage, before, warmup_steps),
               reads)


def _apply_kl_in_reward(stage: Callable, beta: float, estimator: str, target: str,
                        clamps: tuple, inputs: AdvantageInputs) -> Array:
  missing = [k for k in ("old_logprobs", "ref_logprobs") if k not in inputs.extras]
  if missing:
    raise KeyError(f"KL-in-reward needs AdvantageInputs.extras {missing} ([P,G,T]).")
  penalty = reward_transforms.kl_in_reward(
      inputs.extras["old_logprobs"], inputs.extras["ref_logprobs"], inputs.mask, beta=beta,
      estimator=estimator, log_ratio_clamp=clamps[0], value_clamp=clamps[1])
  if target == "token_rewards":
    inputs = dataclasses.replace(inputs, token_rewards=inputs.token_rewards + penalty)
  else:
    inputs = dataclasses.replace(inputs, rewards=inputs.rewards + jnp.sum(penalty, axis=-1))
  return stage(inputs)


def with_kl_in_reward(stage: Callable[[AdvantageInputs], Array], *, beta: float,
                      estimator: str = "k1", target: str = "token_rewards",
                      log_ratio_clamp: float = 20.0, value_clamp: float = 10.0) -> Stage:
  """Adds ``r_t −= β·KL_t`` (``reward_transforms.kl_in_reward`` on ``extras`` old/ref log-probs).

  ``target='token_rewards'`` adds the per-token penalty to ``token_rewards`` (REINFORCE++, PPO);
  ``'rewards'`` subtracts its sum over tokens from the scalar reward (TRL RLOO: ``R −= β·Σ_t k1``).
  ``estimator`` and the clamps are those of ``regularizers.kl_penalty``.
  """
  if target not in ("token_rewards", "rewards"):
    raise ValueError(f"target must be 'token_rewards' or 'rewards', got {target!r}")
  regularizers.canonical_estimator(estimator)
  reads = binding.reads_of(stage) | {"old_logprobs", "ref_logprobs", "mask"}
  apply = functools.partial(_apply_kl_in_reward, stage, beta, estimator, target,
                            (log_ratio_clamp, value_clamp))
  return Stage("advantage", apply, reads)
