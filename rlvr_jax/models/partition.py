"""Partition rules for the policy's parameters over a ``("data", "fsdp", "tensor")`` mesh.

Rules are matched on the ``/``-joined parameter path (e.g. ``layers/attn/q_proj/kernel``):

* ``tensor`` splits what Megatron-style tensor parallelism splits: attention heads (q/k/v
  output heads, o_proj input heads), the SwiGLU intermediate dimension, and the vocabulary.
* ``fsdp`` splits the other large dimension (the model width ``D``), so a weight is all-gathered
  just before use and its optimizer state stays sharded.
* ``data`` never splits a parameter: data-parallel replicas hold whole (fsdp/tensor) shards;
  batches are split over ``("data", "fsdp")``.
* Norm scales and the output bias are replicated; the stacked layer axis ``L`` is never split.
* LoRA adapters (``rlvr_jax.models.lora``, same paths as their kernels) split ``A`` like the
  kernel's input axes and ``B`` like its output axes; quantised kernels shard like float ones.

A dimension that the mesh axis does not divide (e.g. 2 KV heads on a tensor axis of 4), or an
axis the mesh does not have, falls back to replication on that dimension: the model stays
correct, only less sharded. A parameter that no rule matches is an error, so a new parameter
cannot be silently replicated.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence, Tuple

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Params = Any
MESH_AXES = ("data", "fsdp", "tensor")

_T, _F = "tensor", "fsdp"
# A quantised kernel (models/quant.py) is a pytree of the kernel's rank: ``qvalue`` (the kernel's
# shape) and ``scale`` (one input axis divided by the block size); both shard like the kernel.
_Q = r"(/qvalue|/scale)?"
# (path pattern, spec): shapes in the comments; layer params carry a leading [L].
PARTITION_RULES: Tuple[Tuple[str, PartitionSpec], ...] = (
    (r"embed/embedding", PartitionSpec(_T, _F)),                        # [V, D]
    (r"lm_head/kernel", PartitionSpec(_F, _T)),                         # [D, V]
    (r"layers/attn/[qkv]_proj/kernel" + _Q, PartitionSpec(None, _F, _T, None)),  # [L, D, N, Dh]
    (r"layers/attn/[qkv]_proj/bias", PartitionSpec(None, _T, None)),    # [L, N, Dh]
    (r"layers/attn/o_proj/kernel" + _Q, PartitionSpec(None, _T, None, _F)),  # [L, H, Dh, D]
    (r"layers/attn/o_proj/bias", PartitionSpec()),                      # [L, D]
    (r"layers/mlp/(gate|up)_proj/kernel" + _Q, PartitionSpec(None, _F, _T)),  # [L, D, F]
    (r"layers/mlp/down_proj/kernel" + _Q, PartitionSpec(None, _T, _F)),      # [L, F, D]
    (r".*norm/scale", PartitionSpec()),                                 # [L, D], [L, Dh], [D]
    # LoRA adapters (models/lora.py): A like its kernel's input axes, B like its output axes,
    # the rank r replicated (it is small, and splitting it would add a reduction).
    (r"layers/attn/[qkv]_proj/lora_a", PartitionSpec(None, _F, None)),  # [L, D, r]
    (r"layers/attn/[qkv]_proj/lora_b", PartitionSpec(None, None, _T, None)),  # [L, r, N, Dh]
    (r"layers/attn/o_proj/lora_a", PartitionSpec(None, _T, None, None)),  # [L, H, Dh, r]
    (r"layers/attn/o_proj/lora_b", PartitionSpec(None, None, _F)),      # [L, r, D]
    (r"layers/mlp/(gate|up)_proj/lora_a", PartitionSpec(None, _F, None)),  # [L, D, r]
    (r"layers/mlp/(gate|up)_proj/lora_b", PartitionSpec(None, None, _T)),  # [L, r, F]
    (r"layers/mlp/down_proj/lora_a", PartitionSpec(None, _T, None)),    # [L, F, r]
    (r"layers/mlp/down_proj/lora_b", PartitionSpec(None, None, _F)),    # [L, r, D]
)


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _fit(spec: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
  """Drops the mesh axes of ``spec`` that ``mesh`` lacks or that do not divide their dimension."""
  fitted = []
  for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
    ok = axis is not None and axis in mesh.shape and dim % mesh.shape[axis] == 0
    fitted.append(axis if ok else None)
  return PartitionSpec(*fitted)


def param_partition_specs(params: Params, mesh: Optional[Mesh] = None) -> Params:
  """A pytree of ``PartitionSpec`` matching ``params`` (arrays or ``ShapeDtypeStruct``s).

  Args:
    params: the model's ``params`` collection, or its ``jax.eval_shape``.
    mesh: if given, the specs are fitted to it (axes it lacks or that do not divide a dimension
      are dropped); without a mesh the rules are returned as written.

  Raises:
    ValueError: a parameter path matches no rule, or has a rank its rule does not expect.
  """

  def spec_for(path, leaf):
    name = _path_str(path)
    for pattern, spec in PARTITION_RULES:
      if re.fullmatch(pattern, name):
        if len(spec) > leaf.ndim:
          raise ValueError(f"rule {pattern!r} expects rank >= {len(spec)}, {name} has shape "
                           f"{leaf.shape}")
        return spec if mesh is None else _fit(spec, leaf.shape, mesh)
    raise ValueError(f"no partition rule matches parameter {name} {tuple(leaf.shape)}")

  return jax.tree_util.tree_map_with_path(spec_for, params)


def param_shardings(params: Params, mesh: Mesh) -> Params:
  """``NamedSharding``s of ``params`` on ``mesh`` (e.g. for ``jax.jit(out_shardings=...)``)."""
  return jax.tree_util.tree_map(lambda spec: NamedSharding(mesh, spec),
                                param_partition_specs(params, mesh),
                                is_leaf=lambda x: isinstance(x, PartitionSpec))


def shard_params(params: Params, mesh: Mesh) -> Params:
  """Places ``params`` (host numpy or device arrays) on ``mesh`` by the partition rules."""
  return jax.device_put(params, param_shardings(params, mesh))

