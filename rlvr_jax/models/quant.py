"""Blockwise int8 and NF4 storage of the frozen base's projection kernels (QLoRA's base).

Quantisation is qwix's (``qwix.quantize``/``qwix.dequantize``, google/qwix, imported lazily so
that the model code does not need it unless a base is quantised). Each kernel is split into blocks
of ``block_size`` elements along its last input axis (``D`` for q/k/v/gate/up, ``F`` for down,
``Dh`` for o), one scale per block and output channel, the absmax scaling of QLoRA (Dettmers et
al. 2023, arXiv:2305.14314, with blocks of 64 consecutive input weights of one output row, as in
bitsandbytes on an HF ``[out, in]`` weight):

* ``int8``: ``q = round(w / s * 127)``, ``s = max|w|`` over the block; ``w ~ q * s / 127``.
* ``nf4``: ``q = argmin_j |w / s - c_j|`` over the 16 NormalFloat levels ``c`` of the QLoRA
  paper's appendix E (quantiles of N(0, 1) rescaled to [-1, 1], with an exact 0); ``w ~ c_q * s``.

A quantised kernel is a ``qwix.QArray`` pytree: ``qvalue`` (``int8``/``uint4``, the kernel's
shape) and ``scale`` (the kernel's shape with the blocked axis divided by ``block_size``), both
keeping the stacked layer axis first, so ``nn.scan`` slices them per layer and the partition
rules shard them like the kernel. The transformer dequantises one layer's kernel at a time.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp

Params = Any
METHODS = ("none", "int8", "nf4")

# Projection kernels (stacked [L, ...]) and the axis their blocks run along: the last input axis.
_KERNEL = re.compile(r"layers/(attn|mlp)/(\w+)_proj/kernel")


def _qtype(method: str):
  return {"int8": jnp.int8, "nf4": "nf4"}[method]


def is_quantized(x: Any) -> bool:
  """True for a quantised kernel (a ``qwix.QArray``: ``qvalue`` and ``scale``), checked by its
  fields so that qwix is imported only when a quantised kernel exists."""
  return hasattr(x, "qvalue") and hasattr(x, "scale")


def quantize(w: jax.Array, method: str, block_size: int, block_axis: int) -> Any:
  """Blockwise absmax quantisation of ``w`` (see the module docstring).

  Args:
    w: a float kernel.
    method: ``"int8"`` or ``"nf4"``.
    block_size: elements per block along ``block_axis``; must divide that axis.
    block_axis: the axis the blocks run along; every other axis (output channels, the stacked
      layers) gets its own scales.

  Returns:
    A ``qwix.QArray`` whose ``scale`` has the dtype of ``w``.
  """
  import qwix  # pylint: disable=g-import-not-at-top
  if method not in ("int8", "nf4"):
    raise ValueError(f"method must be int8 or nf4, got {method!r}")
  block_axis %= w.ndim
  if w.shape[block_axis] % block_size:
    raise ValueError(f"block_size {block_size} does not divide axis {block_axis} of shape "
                     f"{w.shape}; pick a block size that divides it (e.g. a smaller power of 2)")
  channelwise = tuple(a for a in range(w.ndim) if a != block_axis)
  return qwix.quantize(w, _qtype(method), channelwise_axes=channelwise,
                       tiled_axes={block_axis: block_size})


def dequantize(q: Any, dtype: Any) -> jax.Array:
  """The float kernel of a quantised one, cast to ``dtype``."""
  import qwix  # pylint: disable=g-import-not-at-top
  return qwix.dequantize(q).astype(dtype)


# One compilation per kernel shape and setting, shared by every call.
_quantize_jit = jax.jit(quantize, static_argnums=(1, 2, 3))


def _block_axis(path: str) -> int:
  # o_proj's kernel is [L, H, Dh, D]: its last input axis is Dh (2); the others' is axis 1.
  return 2 if path.endswith("o_proj/kernel") else 1


def quantize_params(params: Params, method: str, block_size: int = 64) -> Params:
  """``params`` with every projection kernel quantised; every other leaf unchanged.

  Args:
    params: the model's params (float kernels ``layers/{attn,mlp}/*_proj/kernel``).
    method: ``"int8"`` or ``"nf4"``.
    block_size: elements per block along each kernel's last input axis.

  Raises:
    ValueError: ``block_size`` does not divide an input axis (the message names the kernel).
  """
  def convert(path, leaf):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if not _KERNEL.fullmatch(name):
      return leaf
    try:
      return _quantize_jit(leaf, method, block_size, _block_axis(name))
    except ValueError as e:
      raise ValueError(f"{name}: {e}") from e

  return jax.tree_util.tree_map_with_path(convert, params)
