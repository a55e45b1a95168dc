"""Loss-side stages (W, S, N, X) and the per-micro-batch loss that chains them.

* ``token_weighting(fn, apply_to=...)`` binds a weighting function ``fn(...) -> (weights [B,T],
  diagnostics)`` (``weighting``): the weights multiply the per-token loss (``'loss'``) or the
  advantages before the surrogate (``'advantages'``). They see ``logprobs``/``entropy``
  stop-gradiented.
* ``surrogate(fn)`` binds a surrogate ``fn(logprobs, ...) -> (loss [B,T] | [B], diagnostics)``
  (``surrogates``).
* Regularizer terms (``kl_loss``, ``entropy_bonus``, ``laser_self_reward_loss``) live in
  ``regularizers`` and follow the same convention (``(term, diagnostics)``, arrays by name).
* ``Loss`` is ``Objective.loss``: ``Agg(w ⊙ S(lp; A·w_A)) + Σ_k c_k·Agg_k(term_k)`` with the
  *global* counts, plus metrics (``metrics.summarize``).

NaN safety: a masked position (``mask == 0``) may hold anything (log-probs of padding are often
``-inf``; a ratio there may overflow). Before any stage runs, ``Loss`` replaces the constants
``advantages``, ``old_logprobs``, ``ref_logprobs``, ``rollout_logprobs`` and ``entropy`` by 0 at
masked positions and non-finite ``logprobs`` by 0 (``logprobs`` keep their values at masked
positions otherwise: LaSeR reads ``z_c``'s log-prob outside the mask); weights are 0 there, and
every aggregation and metric reduction selects (``jnp.where``) rather than multiplies. So masked
positions contribute nothing, not even NaN, to the loss, its gradient (exactly 0 there) or a
metric.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from rlvr_jax.objectives import aggregation as aggregation_lib
from rlvr_jax.objectives import binding
from rlvr_jax.objectives import metrics as metrics_lib
from rlvr_jax.objectives.binding import Read, Stage
from rlvr_jax.types import GlobalCounts, LossBatch

Array = jax.Array
Aggregation = Callable[[Array, Array, GlobalCounts], Array]
sg = jax.lax.stop_gradient

_TOKEN_FIELDS = ("advantages", "old_logprobs", "ref_logprobs", "rollout_logprobs")
_SEQUENCE_FIELDS = ("rewards", "correct", "group_ids", "truncated")
_MAKERS = {"weighting": "token_weighting(fn, ...)", "surrogate": "surrogate(fn, ...)",
           "regularizer": "regularizers.kl_loss / entropy_bonus / laser_self_reward_loss"}


def token_weighting(fn: Callable, *, apply_to: str = "loss", read: Read = (),
                    **hparams) -> Stage:
  """Binds a weighting function returning ``(weights [B,T], diagnostics)``.

  ``apply_to='loss'`` multiplies the per-token loss (IS corrections, entropy masks);
  ``'advantages'`` multiplies the advantages before the surrogate (THR). Weighting functions see
  ``logprobs`` and ``entropy`` stop-gradiented; the weights are stop-gradiented too.
  """
  if apply_to not in ("loss", "advantages"):
    raise ValueError(f"apply_to must be 'loss' or 'advantages', got {apply_to!r}")
  return binding.bind("weighting", fn, hparams, read=read, apply_to=apply_to)


def surrogate(fn: Callable, *, read: Read = (), **hparams) -> Stage:
  """Binds a surrogate ``fn(logprobs, <batch fields>..., **hparams) -> (loss, diagnostics)``.

  ``loss`` is ``[B,T]`` (token), or ``[B]`` (sequence/group); a bare array is accepted too.
  """
  return binding.bind("surrogate", fn, hparams, read=read)


def _unpack(out) -> tuple[Array, Mapping[str, Array]]:
  return out if isinstance(out, tuple) else (out, {})


def _check_loss_inputs(logprobs: Array, batch: LossBatch, entropy: Optional[Array]) -> None:
  if logprobs.ndim != 2:
    raise ValueError(f"logprobs must be [B, T], got {logprobs.shape}")
  for name in ("mask",) + _TOKEN_FIELDS:
    if getattr(batch, name).shape != logprobs.shape:
      raise ValueError(f"batch.{name} has shape {getattr(batch, name).shape}, logprobs "
                       f"{logprobs.shape}")
  for name in _SEQUENCE_FIELDS:
    if getattr(batch, name).shape != logprobs.shape[:1]:
      raise ValueError(f"batch.{name} must be [B]={logprobs.shape[:1]}, got "
                       f"{getattr(batch, name).shape}")
  if entropy is not None and entropy.shape != logprobs.shape:
    raise ValueError(f"entropy must be [B, T]={logprobs.shape}, got {entropy.shape}")


@dataclasses.dataclass(frozen=True, eq=False)
class Loss:
  """``(logprobs [B,T], batch: LossBatch, counts: GlobalCounts, entropy=None) -> (loss, metrics)``.

  Attributes:
    weightings: ``'weighting'`` stages, applied in order.
    surrogate: the ``'surrogate'`` stage.
    aggregation: ``(loss, mask, counts) -> scalar`` of the policy loss (``aggregation``).
    regularizers: ``'regularizer'`` stages; each adds ``coef · Agg(term)`` with its own
      aggregation or, when ``None``, the policy's (token-mean for a sequence-level surrogate).
    reads: the names it reads (``Objective.loss_reads``).
  """

  weightings: tuple
  surrogate: Stage
  aggregation: Aggregation
  regularizers: tuple
  reads: frozenset

  def __call__(self, logprobs: Array, batch: LossBatch, counts: GlobalCounts,
               entropy: Optional[Array] = None) -> tuple[Array, dict]:
    _check_loss_inputs(logprobs, batch, entropy)
    mask = jnp.asarray(batch.mask, jnp.float32)
    valid = mask > 0
    batch = dataclasses.replace(batch, **{
        name: jnp.where(valid, getattr(batch, name), 0.0) for name in _TOKEN_FIELDS})
    logprobs = jnp.where(jnp.isfinite(logprobs), logprobs, 0.0)
    if entropy is not None:
      entropy = jnp.where(valid, entropy, 0.0)

    advantages = sg(batch.advantages)
    weights = jnp.ones_like(mask)
    diagnostics = {}
    constant = binding.loss_namespace(batch, sg(logprobs),
                                      None if entropy is None else sg(entropy))
    for stage in self.weightings:
      w, diag = _unpack(stage({**constant, "advantages": advantages}))
      w = jnp.where(valid, sg(w), 0.0)
      if stage.options["apply_to"] == "advantages":
        advantages = advantages * w
      else:
        weights = weights * w
      diagnostics.update(diag)

    namespace = binding.loss_namespace(batch, logprobs, entropy)
    namespace["advantages"] = advantages
    elementwise, diag = _unpack(self.surrogate(namespace))
    diagnostics.update(diag)
    if elementwise.ndim == 2:
      elementwise = jnp.where(valid, elementwise * weights, 0.0)
      term_aggregation = self.aggregation
    elif any(w.options["apply_to"] == "loss" for w in self.weightings):
      raise ValueError("token weights on the loss need a token-level surrogate; this one "
                       f"returns {elementwise.shape}")
    else:
      term_aggregation = aggregation_lib.token_mean
    policy_loss = self.aggregation(elementwise, mask, counts)
    total = policy_loss
    for regularizer in self.regularizers:
      term, diag = _unpack(regularizer(namespace))
      agg = regularizer.options.get("aggregation") or term_aggregation
      total = total + regularizer.options["coef"] * agg(term, mask, counts)
      diagnostics.update(diag)
    metrics = {"policy_loss": sg(policy_loss)}
    metrics.update(metrics_lib.summarize(diagnostics, mask, counts))
    metrics["loss"] = sg(total)
    return total, metrics


def make_loss(weightings: tuple, surrogate_stage: Stage, aggregation: Aggregation,
              regularizers: tuple) -> Loss:
  """Checks the stages' roles and builds the ``Loss`` (``reads``: what they read, plus
  ``logprobs`` and ``mask``, which the loss always reads)."""
  for role, stages in (("weighting", weightings), ("surrogate", (surrogate_stage,)),
                       ("regularizer", regularizers)):
    for stage in stages:
      if not isinstance(stage, Stage) or stage.role != role:
        raise TypeError(f"expected a {role!r} stage (from {_MAKERS[role]}), got {stage!r}")
  reads = frozenset({"logprobs", "mask"}).union(
      *(s.reads for s in (*weightings, surrogate_stage, *regularizers)))
  return Loss(tuple(weightings), surrogate_stage, aggregation, tuple(regularizers), reads)
