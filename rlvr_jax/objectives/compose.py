"""Composition: chain pure stages into one ``Objective`` (the trainer's contract), optax-style.

A stage is a pure function from ``rlvr_jax.advantages``, ``reward_transforms``, ``weighting``,
``surrogates``, ``regularizers`` (or your own) with its hyperparameters bound. Array arguments are
bound **by name** from what the step provides, so any function whose positional parameters are
named after the batch fields plugs in without an adapter:

* advantage and reward stages read ``rlvr_jax.types.AdvantageInputs`` fields (``rewards``,
  ``mask``, ``tokens``, ``lengths``, ``truncated``, ``token_rewards``) and its ``extras`` keys
  (e.g. ``greedy_rewards``, ``self_rewards``, ``correct``, ``old_logprobs``, ``ref_logprobs``);
* loss stages (weighting, surrogate, regularizers) read ``rlvr_jax.types.LossBatch`` fields,
  ``extras`` keys, ``logprobs`` and ``entropy``.

A missing name raises a ``KeyError`` that lists what is available. Stages compare and hash by
identity (``eq=False``), so they can be passed to ``jax.jit`` directly. Which arrays a stage reads
also decides the ``Objective`` flags: reading ``ref_logprobs`` sets ``needs_reference``, reading
``entropy`` sets ``needs_entropy``, a surrogate reading ``group_ids`` sets ``whole_groups``.

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
min/max); ``combine_metrics`` does exactly that.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from rlvr_jax import advantages as advantages_lib
from rlvr_jax.objectives import aggregation as aggregation_lib
from rlvr_jax.objectives import regularizers as regularizers_lib
from rlvr_jax.objectives import reward_transforms
from rlvr_jax.types import AdvantageInputs, GlobalCounts, LossBatch

Array = jax.Array
Metrics = dict[str, Array]
sg = jax.lax.stop_gradient

_LOSS_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(LossBatch) if f.name != "extras")
_ADV_FIELDS = tuple(f.name for f in dataclasses.fields(AdvantageInputs) if f.name != "extras")


@dataclasses.dataclass(frozen=True)
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
  """

  name: str
  reward_transform: Callable[[Array, AdvantageInputs], Array]
  advantage: Callable[[AdvantageInputs], Array]
  loss: Callable[..., tuple[Array, dict]]
  needs_reference: bool
  needs_entropy: bool
  whole_groups: bool


# ---------------------------------------------------------------------------------------------
# Binding arrays by name.


def _required(fn: Callable, hparams: Mapping[str, Any]) -> tuple:
  """Names of ``fn``'s parameters without a default that ``hparams`` does not bind."""
  params = inspect.signature(fn).parameters
  if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
    unknown = set(hparams) - set(params)
    if unknown:
      raise TypeError(f"{getattr(fn, '__name__', fn)} has no parameter(s) {sorted(unknown)}; "
                      f"it takes {list(params)}")
  return tuple(name for name, p in params.items()
               if p.default is p.empty and name not in hparams
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def _call(fn: Callable, reads: Sequence[str], hparams: Mapping[str, Any],
          namespace: Mapping[str, Any]):
  missing = [n for n in reads if n not in namespace]
  if missing:
    raise KeyError(f"{getattr(fn, '__name__', fn)} needs {missing}, which this step does not "
                   f"provide; available: {sorted(namespace)}. Method-specific arrays go in "
                   "`extras`.")
  return fn(**{n: namespace[n] for n in reads}, **hparams)


def _loss_namespace(batch: LossBatch, logprobs: Array, entropy: Optional[Array]) -> dict:
  namespace = {name: getattr(batch, name) for name in _LOSS_BATCH_FIELDS}
  namespace.update(batch.extras)
  namespace["logprobs"] = logprobs
  if entropy is not None:
    namespace["entropy"] = entropy
  return namespace


def _advantage_namespace(inputs: AdvantageInputs) -> dict:
  namespace = {name: getattr(inputs, name) for name in _ADV_FIELDS}
  namespace.update(inputs.extras)
  return namespace


@dataclasses.dataclass(frozen=True, eq=False)
class _Bound:
  """A function with its hyperparameters bound and its array arguments read by name."""

  fn: Callable
  hparams: Mapping[str, Any]
  reads: tuple

  def __call__(self, namespace: Mapping[str, Any]):
    return _call(self.fn, self.reads, self.hparams, namespace)


# ---------------------------------------------------------------------------------------------
# Reward and advantage stages (once per rollout batch).


@dataclasses.dataclass(frozen=True, eq=False)
class RewardStage:
  """``(rewards [P,G], AdvantageInputs) -> rewards``; see ``reward_transform``."""

  bound: _Bound
  combine: str

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return self.bound.reads

  def __call__(self, rewards: Array, inputs: AdvantageInputs) -> Array:
    namespace = _advantage_namespace(inputs)
    namespace.setdefault("correct", rewards)
    namespace["rewards"] = rewards
    out = self.bound(namespace)
    return rewards + out if self.combine == "add" else out


def reward_transform(fn: Callable, *, combine: str = "replace", **hparams) -> RewardStage:
  """Binds a reward transform; ``combine='replace'`` uses its output as the new rewards,
  ``'add'`` adds it (DAPO's overlong penalty). ``correct`` reads ``extras['correct']`` when the
  trainer provides it and the current rewards otherwise (binary verifiers)."""
  if combine not in ("replace", "add"):
    raise ValueError(f"combine must be 'replace' or 'add', got {combine!r}")
  return RewardStage(_Bound(fn, dict(hparams), _required(fn, hparams)), combine)


@dataclasses.dataclass(frozen=True, eq=False)
class RewardChain:
  """Applies reward stages in order."""

  stages: tuple

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return tuple(n for s in self.stages for n in s.reads)

  def __call__(self, rewards: Array, inputs: AdvantageInputs) -> Array:
    for stage in self.stages:
      rewards = stage(rewards, inputs)
    return rewards


def chain_rewards(*stages: RewardStage) -> RewardChain:
  """Chains reward stages (``chain_rewards()`` is the identity transform)."""
  return RewardChain(tuple(stages))


@dataclasses.dataclass(frozen=True, eq=False)
class AdvantageStage:
  """``AdvantageInputs -> advantages``; see ``advantage``."""

  bound: _Bound

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return self.bound.reads

  def __call__(self, inputs: AdvantageInputs) -> Array:
    return sg(self.bound(_advantage_namespace(inputs)))


def advantage(fn: Callable, *, read: Sequence[str] = (), **hparams) -> AdvantageStage:
  """Binds an advantage estimator; its array arguments are read from ``AdvantageInputs``.

  Parameters with a default are left alone unless bound in ``hparams`` or named in ``read`` (then
  read by name, e.g. ``read=("truncated",)`` for ``advantages.mix_self_reward``).
  """
  return AdvantageStage(_Bound(fn, dict(hparams), _required(fn, hparams) + tuple(read)))


@dataclasses.dataclass(frozen=True, eq=False)
class TokenRewardAdvantage:
  """A token-reward estimator fed the outcome reward plus ``token_rewards``; see
  ``token_reward_advantage``."""

  bound: _Bound

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return self.bound.reads + ("rewards",)

  def __call__(self, inputs: AdvantageInputs) -> Array:
    namespace = _advantage_namespace(inputs)
    outcome = advantages_lib.outcome_to_token_rewards(inputs.rewards, inputs.mask)
    namespace["token_rewards"] = outcome + inputs.token_rewards
    return sg(self.bound(namespace))


def token_reward_advantage(fn: Callable, **hparams) -> TokenRewardAdvantage:
  """Binds a token-reward estimator ``fn(token_rewards, mask, ...)`` (REINFORCE++).

  Its ``token_rewards`` are each sequence's outcome reward on its last valid token
  (``advantages.outcome_to_token_rewards``) plus ``AdvantageInputs.token_rewards`` (e.g. the
  in-reward KL penalty of ``with_kl_in_reward``).
  """
  return TokenRewardAdvantage(_Bound(fn, dict(hparams), _required(fn, hparams)))


@dataclasses.dataclass(frozen=True, eq=False)
class WarmupAdvantage:
  """Switches between two advantage stages at a step; see ``after_warmup``."""

  stage: Callable[[AdvantageInputs], Array]
  before: Callable[[AdvantageInputs], Array]
  warmup_steps: int

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return (tuple(getattr(self.stage, "reads", ())) + tuple(getattr(self.before, "reads", ()))
            + ("step",))

  def __call__(self, inputs: AdvantageInputs) -> Array:
    if "step" not in inputs.extras:
      raise KeyError("after_warmup needs AdvantageInputs.extras['step'] (scalar int).")
    late = jnp.asarray(inputs.extras["step"]) >= self.warmup_steps
    return jnp.where(late, self.stage(inputs), self.before(inputs))


def after_warmup(stage: Callable[[AdvantageInputs], Array],
                 before: Callable[[AdvantageInputs], Array],
                 warmup_steps: int) -> WarmupAdvantage:
  """Uses ``before`` while ``extras['step'] < warmup_steps`` and ``stage`` afterwards (LaSeR's
  ``self_rewarding_warmup_steps``); both are traced, the switch is a ``jnp.where``."""
  return WarmupAdvantage(stage, before, warmup_steps)


@dataclasses.dataclass(frozen=True, eq=False)
class KLInRewardAdvantage:
  """An advantage stage run on rewards with an in-reward KL penalty; see ``with_kl_in_reward``."""

  inner: AdvantageStage
  beta: float
  estimator: str
  target: str

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return self.inner.reads + ("old_logprobs", "ref_logprobs")

  def __call__(self, inputs: AdvantageInputs) -> Array:
    namespace = _advantage_namespace(inputs)
    missing = [k for k in ("old_logprobs", "ref_logprobs") if k not in namespace]
    if missing:
      raise KeyError(f"KL-in-reward needs AdvantageInputs.extras {missing} ([P,G,T]).")
    penalty = reward_transforms.kl_in_reward(namespace["old_logprobs"],
                                             namespace["ref_logprobs"], inputs.mask,
                                             beta=self.beta, estimator=self.estimator)
    if self.target == "token_rewards":
      inputs = dataclasses.replace(inputs, token_rewards=inputs.token_rewards + penalty)
    else:
      inputs = dataclasses.replace(inputs, rewards=inputs.rewards + jnp.sum(penalty, axis=-1))
    return self.inner(inputs)


def with_kl_in_reward(stage: AdvantageStage, *, beta: float, estimator: str = "k1",
                      target: str = "token_rewards") -> KLInRewardAdvantage:
  """Adds ``r_t −= β·KL_t`` (``reward_transforms.kl_in_reward`` on ``extras`` old/ref log-probs).

  ``target='token_rewards'`` adds the per-token penalty to ``token_rewards`` (REINFORCE++, PPO);
  ``'rewards'`` subtracts its sum over tokens from the scalar reward (TRL RLOO: ``R −= β·Σ_t k1``).
  """
  if target not in ("token_rewards", "rewards"):
    raise ValueError(f"target must be 'token_rewards' or 'rewards', got {target!r}")
  return KLInRewardAdvantage(stage, beta, estimator, target)


# ---------------------------------------------------------------------------------------------
# Loss stages (per micro-batch, differentiated).


@dataclasses.dataclass(frozen=True, eq=False)
class WeightingStage:
  """Token weights ``[B,T]`` multiplying the loss or the advantages; see ``token_weighting``."""

  bound: _Bound
  apply_to: str

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return self.bound.reads


def token_weighting(fn: Callable, *, apply_to: str = "loss", **hparams) -> WeightingStage:
  """Binds a weighting function returning ``(weights [B,T], diagnostics)``.

  ``apply_to='loss'`` multiplies the per-token loss (IS corrections, entropy masks);
  ``'advantages'`` multiplies the advantages before the surrogate (THR). Weighting functions see
  ``logprobs`` and ``entropy`` stop-gradiented.
  """
  if apply_to not in ("loss", "advantages"):
    raise ValueError(f"apply_to must be 'loss' or 'advantages', got {apply_to!r}")
  return WeightingStage(_Bound(fn, dict(hparams), _required(fn, hparams)), apply_to)


@dataclasses.dataclass(frozen=True, eq=False)
class SurrogateStage:
  """A surrogate with its hyperparameters bound; see ``surrogate``."""

  bound: _Bound

  @property
  def reads(self) -> tuple:
    """Names this stage reads from the step's namespace (decide the Objective flags)."""
    return self.bound.reads


def surrogate(fn: Callable, **hparams) -> SurrogateStage:
  """Binds a surrogate ``fn(logprobs, <batch fields>..., **hparams) -> (loss, diagnostics)``.

  ``loss`` is ``[B,T]`` (token), or ``[B]`` (sequence/group); a bare array is accepted too.
  """
  return SurrogateStage(_Bound(fn, dict(hparams), _required(fn, hparams)))


Aggregation = Callable[[Array, Array, GlobalCounts], Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Regularizer:
  """An additive loss term; ``fn(namespace, counts, aggregation) -> (value, metrics)``."""

  fn: Callable
  reads: tuple

  def __call__(self, namespace, counts, aggregation):
    return self.fn(namespace, counts, aggregation)


def kl_loss(coef: float, *, estimator: str = "k3", aggregation: Optional[Aggregation] = None,
            log_ratio_clamp: float = 20.0, value_clamp: float = 10.0) -> Regularizer:
  """In-loss KL ``coef·Agg(k(lp, lr))`` (GRPO, arXiv 2402.03300 eq. 3); see
  ``regularizers.kl_penalty``. ``aggregation=None`` uses the policy loss's (token-mean when the
  surrogate is sequence-level). Metric ``kl``: token-mean of the estimate (TRL's ``kl``)."""

  def term(namespace, counts, policy_aggregation):
    kl = regularizers_lib.kl_penalty(namespace["logprobs"], namespace["ref_logprobs"],
                                     estimator=estimator, log_ratio_clamp=log_ratio_clamp,
                                     value_clamp=value_clamp)
    mask = namespace["mask"]
    agg = aggregation or policy_aggregation
    value = coef * agg(kl, mask, counts)
    return value, {"kl": aggregation_lib.token_mean(sg(kl), mask, counts)}

  return Regularizer(term, ("logprobs", "ref_logprobs", "mask"))


def entropy_bonus(coef: Optional[float] = None, *,
                  aggregation: Optional[Aggregation] = None) -> Regularizer:
  """Entropy bonus ``−c·Agg(H)`` (verl ``entropy_coeff``, TRL ``entropy_coef``).

  ``coef=None`` reads the scalar ``extras['entropy_coef']`` each step (adaptive coefficient, see
  ``regularizers.adaptive_entropy_coefficient``). Metrics: ``entropy`` (token-mean, summable)
  and, when adaptive, ``entropy_coef_max`` (the coefficient: the same on every micro-batch, so it
  is combined by max).
  """

  def term(namespace, counts, policy_aggregation):
    entropy = namespace["entropy"]
    mask = namespace["mask"]
    c = namespace["entropy_coef"] if coef is None else coef
    agg = aggregation or policy_aggregation
    value = -c * agg(entropy, mask, counts)
    metrics = {"entropy": aggregation_lib.token_mean(sg(entropy), mask, counts)}
    if coef is None:
      metrics["entropy_coef_max"] = jnp.asarray(c, jnp.float32)
    return value, metrics

  reads = ("entropy", "mask") + (("entropy_coef",) if coef is None else ())
  return Regularizer(term, reads)


def laser_self_reward_loss(coef: float = 0.1, *, beta_v: float = 0.1, c_ref: float = -23.0,
                           temperature: float = 1.0, balanced: bool = True) -> Regularizer:
  """LaSeR self-rewarding MSE (arXiv 2510.14943), ``coef·(1/N_seq)·Σ_i mse_i``.

  The trainer appends the token ``z_c`` after each finished response's EOS inside the token
  sequence, so that ``logprobs[b, extras['selfreward_position'][b]]`` is the differentiable
  ``log π_θ(z_c | q, o_b, eos)`` (``mask`` is 0 there). ``balanced=True`` reads the full-batch
  class weights ``extras['selfreward_weights']`` (``regularizers.laser_class_weights``). Metric
  ``laser/self_reward_mse`` (sequence mean, summable).
  """

  def term(namespace, counts, policy_aggregation):
    del policy_aggregation
    logprobs = namespace["logprobs"]
    position = jnp.asarray(namespace["selfreward_position"], jnp.int32)
    if position.shape != logprobs.shape[:1]:
      raise ValueError(f"selfreward_position must be [B], got {position.shape}")
    selfreward_logprobs = jnp.take_along_axis(logprobs, position[:, None], axis=1)[:, 0]
    weights = (namespace["selfreward_weights"] if balanced
               else jnp.ones_like(selfreward_logprobs))
    mse = regularizers_lib.laser_self_reward_mse(
        selfreward_logprobs, namespace["correct"], namespace["truncated"], weights,
        beta_v=beta_v, c_ref=c_ref, temperature=temperature)
    value = aggregation_lib.sequence_mean(mse, namespace["mask"], counts)
    return coef * value, {"laser/self_reward_mse": sg(value)}

  reads = ("logprobs", "selfreward_position", "correct", "truncated", "mask")
  return Regularizer(term, reads + (("selfreward_weights",) if balanced else ()))


# ---------------------------------------------------------------------------------------------
# Metrics.

_EXTREMUM = re.compile(r"(?:^|[/_])(min|max)$")


def _reduction(name: str) -> str:
  match = _EXTREMUM.search(name)
  return match.group(1) if match else "mean"


def summarize(diagnostics: Mapping[str, Array], mask: Array, counts: GlobalCounts) -> Metrics:
  """Reduces per-token ``[B,T]`` (or per-sequence ``[B]``) diagnostics to scalar metrics.

  Names whose last word is ``min``/``max`` get the masked min/max (``+inf``/``-inf`` on a
  micro-batch with no valid token); all others get ``Σ valid·x / N`` with the *global* token (or
  sequence) count, so that micro-batch values add up to the full-batch mean.
  """
  mask = jnp.asarray(mask, jnp.float32)
  valid_seq = jnp.sum(mask, axis=-1) > 0
  out = {}
  for name, value in diagnostics.items():
    value = sg(jnp.asarray(value, jnp.float32))
    if value.shape == mask.shape:
      valid, count = mask > 0, counts.num_tokens
    elif value.shape == mask.shape[:1]:
      valid, count = valid_seq, counts.num_sequences
    else:
      raise ValueError(f"diagnostic {name!r} has shape {value.shape}; expected [B,T] or [B]")
    kind = _reduction(name)
    if kind == "min":
      out[name] = jnp.min(jnp.where(valid, value, jnp.inf))
    elif kind == "max":
      out[name] = jnp.max(jnp.where(valid, value, -jnp.inf))
    else:
      out[name] = jnp.sum(jnp.where(valid, value, 0.0)) / jnp.maximum(count, 1.0)
  return out


def combine_metrics(per_micro_batch: Sequence[Mapping[str, Array]]) -> Metrics:
  """Combines the metrics of the micro-batches of one batch: sums, except min/max names."""
  if not per_micro_batch:
    return {}
  out = {}
  for name in per_micro_batch[0]:
    values = jnp.stack([jnp.asarray(m[name]) for m in per_micro_batch])
    kind = _reduction(name)
    out[name] = (jnp.min(values) if kind == "min" else
                 jnp.max(values) if kind == "max" else jnp.sum(values))
  return out


# ---------------------------------------------------------------------------------------------
# The combinator.


def _check_loss_inputs(logprobs: Array, batch: LossBatch) -> None:
  if logprobs.ndim != 2:
    raise ValueError(f"logprobs must be [B, T], got {logprobs.shape}")
  for name in ("mask", "advantages", "old_logprobs", "ref_logprobs", "rollout_logprobs"):
    if getattr(batch, name).shape != logprobs.shape:
      raise ValueError(f"batch.{name} has shape {getattr(batch, name).shape}, logprobs "
                       f"{logprobs.shape}")
  for name in ("rewards", "correct", "group_ids", "truncated"):
    if getattr(batch, name).shape != logprobs.shape[:1]:
      raise ValueError(f"batch.{name} must be [B]={logprobs.shape[:1]}, got "
                       f"{getattr(batch, name).shape}")


def _unpack(out) -> tuple[Array, Mapping[str, Array]]:
  return out if isinstance(out, tuple) else (out, {})


def _make_loss(weightings: tuple, surrogate_stage: SurrogateStage, aggregation: Aggregation,
               regularizers: tuple) -> Callable:
  loss_weighting = any(w.apply_to == "loss" for w in weightings)

  def loss(logprobs: Array, batch: LossBatch, counts: GlobalCounts,
           entropy: Optional[Array] = None) -> tuple[Array, Metrics]:
    _check_loss_inputs(logprobs, batch)
    if entropy is not None and entropy.shape != logprobs.shape:
      raise ValueError(f"entropy must be [B, T]={logprobs.shape}, got {entropy.shape}")
    mask = jnp.asarray(batch.mask, jnp.float32)
    advantages = sg(batch.advantages)
    weights = jnp.ones_like(mask)
    diagnostics = {}
    constant = _loss_namespace(batch, sg(logprobs), None if entropy is None else sg(entropy))
    for stage in weightings:
      w, diag = _unpack(stage.bound({**constant, "advantages": advantages}))
      if stage.apply_to == "advantages":
        advantages = advantages * sg(w)
      else:
        weights = weights * sg(w)
      diagnostics.update(diag)
    namespace = _loss_namespace(batch, logprobs, entropy)
    namespace["advantages"] = advantages
    elementwise, diag = _unpack(surrogate_stage.bound(namespace))
    diagnostics.update(diag)
    if elementwise.ndim == 2:
      elementwise = elementwise * weights
      term_aggregation = aggregation
    elif loss_weighting:
      raise ValueError("token weights on the loss need a token-level surrogate; this one "
                       f"returns {elementwise.shape}")
    else:
      term_aggregation = aggregation_lib.token_mean
    policy_loss = aggregation(elementwise, mask, counts)
    total = policy_loss
    metrics = {"policy_loss": sg(policy_loss)}
    for regularizer in regularizers:
      value, m = regularizer(namespace, counts, term_aggregation)
      total = total + value
      metrics.update(m)
    metrics.update(summarize(diagnostics, mask, counts))
    metrics["loss"] = sg(total)
    return total, metrics

  return loss


def identity_reward_transform(rewards: Array, inputs: AdvantageInputs) -> Array:
  """The reward transform that leaves rewards unchanged."""
  del inputs
  return rewards


def make_objective(name: str, *, advantage: Callable[[AdvantageInputs], Array],
                   surrogate: SurrogateStage, aggregation: Aggregation,
                   reward_transform: Optional[Callable[[Array, AdvantageInputs], Array]] = None,
                   token_weighting: Sequence[WeightingStage] = (),
                   regularizers: Sequence[Regularizer] = (),
                   needs_reference: Optional[bool] = None,
                   needs_entropy: Optional[bool] = None,
                   whole_groups: Optional[bool] = None) -> Objective:
  """Chains stages into an ``Objective``: R → A (per rollout batch); W → S → N (+ X) per micro-batch.

  The loss is ``Agg(w ⊙ S(lp; A·w_A)) + Σ_k regularizer_k``; see the module docstring. Flags left
  ``None`` are inferred from the arrays the stages read (``ref_logprobs``, ``entropy``,
  ``group_ids``); pass them to override.
  """
  token_weighting = tuple(token_weighting)
  regularizers = tuple(regularizers)
  reward_transform = reward_transform or identity_reward_transform
  loss_reads = {n for s in (*token_weighting, surrogate, *regularizers) for n in s.reads}
  batch_reads = loss_reads | set(getattr(advantage, "reads", ())) | set(
      getattr(reward_transform, "reads", ()))
  if needs_reference is None:
    needs_reference = "ref_logprobs" in batch_reads
  if needs_entropy is None:
    needs_entropy = "entropy" in loss_reads
  if whole_groups is None:
    whole_groups = "group_ids" in surrogate.reads
  loss = _make_loss(token_weighting, surrogate, aggregation, regularizers)
  # What the loss reads by name (LossBatch fields, its ``extras`` keys, ``logprobs``, ``entropy``,
  # ``advantages``): a trainer checks at start-up that it provides them all.
  loss.reads = tuple(sorted(loss_reads))
  return Objective(
      name=name,
      reward_transform=reward_transform,
      advantage=advantage,
      loss=loss,
      needs_reference=bool(needs_reference),
      needs_entropy=bool(needs_entropy),
      whole_groups=bool(whole_groups),
  )
