"""LoRA adapters for the policy transformer (Hu et al. 2021, arXiv:2106.09685), QLoRA-ready.

A LoRA adapter on a projection with frozen kernel ``W`` (inputs ``I``, outputs ``O``) adds

    y = x W + (dropout(x) A) B * (alpha / r),    A: [I, r],  B: [r, O],

with ``A`` drawn at random and ``B = 0`` (so the adapted model starts equal to the base). Only
``A`` and ``B`` are trained; ``W`` may be stored in bf16 or quantised (int8, or NF4 for QLoRA,
Dettmers et al. 2023, arXiv:2305.14314; see ``rlvr_jax.models.quant``).

Three trees, all plain pytrees:

* the **base**: the model's ``params`` (``init_params``/``load_hf``), optionally quantised by
  ``prepare_base``;
* the **adapters**: ``init_adapters``'s tree, keyed by the same paths as the base kernels, e.g.
  ``layers/attn/q_proj/{lora_a [L, D, r], lora_b [L, r, H, Dh]}``; the optimizer sees only this;
* the **policy**: ``attach(base, adapters, config)``, the base with the adapter leaves added next
  to their kernels (``B`` pre-multiplied by ``alpha / r``). It is what ``Transformer.apply``,
  ``rollout.generate`` and ``rollout.scoring.token_logprobs`` take as ``params``: the transformer's
  ``Projection`` computes the LoRA term from the leaves it finds, never materialising ``W + AB``.
  ``attach(base, None, config)`` is the base itself: adapters off, the reference policy for KL.

Building the policy is a pytree re-assembly (no array copies besides ``B * alpha / r``), so it
belongs inside the differentiated function: gradients then flow to the adapters only.

The adapter shapes, per target (``L`` layers, ``D`` width, ``F`` MLP width, ``H``/``KV`` heads of
``Dh``), follow the kernels' layouts: ``A`` has the kernel's input axes then ``r``, ``B`` has ``r``
then the kernel's output axes:

====== ================= ================= ==================
target kernel            lora_a            lora_b
====== ================= ================= ==================
q      [L, D, H, Dh]     [L, D, r]         [L, r, H, Dh]
k, v   [L, D, KV, Dh]    [L, D, r]         [L, r, KV, Dh]
o      [L, H, Dh, D]     [L, H, Dh, r]     [L, r, D]
gate   [L, D, F]         [L, D, r]         [L, r, F]
up     [L, D, F]         [L, D, r]         [L, r, F]
down   [L, F, D]         [L, F, r]         [L, r, D]
====== ================= ================= ==================
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax.models import partition
from rlvr_jax.models import quant
from rlvr_jax.models.config import ModelConfig

Array = jax.Array
Params = Any

# Leaf names inside a projection's parameter node (read by transformer.Projection).
A = "lora_a"
B = "lora_b"
DROPOUT_KEY = "lora_dropout_key"    # [L, key data] raw PRNG key data, one key per layer
DROPOUT_KEEP = "lora_dropout_keep"  # [L] float32, 1 - dropout

TARGETS = ("q", "k", "v", "o", "gate", "up", "down")
# Target -> path of its projection inside ``params["layers"]``.
TARGET_PATHS: Dict[str, Tuple[str, str]] = {
    "q": ("attn", "q_proj"), "k": ("attn", "k_proj"), "v": ("attn", "v_proj"),
    "o": ("attn", "o_proj"), "gate": ("mlp", "gate_proj"), "up": ("mlp", "up_proj"),
    "down": ("mlp", "down_proj"),
}
INITS = ("kaiming", "gaussian")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
  """What to adapt and how; every field is a plain value (one ml_collections field each).

  Attributes:
    rank: ``r``, the inner dimension of ``A [I, r]`` and ``B [r, O]``.
    alpha: the scale numerator: the LoRA term is multiplied by ``alpha / rank`` (peft's
      ``lora_alpha``).
    dropout: dropout rate on the adapter's input ``x`` (peft's ``lora_dropout``); applied only
      where ``attach`` gets a ``dropout_rng`` (training), never at rollout or scoring.
    targets: projections to adapt, a subset of ``TARGETS`` (``q,k,v,o,gate,up,down``; a
      comma-separated string is accepted).
    init: ``A``'s initialisation: ``"kaiming"`` (peft's default ``init_lora_weights=True``:
      uniform on ``[-1/sqrt(I), 1/sqrt(I)]``, i.e. Kaiming-uniform with ``a = sqrt(5)``) or
      ``"gaussian"`` (``N(0, 1/r^2)``, peft's ``"gaussian"``). ``B`` always starts at zero.
    base_quantization: how ``prepare_base`` stores the frozen projection kernels: ``"none"``
      (as loaded, e.g. bf16), ``"int8"`` or ``"nf4"`` (QLoRA).
    quant_block_size: elements per quantisation block along each kernel's input axis (64 in
      QLoRA).
  """

  rank: int = 8
  alpha: float = 16.0
  dropout: float = 0.0
  targets: Union[Tuple[str, ...], str] = TARGETS
  init: str = "kaiming"
  base_quantization: str = "none"
  quant_block_size: int = 64

  def __post_init__(self):
    targets = self.targets
    if isinstance(targets, str):
      targets = tuple(t.strip() for t in targets.split(",") if t.strip())
    targets = tuple(targets)
    unknown = set(targets) - set(TARGETS)
    if unknown or not targets or len(set(targets)) != len(targets):
      raise ValueError(f"targets must be distinct names from {TARGETS}, got {self.targets!r}")
    # Canonical order, so that equal sets give equal (hashable) configs.
    object.__setattr__(self, "targets", tuple(t for t in TARGETS if t in targets))
    if self.rank <= 0:
      raise ValueError(f"rank must be positive, got {self.rank}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
    if self.init not in INITS:
      raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
    if self.base_quantization not in quant.METHODS:
      raise ValueError(f"base_quantization must be one of {quant.METHODS}, got "
                       f"{self.base_quantization!r}")
    if self.quant_block_size <= 0:
      raise ValueError(f"quant_block_size must be positive, got {self.quant_block_size}")

  @property
  def scale(self) -> float:
    """``alpha / rank``, the factor on the LoRA term."""
    return self.alpha / self.rank

  def replace(self, **changes) -> "LoraConfig":
    """A copy with some fields changed."""
    return dataclasses.replace(self, **changes)


def kernel_axes(model_config: ModelConfig, target: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
  """``(input axes, output axes)`` of a target's per-layer kernel (see the module table)."""
  c = model_config
  d, f, h, kv, dh = c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads, c.head_dim
  return {"q": ((d,), (h, dh)), "k": ((d,), (kv, dh)), "v": ((d,), (kv, dh)),
          "o": ((h, dh), (d,)), "gate": ((d,), (f,)), "up": ((d,), (f,)),
          "down": ((f,), (d,))}[target]


def _get(tree: Mapping[str, Any], path: Sequence[str]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _replace_nodes(tree: Mapping[str, Any], nodes: Mapping[Tuple[str, ...], Any]) -> Dict:
  """A copy of ``tree`` with the nodes at the given paths replaced; other subtrees are shared."""
  out = dict(tree)
  heads = {}
  for path, node in nodes.items():
    heads.setdefault(path[0], {})[path[1:]] = node
  for key, rest in heads.items():
    out[key] = rest[()] if () in rest else _replace_nodes(tree[key], rest)
  return out


def _init_adapters(model_config: ModelConfig, lora_config: LoraConfig, rng: Array) -> Params:
  adapters: Dict[str, Any] = {}
  num_layers, r = model_config.num_layers, lora_config.rank
  for i, target in enumerate(lora_config.targets):
    in_axes, out_axes = kernel_axes(model_config, target)
    key = jax.random.fold_in(rng, i)
    shape = (num_layers,) + in_axes + (r,)
    if lora_config.init == "kaiming":
      bound = 1.0 / np.sqrt(np.prod(in_axes))
      a = jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    else:
      a = jax.random.normal(key, shape, jnp.float32) / r
    b = jnp.zeros((num_layers, r) + out_axes, jnp.float32)
    layer, name = TARGET_PATHS[target]
    adapters.setdefault("layers", {}).setdefault(layer, {})[name] = {A: a, B: b}
  return adapters


# Compiled once per (model, LoRA) config.
_init_adapters_jit = jax.jit(_init_adapters, static_argnums=(0, 1))


def init_adapters(model_config: ModelConfig, lora_config: LoraConfig, rng: Array,
                  mesh: Optional[jax.sharding.Mesh] = None) -> Params:
  """Fresh float32 adapters: ``A`` by ``lora_config.init``, ``B = 0`` (see the module table).

  Args:
    model_config: the base model's config (adapter shapes come from it).
    lora_config: rank, targets and initialisation.
    rng: a PRNG key; target ``i`` (in ``TARGETS`` order) draws from ``fold_in(rng, i)``.
    mesh: if given, adapters are created in their shards (``partition`` rules: ``A`` split like
      its kernel's input axes, ``B`` like its output axes, the rank replicated).

  Returns:
    ``{"layers": {"attn"|"mlp": {"<name>_proj": {"lora_a": ..., "lora_b": ...}}}}``.
  """
  if mesh is None:
    return _init_adapters_jit(model_config, lora_config, rng)
  fn = functools.partial(_init_adapters, model_config, lora_config)
  shardings = partition.param_shardings(jax.eval_shape(fn, rng), mesh)
  return jax.jit(fn, out_shardings=shardings)(rng)


def _adapter_targets(adapters: Params) -> Tuple[str, ...]:
  layers = adapters.get("layers", {})
  return tuple(t for t, (layer, name) in TARGET_PATHS.items() if name in layers.get(layer, {}))


def check_targets(adapters: Params, lora_config: LoraConfig) -> None:
  """Raises ``ValueError`` unless ``adapters`` hold exactly ``lora_config.targets``."""
  found = _adapter_targets(adapters)
  if found != lora_config.targets:
    raise ValueError(f"adapters hold targets {found}, the LoRA config says "
                     f"{lora_config.targets}")


def attach(base: Params, adapters: Optional[Params], lora_config: LoraConfig,
           dropout_rng: Optional[Array] = None) -> Params:
  """The policy's ``params``: ``base`` with the adapter leaves next to their kernels.

  ``Transformer.apply({"params": attach(...)})`` computes, on each target projection,
  ``x W + (dropout(x) A) (B * alpha / r)``. Call it inside the differentiated function, with the
  adapters as the argument being differentiated.

  Args:
    base: the frozen model params (float or quantised kernels).
    adapters: ``init_adapters``'s tree, or ``None`` for adapters off (returns ``base``: the
      reference policy of a KL term).
    lora_config: the adapters' config (``scale``, ``dropout``, ``targets``).
    dropout_rng: a PRNG key for adapter dropout (training); ``None`` (rollout, scoring,
      evaluation) or ``lora_config.dropout == 0`` means no dropout. Each target and layer draws
      its own mask from it.

  Raises:
    ValueError: the adapters' targets differ from ``lora_config.targets``.
  """
  if adapters is None:
    return base
  check_targets(adapters, lora_config)
  nodes = {}
  for i, target in enumerate(lora_config.targets):
    path = ("layers",) + TARGET_PATHS[target]
    adapter = _get(adapters, path)
    node = dict(_get(base, path))
    node[A] = adapter[A]
    node[B] = adapter[B] * jnp.asarray(lora_config.scale, adapter[B].dtype)
    if dropout_rng is not None and lora_config.dropout > 0:
      num_layers = adapter[A].shape[0]
      keys = jax.random.split(jax.random.fold_in(dropout_rng, i), num_layers)
      node[DROPOUT_KEY] = jax.random.key_data(keys)
      node[DROPOUT_KEEP] = jnp.full((num_layers,), 1.0 - lora_config.dropout, jnp.float32)
    nodes[path] = node
  return _replace_nodes(base, nodes)


def adapter_term(x: Array, axis: Tuple[int, ...], leaves: Mapping[str, Array],
                 dtype: Any) -> Array:
  """One layer's LoRA term ``(dropout(x) . A) . B`` in ``dtype`` (``B`` already scaled).

  Args:
    x: the projection's input, e.g. ``[B, T, D]`` (``[B, T, H, Dh]`` for ``o``).
    axis: the axes of ``x`` contracted with ``A``'s leading axes.
    leaves: ``lora_a [*I, r]``, ``lora_b [r, *O]`` and, with dropout, the layer's
      ``lora_dropout_key`` and ``lora_dropout_keep`` (inverted dropout: kept inputs are divided
      by the keep probability).
    dtype: compute dtype of both matmuls.
  """
  if DROPOUT_KEY in leaves:
    keep = leaves[DROPOUT_KEEP]
    mask = jax.random.bernoulli(jax.random.wrap_key_data(leaves[DROPOUT_KEY]), keep, x.shape)
    x = jnp.where(mask, x / keep, 0.0)
  a, b = leaves[A], leaves[B]
  xa = jax.lax.dot_general(x.astype(dtype), a.astype(dtype),
                           ((axis, tuple(range(len(axis)))), ((), ())))
  return jax.lax.dot_general(xa, b.astype(dtype), (((xa.ndim - 1,), (0,)), ((), ())))


def delta(adapter: Mapping[str, Array], scale: float) -> Array:
  """``A B * scale`` of one target, shaped like its kernel ``[L, *I, *O]``, float32."""
  a = jnp.asarray(adapter[A], jnp.float32)
  b = jnp.asarray(adapter[B], jnp.float32)
  num_layers, r = a.shape[0], a.shape[-1]
  in_axes, out_axes = a.shape[1:-1], b.shape[2:]
  ab = jnp.einsum("lir,lro->lio", a.reshape(num_layers, -1, r), b.reshape(num_layers, r, -1))
  return (ab * scale).reshape((num_layers,) + in_axes + out_axes)


def merge(base: Params, adapters: Params, lora_config: LoraConfig,
          dtype: Optional[Any] = None) -> Params:
  """Plain model params with ``W + A B * alpha / r`` in each target kernel (for export).

  Args:
    base: the frozen params (float or quantised kernels; quantised ones are dequantised).
    adapters: ``init_adapters``'s tree.
    lora_config: the adapters' config.
    dtype: dtype of the merged kernels (default: each base kernel's float dtype, float32 for a
      quantised one); the sum is formed in float32.

  Returns:
    A params tree of the base's structure with array kernels, usable wherever ``init_params``'s
    output is (e.g. ``hf.export_hf``).
  """
  check_targets(adapters, lora_config)
  nodes = {}
  for target in lora_config.targets:
    path = ("layers",) + TARGET_PATHS[target]
    node = dict(_get(base, path))
    kernel = node["kernel"]
    if quant.is_quantized(kernel):
      out_dtype, kernel = dtype or jnp.float32, quant.dequantize(kernel, jnp.float32)
    else:
      out_dtype = dtype or kernel.dtype
    merged = kernel.astype(jnp.float32) + delta(_get(adapters, path), lora_config.scale)
    node["kernel"] = merged.astype(out_dtype)
    nodes[path] = node
  return _replace_nodes(dequantize_base(base), nodes)


def prepare_base(params: Params, lora_config: LoraConfig) -> Params:
  """The frozen base as ``lora_config.base_quantization`` says: unchanged for ``"none"``, else
  every projection kernel (all seven, as in QLoRA, whatever the targets) quantised blockwise by
  ``quant.quantize_params``. Embeddings, norms, biases and the LM head stay as they are."""
  if lora_config.base_quantization == "none":
    return params
  return quant.quantize_params(params, lora_config.base_quantization,
                               lora_config.quant_block_size)


def dequantize_base(params: Params, dtype: Optional[Any] = None) -> Params:
  """``params`` with every quantised kernel dequantised (float32, or ``dtype``); others as is."""
  is_q = quant.is_quantized
  return jax.tree.map(lambda x: quant.dequantize(x, dtype or jnp.float32) if is_q(x) else x,
                      params, is_leaf=is_q)


def num_params(adapters: Params) -> int:
  """Number of trainable adapter parameters."""
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(adapters)))
