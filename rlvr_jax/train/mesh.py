"""The device mesh: named axes ``data``, ``fsdp``, ``tensor`` over all (global) devices.

* ``data``: pure data parallelism; params replicated across it.
* ``fsdp``: params and optimizer state sharded (by the model's partition rules); the batch is also
  split across it, as in ZeRO-3 / FSDP.
* ``tensor``: Megatron-style tensor parallelism inside a layer (partition rules decide which dims).

The batch axis of every array in a training batch is sharded over ``("data", "fsdp")``. Under
``jax.distributed.initialize`` the same code spans hosts: ``jax.devices()`` lists every process's
devices, and :func:`host_local_to_global` assembles each host's share of the batch.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import numpy as np

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(num_devices: int, data: int = -1, fsdp: int = 1, tensor: int = 1) -> tuple:
  """Resolves one ``-1`` entry so that ``data * fsdp * tensor == num_devices``."""
  dims = [data, fsdp, tensor]
  if dims.count(-1) > 1:
    raise ValueError(f"At most one mesh axis may be -1, got {dims}.")
  known = math.prod(d for d in dims if d != -1)
  if -1 in dims:
    if num_devices % known:
      raise ValueError(f"{num_devices} devices do not divide into mesh {dims}.")
    dims[dims.index(-1)] = num_devices // known
  if math.prod(dims) != num_devices:
    raise ValueError(f"Mesh {dims} needs {math.prod(dims)} devices, have {num_devices}.")
  return tuple(dims)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A ``(data, fsdp, tensor)`` mesh over ``devices`` (default: all global devices).

  With one device and the defaults this is the ``(1, 1, 1)`` mesh, so the same jit'd step runs
  unchanged from a laptop to a pod. ``jax.experimental.mesh_utils`` orders devices so that the
  inner axes (``tensor``, then ``fsdp``) get the fastest interconnect where the platform knows it.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(len(devices), data, fsdp, tensor)
  try:
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    grid = mesh_utils.create_device_mesh(shape, devices=devices)
  except (ValueError, NotImplementedError, AssertionError):
    # Topology-unaware fallback (e.g. a subset of devices): plain row-major order.
    grid = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(grid, AXES)


def from_config(config) -> Mesh:
  """Mesh from a config with integer fields ``data``, ``fsdp``, ``tensor`` (one may be -1)."""
  return make_mesh(config.data, config.fsdp, config.tensor)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis over ``("data", "fsdp")``, other axes replicated."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every axis replicated on every device of ``mesh`` (parameters of a tiny model, scalars)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh) -> int:
  """The global batch size must be a multiple of this (devices along the batch axes)."""
  return mesh.shape["data"] * mesh.shape["fsdp"]


def host_local_to_global(tree: Any, mesh: Mesh) -> Any:
  """Assembles a global batch from each process's local rows (the leading axis).

  In one process this is a ``device_put``; with several, each process passes its own
  ``global_batch / process_count`` rows, in process order.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def process_rows(tree: Any, process_index: Optional[int] = None,
                 process_count: Optional[int] = None) -> Any:
  """This process's share of a batch that *every* process holds in full (as after identical
  rollouts): the ``process_index``-th of ``process_count`` equal blocks of the leading axis, the
  input :func:`host_local_to_global` expects. One process: the batch itself."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count

  def rows(x):
    x = np.asarray(x)
    if x.shape[0] % count:
      raise ValueError(f"Batch of {x.shape[0]} rows does not split over {count} processes.")
    per = x.shape[0] // count
    return x[index * per:(index + 1) * per]

  return jax.tree.map(rows, tree)


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree of identical-on-every-host values, replicated over the mesh."""
  sharding = replicated(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)
