"""Model configuration for the decoder-only policy (Llama 3.x, Qwen2/Qwen2.5, Qwen3 families).

``ModelConfig`` is a frozen, hashable dataclass, so it can be a static argument of ``jax.jit``
and a field of a Flax module. ``preset`` returns the shapes of a few published checkpoints (for
random-init experiments and benchmarks; real weights come from ``rlvr_jax.models.hf.load_hf``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import jax.numpy as jnp

ARCHITECTURES = ("llama", "qwen2", "qwen3")
_DTYPES = ("float32", "bfloat16", "float16")
ATTENTION_KINDS = ("einsum", "flash")
REMAT_POLICIES = ("nothing", "dots")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and numerics of a decoder-only transformer.

  Attributes:
    vocab_size: number of token embeddings ``V``.
    hidden_size: residual width ``D``.
    intermediate_size: SwiGLU hidden width ``F``.
    num_layers: number of decoder blocks ``L``.
    num_heads: query heads ``H``.
    num_kv_heads: key/value heads ``KV`` (grouped-query attention; ``H % KV == 0``).
    head_dim: per-head width ``Dh`` (need not equal ``D / H``, e.g. Qwen3).
    rope_theta: RoPE base.
    rope_scaling: ``None`` or a sorted tuple of ``(key, value)`` pairs for the llama3 rule, with
      keys ``factor``, ``low_freq_factor``, ``high_freq_factor``,
      ``original_max_position_embeddings`` (a tuple, not a dict, so the config stays hashable).
    rms_norm_eps: epsilon inside the RMSNorm square root.
    tie_word_embeddings: the LM head reuses the token embedding matrix.
    attention_bias: q/k/v projections have biases (Qwen2 family; Llama/Qwen3 ``attention_bias``).
    attention_out_bias: the output projection has a bias (Llama/Qwen3 ``attention_bias=True``;
      Qwen2 never has one).
    qk_norm: RMSNorm over ``head_dim`` on queries and keys before RoPE (Qwen3).
    max_position_embeddings: the context length the checkpoint was configured for (informative:
      RoPE itself accepts any position).
    dtype: compute dtype of activations and matmul inputs (``float32``/``bfloat16``/``float16``).
      Attention scores, softmax, RMSNorm statistics and logits are always float32.
    param_dtype: storage dtype of parameters.
    remat: rematerialise each decoder block in the backward pass (``nn.remat``).
    remat_policy: what a rematerialised block keeps from its forward pass: ``"nothing"`` (recompute
      the whole block) or ``"dots"`` (keep the matmul outputs,
      ``jax.checkpoint_policies.dots_with_no_batch_dims_saveable``; recompute the elementwise ops).
    attention: the uncached (training/scoring) attention kernel. ``"einsum"``: explicit scores
      under any mask, float32 softmax, portable. ``"flash"``: ``jax.nn.dot_product_attention``,
      which is cuDNN's fused flash attention on a GPU in bf16/fp16 (never materialises the
      ``[B, H, T, T]`` scores) and XLA elsewhere; it needs each row's real tokens contiguous (left
      and/or right padding only, as every batch rlvr_jax builds is). The cached path (generation)
      always uses ``"einsum"``.
    scan_unroll: decoder blocks per iteration of the layer loop (``nn.scan``'s ``unroll``); more
      gives XLA room to overlap and fuse across layers at the cost of compile time.
    architecture: ``"llama"``, ``"qwen2"`` or ``"qwen3"``: the HF family used for import/export.
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rope_scaling: Optional[Tuple[Tuple[str, float], ...]] = None
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = False
  attention_bias: bool = False
  attention_out_bias: bool = False
  qk_norm: bool = False
  max_position_embeddings: int = 4096
  dtype: str = "float32"
  param_dtype: str = "float32"
  remat: bool = False
  remat_policy: str = "nothing"
  attention: str = "einsum"
  scan_unroll: int = 1
  architecture: str = "llama"

  def __post_init__(self):
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy must be one of {REMAT_POLICIES}, got {self.remat_policy!r}")
    if self.attention not in ATTENTION_KINDS:
      raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {self.attention!r}")
    for name in ("dtype", "param_dtype"):
      if getattr(self, name) not in _DTYPES:
        raise ValueError(f"{name} must be one of {_DTYPES}, got {getattr(self, name)!r}")
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                 "num_kv_heads", "head_dim", "scan_unroll"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
    if self.head_dim % 2:
      raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}")
    if self.rope_scaling is not None:
      # Normalise a dict (convenient to write) into the hashable sorted-tuple form.
      items = dict(self.rope_scaling)
      required = {"factor", "low_freq_factor", "high_freq_factor",
                  "original_max_position_embeddings"}
      if set(items) != required:
        raise ValueError(f"rope_scaling (llama3 rule) needs exactly the keys {sorted(required)}, "
                         f"got {sorted(items)}")
      if items["high_freq_factor"] <= items["low_freq_factor"]:
        raise ValueError("rope_scaling needs high_freq_factor > low_freq_factor")
      object.__setattr__(self, "rope_scaling",
                         tuple(sorted((k, float(v)) for k, v in items.items())))

  @property
  def compute_dtype(self) -> jnp.dtype:
    """``dtype`` as a numpy dtype."""
    return jnp.dtype(self.dtype)

  @property
  def params_dtype(self) -> jnp.dtype:
    """``param_dtype`` as a numpy dtype."""
    return jnp.dtype(self.param_dtype)

  def replace(self, **changes) -> "ModelConfig":
    """A copy with some fields changed (e.g. ``config.replace(dtype="bfloat16", remat=True)``)."""
    return dataclasses.replace(self, **changes)


_PRESETS = {
    # For tests, demos and notebooks: runs in milliseconds on a CPU.
    "tiny": dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
                 num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=10000.0,
                 rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=2048,
                 architecture="llama"),
    # Shapes below follow the published config.json of each checkpoint.
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         attention_bias=True, max_position_embeddings=32768,
                         architecture="qwen2"),
    "qwen2.5-1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                         num_layers=28, num_heads=12, num_kv_heads=2, head_dim=128,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         attention_bias=True, max_position_embeddings=32768,
                         architecture="qwen2"),
    "llama3.2-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                        num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
                        rope_theta=500000.0,
                        rope_scaling={"factor": 32.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 8192},
                        rms_norm_eps=1e-5, tie_word_embeddings=True,
                        max_position_embeddings=131072, architecture="llama"),
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                         num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         max_position_embeddings=8192, architecture="llama"),
    "qwen3-0.6b": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                       num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
                       rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       qk_norm=True, max_position_embeddings=40960, architecture="qwen3"),
    "qwen3-4b": dict(vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                     num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128,
                     rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                     qk_norm=True, max_position_embeddings=40960, architecture="qwen3"),
}

PRESETS = tuple(_PRESETS)


def preset(name: str, **overrides) -> ModelConfig:
  """The ``ModelConfig`` of a named preset, with optional field overrides.

  Args:
    name: one of ``PRESETS``: ``"tiny"``, ``"qwen2.5-0.5b"``, ``"qwen2.5-1.5b"``,
      ``"llama3.2-1b"``, ``"qwen3-0.6b"``, ``"qwen3-4b"``.
    **overrides: fields to change, e.g. ``dtype="bfloat16"``.

  Returns:
    The config (shapes only; parameters come from ``init_params`` or ``load_hf``).
  """
  if name not in _PRESETS:
    raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
  return ModelConfig(**{**_PRESETS[name], **overrides})
