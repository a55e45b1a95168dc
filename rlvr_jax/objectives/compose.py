"""Composition: chain pure stages into one ``Objective`` (the trainer's contract), optax-style.

A stage is a pure function from ``rlvr_jax.advantages``, ``reward_transforms``, ``weighting``,
``surrogates``, ``regularizers`` (or your own) with its hyperparameters bound. Array arguments are
bound **by name** from what the step provides (``binding``), so any function whose positional
parameters are named after the batch fields plugs in without an adapter:

* advantage and reward stages (``advantage_stages``) read ``rlvr_jax.types.AdvantageInputs``
  fields (``rewards``, ``mask``, ``tokens``, ``lengths``, ``truncated``, ``token_rewards``) and its
  ``extras`` keys (e.g. ``greedy_rewards``, ``self_rewards``, ``old_logprobs``, ``ref_logprobs``);
* loss stages (``loss_stages``: weighting, surrogate; ``regularizers``) read
  ``rlvr_jax.types.LossBatch`` fields, ``extras`` keys, ``logprobs``, ``entropy`` and
  ``advantages``.

A missing name raises a ``KeyError`` that lists what is available. What the stages read is
``Objective.advantage_reads`` / ``Objective.loss_reads`` and decides the ``Objective`` flags:
reading ``ref_logprobs`` sets ``needs_reference``, reading ``entropy`` sets ``needs_entropy``, a
surrogate reading ``group_ids`` sets ``whole_groups``.

Example (DAPO with a token-level rollout-IS correction and a k3 KL term, in a few lines)::

  objective = compose.make_objective(
      "my_dapo",
      advantage=compose.advantage(advantages.group_zscore, ddof=1, epsilon=1e-6),
      token_weighting=[compose.token_weighting(weighting.rollout_importance_weights,
                                               level="token", mode="truncate", upper=2.0)],
      surrogate=compose.surrogate(surrogates.ppo_clip, epsilon_low=0.2, epsilon_high=0.28),
      aggregation=aggregation.token_mean,
      regularizers=[compose.kl_loss(coef=0.001, estimator="k3")],
  )
  loss, metrics = objective.loss(logprobs, batch, counts)

Metrics are a flat dict of scalars that are **summable over micro-batches** (every mean is a sum
divided by the global count), except names whose last word is ``min``/``max`` (combine those with
min/max); ``metrics.combine_metrics`` (also ``compose.combine_metrics``) does exactly that.

This module keeps ``Objective`` and ``make_objective`` and re-exports the stage constructors, so
``compose.<name>`` is the one import a preset or a user objective needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence

import jax

from rlvr_jax.objectives import binding
from rlvr_jax.objectives.advantage_stages import advantage
from rlvr_jax.objectives.advantage_stages import after_warmup
from rlvr_jax.objectives.advantage_stages import chain_rewards
from rlvr_jax.objectives.advantage_stages import reward_transform
from rlvr_jax.objectives.advantage_stages import token_reward_advantage
from rlvr_jax.objectives.advantage_stages import with_kl_in_reward
from rlvr_jax.objectives.binding import Stage
from rlvr_jax.objectives.loss_stages import Aggregation
from rlvr_jax.objectives.loss_stages import Loss
from rlvr_jax.objectives.loss_stages import make_loss
from rlvr_jax.objectives.loss_stages import surrogate
from rlvr_jax.objectives.loss_stages import token_weighting
from rlvr_jax.objectives.metrics import combine_metrics
from rlvr_jax.objectives.metrics import summarize
from rlvr_jax.objectives.regularizers import entropy_bonus
from rlvr_jax.objectives.regularizers import kl_loss
from rlvr_jax.objectives.regularizers import laser_self_reward_loss
from rlvr_jax.types import AdvantageInputs

Array = jax.Array

__all__ = [
    "Objective", "Stage", "Loss", "make_objective", "identity_reward_transform",
    # advantage side
    "reward_transform", "chain_rewards", "advantage", "token_reward_advantage", "after_warmup",
    "with_kl_in_reward",
    # loss side
    "token_weighting", "surrogate", "kl_loss", "entropy_bonus", "laser_self_reward_loss",
    # metrics
    "summarize", "combine_metrics",
]


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
  """A complete policy objective: what the trainer calls (see ``docs/objectives.md``).

  Attributes:
    name: preset or user name.
    reward_transform: ``(rewards [P,G], AdvantageInputs) -> rewards [P,G]``, once per rollout batch.
    advantage: ``AdvantageInputs -> [P,G] or [P,G,T]``, once per rollout batch (under jit).
    loss: ``(logprobs [B,T], batch: LossBatch, counts: GlobalCounts, entropy=None)
      -> (loss, metrics)``, per micro-batch with the *global* counts; micro-batch losses, gradients
      and metrics (``combine_metrics``) add up to the full batch's.
    needs_reference: the trainer must fill ``ref_logprobs`` (loss side) and/or
      ``extras['ref_logprobs']`` (advantage side, KL-in-reward).
    needs_entropy: the trainer must pass a differentiable per-token entropy ``[B,T]``.
    whole_groups: the loss is group-level (REAL, PACS): micro-batches must hold whole groups.
    advantage_reads: the names the reward transform and the advantage stage read
      (``AdvantageInputs`` fields and ``extras`` keys); a trainer checks at start-up that it
      provides them all.
    loss_reads: the names the loss reads (``LossBatch`` fields and ``extras`` keys, ``logprobs``,
      ``entropy``, ``advantages``).
    hparams: the keyword arguments the objective was built with: for a preset
      (``presets.get``), every keyword argument of the preset function, defaults included; for
      ``make_objective`` called directly, what the caller passes (default ``{}``). The trainer
      records them in the run's ``config.json``.
  """

  name: str
  reward_transform: Callable[[Array, AdvantageInputs], Array]
  advantage: Callable[[AdvantageInputs], Array]
  loss: Callable[..., tuple[Array, dict]]
  needs_reference: bool
  needs_entropy: bool
  whole_groups: bool
  advantage_reads: frozenset = frozenset()
  loss_reads: frozenset = frozenset()
  hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def identity_reward_transform(rewards: Array, inputs: AdvantageInputs) -> Array:
  """The reward transform that leaves rewards unchanged (a plain function: reads nothing)."""
  del inputs
  return rewards


def _check_role(value: Any, role: str, what: str) -> None:
  if isinstance(value, Stage) and value.role != role:
    raise TypeError(f"{what} must be a {role!r} stage, got a {value.role!r} stage")
  if not callable(value):
    raise TypeError(f"{what} must be callable, got {value!r}")


def make_objective(name: str, *, advantage: Callable[[AdvantageInputs], Array],
                   surrogate: Stage, aggregation: Aggregation,
                   reward_transform: Optional[Callable[[Array, AdvantageInputs], Array]] = None,
                   token_weighting: Sequence[Stage] = (),
                   regularizers: Sequence[Stage] = (),
                   needs_reference: Optional[bool] = None,
                   needs_entropy: Optional[bool] = None,
                   whole_groups: Optional[bool] = None,
                   hparams: Optional[Mapping[str, Any]] = None) -> Objective:
  """Chains stages into an ``Objective``: R → A per rollout batch, W → S → N (+ X) per micro-batch.

  The loss is ``Agg(w ⊙ S(lp; A·w_A)) + Σ_k c_k·Agg_k(term_k)``; see the module docstring.
  ``advantage`` and ``reward_transform`` are ``Stage``s (``compose.advantage(...)``, ...) or plain
  callables (which declare no reads). Flags left ``None`` are inferred from the names the stages
  read (``ref_logprobs``, ``entropy``, ``group_ids``); pass them to override. ``hparams`` is
  recorded as ``Objective.hparams``.
  """
  _check_role(advantage, "advantage", "advantage")
  reward_transform = reward_transform or chain_rewards()
  _check_role(reward_transform, "reward", "reward_transform")
  loss = make_loss(tuple(token_weighting), surrogate, aggregation, tuple(regularizers))
  advantage_reads = binding.reads_of(reward_transform) | binding.reads_of(advantage)
  if needs_reference is None:
    needs_reference = "ref_logprobs" in advantage_reads | loss.reads
  if needs_entropy is None:
    needs_entropy = "entropy" in loss.reads
  if whole_groups is None:
    whole_groups = "group_ids" in surrogate.reads
  return Objective(
      name=name,
      reward_transform=reward_transform,
      advantage=advantage,
      loss=loss,
      needs_reference=bool(needs_reference),
      needs_entropy=bool(needs_entropy),
      whole_groups=bool(whole_groups),
      advantage_reads=advantage_reads,
      loss_reads=loss.reads,
      hparams=dict(hparams or {}),
  )
