"""Where generation lives on a ``("data", "fsdp", "tensor")`` mesh: rows, params, KV cache.

The rules are those of training, so a rollout is generated where its rows train and with the
weights where the update keeps them:

* **rows** (prompts, samples, per-token outputs): the leading axis over ``("data", "fsdp")``
  (:func:`row_spec`), the training batch's layout (``rlvr_jax.train.mesh.batch_sharding``). A row
  count the batch devices do not divide is replicated instead (correct, not data-parallel), as
  the partition rules fall back for a dimension an axis does not divide.
* **params**: :mod:`rlvr_jax.models.partition`'s rules (tensor-parallel heads, ``F`` and ``V``
  over ``tensor``, the width over ``fsdp``); params already placed so stay where they are.
* **KV cache** ``[L, B, KV, S, Dh]``: rows as above, KV heads over ``tensor`` when it divides
  them (:func:`cache_spec`), matching the k/v projections' output heads.

Placement from the host (:func:`put`) works in one process and across processes: with a mesh
spanning several processes, every process holds the same host array and uploads only the rows
of its own devices, so each process generates only its own rows.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

from rlvr_jax.models import partition

BATCH_AXES = ("data", "fsdp")
TENSOR_AXIS = "tensor"


def batch_axes(mesh: Mesh) -> Tuple[str, ...]:
  """The axes of :data:`BATCH_AXES` that ``mesh`` has, in order."""
  return tuple(a for a in BATCH_AXES if a in mesh.shape)


def num_row_shards(mesh: Mesh) -> int:
  """Devices along the batch axes: the row counts split over the mesh are multiples of this."""
  return math.prod(mesh.shape[a] for a in batch_axes(mesh))


def row_spec(mesh: Mesh, num_rows: int) -> PartitionSpec:
  """``PartitionSpec`` of an array whose leading axis has ``num_rows`` rows: split over the batch
  axes when they divide it, else replicated; other axes replicated."""
  axes = batch_axes(mesh)
  if axes and num_rows % num_row_shards(mesh) == 0:
    return PartitionSpec(axes)
  return PartitionSpec()


def row_sharding(mesh: Mesh, num_rows: int) -> NamedSharding:
  """:func:`row_spec` as a ``NamedSharding`` on ``mesh``."""
  return NamedSharding(mesh, row_spec(mesh, num_rows))


def cache_spec(mesh: Mesh, num_rows: int, num_kv_heads: int) -> PartitionSpec:
  """``PartitionSpec`` of a KV cache leaf ``[L, B, KV, S, Dh]``: ``B`` as :func:`row_spec`, the
  KV heads over ``tensor`` when it divides them (else replicated), layers, slots and ``Dh``
  replicated."""
  rows = tuple(row_spec(mesh, num_rows))
  rows = rows[0] if rows else None
  tensor = mesh.shape.get(TENSOR_AXIS, 1)
  heads = TENSOR_AXIS if tensor > 1 and num_kv_heads % tensor == 0 else None
  return PartitionSpec(None, rows, heads, None, None)


def cache_sharding(mesh: Mesh, num_rows: int, num_kv_heads: int) -> NamedSharding:
  """:func:`cache_spec` as a ``NamedSharding`` on ``mesh``."""
  return NamedSharding(mesh, cache_spec(mesh, num_rows, num_kv_heads))


def put(x: Any, sharding: NamedSharding) -> jax.Array:
  """``x`` (a host array, or a device array) placed with ``sharding``; a no-op when it already is.

  When ``sharding`` spans several processes and ``x`` is local, ``x`` must be the same in every
  process (as after the loop's identical host pipelines); each process uploads only the blocks of
  its own devices, without a cross-process check.
  """
  if isinstance(x, jax.Array) and x.sharding == sharding:
    return x
  if sharding.is_fully_addressable or (isinstance(x, jax.Array) and not x.is_fully_addressable):
    return jax.device_put(x, sharding)
  host = np.asarray(x)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_rows(x: Any, mesh: Mesh) -> jax.Array:
  """Places an array's rows (leading axis) by :func:`row_sharding`."""
  return put(x, row_sharding(mesh, np.shape(x)[0]))


def shard_params(params: Any, mesh: Mesh) -> Any:
  """Places ``params`` by the training partition rules (`partition.param_shardings`); leaves
  already placed so (the trainer's state) are not copied."""
  return jax.tree.map(put, params, partition.param_shardings(params, mesh))


def constrain_rows(tree: Any, mesh: Optional[Mesh]) -> Any:
  """Inside a jit: every leaf's rows by :func:`row_sharding` (identity without a mesh)."""
  if mesh is None:
    return tree
  return jax.tree.map(
      lambda x: jax.lax.with_sharding_constraint(x, row_sharding(mesh, x.shape[0])), tree)


def constrain_logits(logits: Any, mesh: Optional[Mesh]) -> Any:
  """Inside a jit: ``[rows, V]`` logits computed with the vocabulary split over ``tensor`` (where
  it divides ``V``), as the LM head's kernel is, then gathered to whole rows for sampling.

  Pinning both layouts makes XLA gather the logits (``rows / (data * fsdp)`` per device) rather
  than the ``[D, V]`` kernel at every decode step. Identity without a mesh.
  """
  if mesh is None:
    return logits
  rows = tuple(row_spec(mesh, logits.shape[0]))
  rows = rows[0] if rows else None
  tensor = mesh.shape.get(TENSOR_AXIS, 1)
  if tensor > 1 and logits.shape[-1] % tensor == 0:
    logits = jax.lax.with_sharding_constraint(
        logits, NamedSharding(mesh, PartitionSpec(rows, TENSOR_AXIS)))
  return jax.lax.with_sharding_constraint(logits, NamedSharding(mesh, PartitionSpec(rows, None)))


def constrain_cache(cache: Any, mesh: Optional[Mesh]) -> Any:
  """Inside a jit: a KV cache's leaves, stacked ``[L, B, KV, S, Dh]`` or one layer's
  ``[B, KV, S, Dh]`` (`transformer.split_cache`), by :func:`cache_spec` (identity without a
  mesh)."""
  if mesh is None:
    return cache

  def constrain(x):  # Rows and KV heads are the 4th- and 3rd-last axes in both layouts.
    spec = cache_spec(mesh, x.shape[-4], x.shape[-3])
    spec = spec if x.ndim == 5 else PartitionSpec(*spec[1:])
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

  return jax.tree.map(constrain, cache)
