"""The jit'd update step: micro-batched gradient accumulation of any objective, one optax update.

For a (mini-)batch of ``B`` sequences split into ``M`` micro-batches,

    g = sum_m  grad_theta  L_m(theta; counts(batch)),

where each micro-batch loss ``L_m`` is the objective's loss with the normalisers (token, sequence,
group counts) of the **whole** batch. For the aggregations of ``specs/objectives.md`` §1.4 the sum
of these micro-batch losses is the full-batch loss, so ``M`` changes memory, not the update
(tested to 1e-6). The accumulation is a ``lax.scan`` so the step compiles once whatever ``M``.

The step is one ``jax.jit`` over a mesh: state by :func:`rlvr_jax.train.state.state_shardings`,
batch rows over ``("data", "fsdp")``. The log-prob function is a parameter (by default the model's
chunked :func:`rlvr_jax.rollout.scoring.token_logprobs`, see :func:`model_logprob_fn`), so the step
never builds ``[B, T, V]`` logits and can be tested with any small differentiable model.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from rlvr_jax import types
from rlvr_jax.objectives import compose
from rlvr_jax.train import state as state_lib

# (params, prompt_tokens[B,S], prompt_mask[B,S], completion_tokens[B,T], completion_mask[B,T])
#   -> (logprobs[B,T] float32, entropy[B,T] float32 or None)
LogprobFn = Callable[..., Tuple[jax.Array, Optional[jax.Array]]]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainBatch:
  """One update's inputs for ``B`` sequences (prompt-major, ``B = P * G``).

  Attributes:
    prompt_tokens: ``[B, S]`` int32, left-padded prompts.
    prompt_mask: ``[B, S]`` bool.
    completion_tokens: ``[B, T]`` int32.
    loss: the :class:`rlvr_jax.types.LossBatch` constants (mask, advantages, old/ref log-probs...).
    completion_mask: ``[B, T]`` the tokens the log-prob function attends to when they differ
      from the loss mask (multi-turn: observation tokens are attended to, not trained on);
      None: ``loss.mask``.
  """

  prompt_tokens: jax.Array
  prompt_mask: jax.Array
  completion_tokens: jax.Array
  loss: types.LossBatch
  completion_mask: Optional[jax.Array] = None

  @property
  def attention_mask(self) -> jax.Array:
    """The completion mask of teacher forcing: ``completion_mask``, else ``loss.mask``."""
    return self.loss.mask if self.completion_mask is None else self.completion_mask

  @property
  def size(self) -> int:
    """``B``, the number of sequences."""
    return self.completion_tokens.shape[0]


def model_logprob_fn(model_config: Any, *, temperature: float, chunk_size: int,
                     return_entropy: bool) -> LogprobFn:
  """The policy's token log-probs via the chunked scorer of ``rlvr_jax.rollout.scoring``.

  ``temperature`` must be the sampling temperature so that log-probs match the rollout's.
  """
  from rlvr_jax.rollout.scoring import token_logprobs  # pylint: disable=g-import-not-at-top

  def fn(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
    return token_logprobs(
        params, model_config, prompt_tokens, prompt_mask, completion_tokens, completion_mask,
        temperature=temperature, chunk_size=chunk_size, return_entropy=return_entropy)

  return fn


def with_remat(fn: LogprobFn, remat: str) -> LogprobFn:
  """Rematerialisation of the forward pass: ``"none"``, ``"full"`` (keep only inputs) or
  ``"dots"`` (keep matmul outputs without batch dims, recompute elementwise ops)."""
  if remat == "none":
    return fn
  if remat == "full":
    return jax.checkpoint(fn)
  if remat == "dots":
    return jax.checkpoint(fn, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
  raise ValueError(f"Unknown remat {remat!r}; expected none, full or dots.")


def score_all_positions(fn: LogprobFn) -> LogprobFn:
  """A log-prob function that scores every completion position whatever mask it is given.

  Log-probs are causal, so the values at real positions do not change; the loss still applies its
  own mask. For terms that read a position outside the loss mask (LaSeR's ``z_c``).
  """

  def wrapped(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
    return fn(params, prompt_tokens, prompt_mask, completion_tokens,
              jnp.ones_like(completion_mask))

  return wrapped


def split_micro_batches(tree: Any, num_micro_batches: int, group_size: Optional[int]) -> Any:
  """``[B, ...]`` leaves → ``[M, B / M, ...]``.

  Micro-batch ``m`` takes rows ``{i * M + m}`` (or whole groups ``{i * M + m}`` of ``group_size``
  rows when given), an interleave that keeps every micro-batch's rows on the device that holds them
  when ``B`` is sharded over the data axes, so no all-to-all is needed. With whole groups an
  objective that normalises within a group (REAL, PACS) sees complete groups.
  """
  m = num_micro_batches

  def split(x):
    b = x.shape[0]
    unit = group_size or 1
    if b % (unit * m):
      raise ValueError(f"Batch {b} not divisible into {m} micro-batches of whole units of {unit}.")
    x = x.reshape((b // (unit * m), m, unit) + x.shape[1:])
    x = jnp.moveaxis(x, 1, 0)
    return x.reshape((m, b // m) + x.shape[3:])

  return jax.tree.map(split, tree)


def make_update_fn(objective: Any, tx: optax.GradientTransformation, logprob_fn: LogprobFn, *,
                   num_micro_batches: int = 1, group_size: Optional[int] = None,
                   schedule: Optional[optax.Schedule] = None,
                   policy_fn: Optional[Callable[[Any, Any, jax.Array], Any]] = None,
                   old_logprobs_from_policy: bool = False,
                   ) -> Callable[[state_lib.TrainState, TrainBatch],
                                 Tuple[state_lib.TrainState, Dict[str, jax.Array]]]:
  """``update(state, batch) -> (state, metrics)``, unjitted (see :func:`jit_update`).

  Args:
    objective: an ``rlvr_jax.objectives`` Objective (``loss``, ``needs_entropy``, ``whole_groups``).
    tx: the optax transformation (clipping included).
    logprob_fn: see :data:`LogprobFn`; wrap with :func:`with_remat` for rematerialisation.
    num_micro_batches: ``M``; the batch size must be a multiple of ``M`` (of ``M * group_size``
      when ``group_size`` is given).
    group_size: split micro-batches at whole groups of this many rows (required when
      ``objective.whole_groups``).
    schedule: learning-rate schedule, for the ``learning_rate`` metric.
    policy_fn: ``(trained params, frozen base, step) -> model params`` for the log-prob function
      when the trained parameters are not the whole model (LoRA adapters on ``state.frozen``:
      ``lora.attach``; gradients then reach the adapters only); default: ``state.params``.
    old_logprobs_from_policy: the loss's old log-probs are the policy's own log-probs with the
      gradient stopped, not ``batch.loss.old_logprobs``: exact, and free, when the params that
      sampled the batch are the ones updated (one update per rollout; TRL's
      ``per_token_logps.detach()`` when ``num_iterations == 1``). The ratio is then exactly 1.

  Metrics: the objective's metrics combined over micro-batches by
  ``rlvr_jax.objectives.compose.combine_metrics`` (sums of global-count means, so the full-batch
  value; min/max for ``*min``/``*max`` names), ``loss``, ``grad_norm`` (before clipping),
  ``entropy`` (token mean, when the log-prob function returns it), ``learning_rate`` and
  ``update/skipped``.

  **Non-finite updates are skipped on the device.** When the loss, the gradient's global norm or
  the optimizer's update norm is NaN or infinite, the returned state is the input state, bit for
  bit: params, optimizer state *and* ``step`` (the step counts updates taken, and optax's own
  schedule counter inside ``opt_state`` does not advance either, so the ``learning_rate`` metric
  stays the rate actually used). ``update/skipped`` is 1.0 then (0.0 otherwise) and the other
  metrics are reported as computed, NaN included, so the cause stays visible; average a step's
  updates with :func:`rlvr_jax.train.guards.mean_over_updates`, which leaves skipped updates out,
  and stop a run that keeps skipping with :class:`rlvr_jax.train.guards.SkipGuard`.
  ``optax.apply_if_finite`` is not used: it checks only the gradient (not the loss), wraps the
  optimizer state in a new structure (existing checkpoints would no longer restore), lets the
  non-finite update through after ``max_consecutive_errors`` skips instead of stopping, and still
  advances ``state.step``.
  """
  if getattr(objective, "whole_groups", False) and not group_size:
    raise ValueError("This objective needs whole groups per micro-batch: pass group_size.")
  needs_entropy = bool(getattr(objective, "needs_entropy", False))

  def micro_loss(params, frozen, step, micro: TrainBatch, counts: types.GlobalCounts):
    model_params = params if policy_fn is None else policy_fn(params, frozen, step)
    logprobs, entropy = logprob_fn(model_params, micro.prompt_tokens, micro.prompt_mask,
                                   micro.completion_tokens, micro.attention_mask)
    if needs_entropy and entropy is None:
      raise ValueError("The objective needs entropy but the log-prob function returned None.")
    constants = micro.loss
    if old_logprobs_from_policy:
      constants = dataclasses.replace(constants, old_logprobs=jax.lax.stop_gradient(logprobs))
    loss, metrics = objective.loss(logprobs, constants, counts,
                                   entropy if needs_entropy else None)
    metrics = dict(metrics)
    if entropy is not None:
      # Token mean over the whole batch, summed across micro-batches below.
      metrics["entropy"] = jnp.sum(jax.lax.stop_gradient(entropy) * micro.loss.mask) / (
          jnp.maximum(counts.num_tokens, 1.0))
    return loss, metrics

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def update(state: state_lib.TrainState, batch: TrainBatch):
    counts = types.global_counts(batch.loss.mask, batch.loss.group_ids)
    if num_micro_batches == 1:
      (loss, metrics), grads = grad_fn(state.params, state.frozen, state.step, batch, counts)
    else:
      micros = split_micro_batches(batch, num_micro_batches, group_size)
      zeros = jax.tree.map(jnp.zeros_like, state.params)

      def body(grad_sum, micro):
        (loss, metrics), grads = grad_fn(state.params, state.frozen, state.step, micro, counts)
        return jax.tree.map(jnp.add, grad_sum, grads), (loss, metrics)

      grads, (losses, metrics) = jax.lax.scan(body, zeros, micros)
      loss = losses.sum()
      metrics = compose.combine_metrics(
          [{k: v[i] for k, v in metrics.items()} for i in range(num_micro_batches)])
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
              & jnp.isfinite(optax.global_norm(updates)))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm)
    metrics["update/skipped"] = jnp.where(finite, 0.0, 1.0).astype(jnp.float32)
    if schedule is not None:
      metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return keep_if_not_finite(finite, new_state, state), metrics

  return update


def keep_if_not_finite(finite: jax.Array, new_state: state_lib.TrainState,
                       old_state: state_lib.TrainState) -> state_lib.TrainState:
  """``new_state`` where ``finite`` (a scalar bool) holds, else ``old_state``, leaf by leaf, for
  what an update changes (step, params, optimizer state; a frozen base is left alone).

  An elementwise select rather than ``lax.cond``: XLA fuses it into the update's own elementwise
  pass (no extra copy of the params, donation still aliases the buffers), and it needs no device
  to host transfer of the predicate, which a conditional costs on GPU.
  """
  fields = lambda s: (s.step, s.params, s.opt_state)
  step, params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                         fields(new_state), fields(old_state))
  return new_state.replace(step=step, params=params, opt_state=opt_state)


def jit_update(update_fn, state_shardings: state_lib.TrainState, batch_sharding: Any):
  """``jax.jit`` of an update over a mesh; the input state's buffers are donated."""
  return jax.jit(update_fn, in_shardings=(state_shardings, batch_sharding),
                 out_shardings=(state_shardings, None), donate_argnums=0)


def make_score_fn(logprob_fn: LogprobFn, num_micro_batches: int = 1,
                  group_size: Optional[int] = None):
  """``score(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask) ->
  (logprobs[B,T], entropy[B,T] or None)`` without gradient, micro-batched like the update.

  Used to recompute old log-probs (when not taken from the sampler) and reference log-probs.
  """

  def score(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
    args = (prompt_tokens, prompt_mask, completion_tokens, completion_mask)
    if num_micro_batches == 1:
      out = logprob_fn(params, *args)
    else:
      micros = split_micro_batches(args, num_micro_batches, group_size)
      _, out = jax.lax.scan(lambda c, a: (c, logprob_fn(params, *a)), None, micros)
      out = jax.tree.map(functools.partial(_merge_micro_batches, group_size=group_size), out)
    return jax.lax.stop_gradient(out)

  return score


def _merge_micro_batches(x: jax.Array, group_size: Optional[int]) -> jax.Array:
  """Inverse of :func:`split_micro_batches` for one ``[M, B / M, ...]`` leaf."""
  m, per = x.shape[:2]
  unit = group_size or 1
  x = x.reshape((m, per // unit, unit) + x.shape[2:])
  x = jnp.moveaxis(x, 0, 1)
  return x.reshape((m * per,) + x.shape[3:])
