"""Train state (params, optimizer state, step, reference params, a frozen base) and the optimizer
from config."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import optax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
  """Everything the update step reads and writes.

  Attributes:
    step: scalar int32, optimizer steps taken.
    params: the trained parameters: the whole policy, or only its LoRA adapters when ``frozen``
      is set.
    opt_state: optax state of ``params`` (so, with LoRA, of the adapters only).
    ref_params: frozen reference policy (``None`` unless the objective needs one; ``None`` with
      LoRA, whose reference is ``frozen`` with the adapters off).
    frozen: the frozen base model under LoRA adapters (float or quantised,
      ``rlvr_jax.models.lora``), never differentiated or updated; ``None`` for full training.
      The policy is ``lora.attach(frozen, params, lora_config)``.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  ref_params: Optional[Any] = None
  frozen: Optional[Any] = None

  def replace(self, **changes) -> "TrainState":
    """A copy with the given fields changed (flax-style)."""
    return dataclasses.replace(self, **changes)


def make_schedule(config, num_updates: Optional[int] = None) -> optax.Schedule:
  """Learning-rate schedule from ``config.optimizer``.

  Fields: ``learning_rate``, ``schedule`` in ``{"constant", "cosine", "linear"}``,
  ``warmup_steps`` (linear from 0), ``decay_steps`` (cosine/linear decay length after warm-up;
  ``0``: the rest of the run's ``num_updates`` optimizer steps, when given),
  ``end_learning_rate_factor`` (final lr / peak lr).
  """
  peak = config.learning_rate
  warmup = int(config.get("warmup_steps", 0))
  decay_steps = int(config.get("decay_steps", 0))
  if not decay_steps and num_updates:
    decay_steps = num_updates - warmup
  end = peak * float(config.get("end_learning_rate_factor", 0.0))
  kind = config.get("schedule", "constant")
  if kind == "constant":
    main = optax.constant_schedule(peak)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(peak, max(decay_steps, 1), alpha=end / peak if peak else 0.0)
  elif kind == "linear":
    main = optax.linear_schedule(peak, end, max(decay_steps, 1))
  else:
    raise ValueError(f"Unknown schedule {kind!r}.")
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def make_optimizer(config, num_updates: Optional[int] = None
                   ) -> Tuple[optax.GradientTransformation, optax.Schedule]:
  """``(tx, schedule)`` from ``config.optimizer`` (``num_updates``: see :func:`make_schedule`).

  ``name`` in ``{"adamw", "adam", "sgd"}`` with ``b1``, ``b2``, ``eps``, ``weight_decay``;
  ``grad_clip`` (max global norm, ``<= 0`` disables clipping) is applied before the optimizer, as
  in TRL/verl (``max_grad_norm``).
  """
  schedule = make_schedule(config, num_updates)
  name = config.get("name", "adamw")
  if name == "adamw":
    opt = optax.adamw(schedule, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999),
                      eps=config.get("eps", 1e-8), weight_decay=config.get("weight_decay", 0.0))
  elif name == "adam":
    opt = optax.adam(schedule, b1=config.get("b1", 0.9), b2=config.get("b2", 0.999),
                     eps=config.get("eps", 1e-8))
  elif name == "sgd":
    opt = optax.sgd(schedule)
  else:
    raise ValueError(f"Unknown optimizer {name!r}.")
  clip = float(config.get("grad_clip", 0.0))
  tx = optax.chain(optax.clip_by_global_norm(clip), opt) if clip > 0 else opt
  return tx, schedule


def create(params: Any, tx: optax.GradientTransformation,
           ref_params: Optional[Any] = None, frozen: Optional[Any] = None) -> TrainState:
  """A fresh state at step 0. Call under ``jax.jit`` with sharded params to shard ``opt_state``.

  With ``frozen`` (a LoRA base), ``params`` are the adapters and only they get optimizer state.
  """
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ref_params=ref_params, frozen=frozen)


def state_shardings(state_shapes: TrainState, param_specs: Any, mesh: Mesh,
                    frozen_specs: Optional[Any] = None) -> TrainState:
  """Shardings of a state: params (and the reference) by ``param_specs``; optimizer moments like
  the params they track (matched by tree structure via ``optax.tree_map_params``), scalars
  replicated; the frozen base by ``frozen_specs``.

  Args:
    state_shapes: a state or its ``jax.eval_shape``.
    param_specs: a pytree of ``PartitionSpec`` with the structure of ``params``.
    mesh: the mesh.
    frozen_specs: ``PartitionSpec``s of ``state_shapes.frozen`` (e.g.
      ``partition.param_partition_specs(frozen, mesh)``); required when it is set.
  """
  to_sharding = lambda spec: NamedSharding(mesh, spec)
  is_spec = lambda x: isinstance(x, PartitionSpec)
  param_shardings = jax.tree.map(to_sharding, param_specs, is_leaf=is_spec)
  replicated = NamedSharding(mesh, PartitionSpec())

  # Optimizer states are pytrees that embed param-shaped subtrees (mu, nu, ...); any leaf whose
  # subtree has the params' structure gets the params' shardings, everything else is replicated.
  params_def = jax.tree.structure(state_shapes.params)

  def shard_opt(node):
    if jax.tree.structure(node) == params_def:
      return param_shardings
    return jax.tree.map(lambda _: replicated, node)

  def is_param_tree(node):
    return jax.tree.structure(node) == params_def

  opt_shardings = jax.tree.map(shard_opt, state_shapes.opt_state, is_leaf=is_param_tree)
  return TrainState(
      step=replicated,
      params=param_shardings,
      opt_state=opt_shardings,
      ref_params=None if state_shapes.ref_params is None else param_shardings,
      frozen=_frozen_shardings(state_shapes.frozen, frozen_specs, mesh),
  )


def _frozen_shardings(frozen: Any, frozen_specs: Any, mesh: Mesh) -> Any:
  if frozen is None:
    return None
  if frozen_specs is None:
    raise ValueError("the state has a frozen base: pass frozen_specs")
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), frozen_specs,
                      is_leaf=lambda x: isinstance(x, PartitionSpec))


def init_sharded(params: Any, tx: optax.GradientTransformation, param_specs: Any, mesh: Mesh,
                 with_reference: bool, frozen: Optional[Any] = None,
                 frozen_specs: Optional[Any] = None) -> Tuple[TrainState, TrainState]:
  """A step-0 state placed on ``mesh``; returns ``(state, state_shardings)``.

  The reference params are a copy of the initial params (a frozen snapshot, not an alias, since
  the update step donates the state's buffers). A ``frozen`` base (LoRA: ``params`` are then the
  adapters, and ``with_reference`` should be False since the reference is the base) is placed by
  ``frozen_specs`` without passing through the initialising program, so it is never copied when
  it is already in place.
  """
  make: Callable[[Any], TrainState] = lambda p: create(
      p, tx, jax.tree.map(jnp.copy, p) if with_reference else None)
  shapes = jax.eval_shape(make, params)
  shardings = state_shardings(shapes, param_specs, mesh)
  state = jax.jit(make, out_shardings=shardings)(params)
  if frozen is not None:
    frozen_shardings = _frozen_shardings(frozen, frozen_specs, mesh)
    state = state.replace(frozen=jax.device_put(frozen, frozen_shardings))
    shardings = shardings.replace(frozen=frozen_shardings)
  return state, shardings
