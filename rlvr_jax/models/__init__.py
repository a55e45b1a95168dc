"""The policy model: a Flax transformer for the Llama 3.x, Qwen2/Qwen2.5 and Qwen3 families.

``config``/``transformer`` import only jax and flax; ``hf`` (checkpoint import/export, tokenizer)
imports ``safetensors`` and, for the tokenizer only, ``transformers``.
"""

from rlvr_jax.models.config import ModelConfig, PRESETS, preset
from rlvr_jax.models.transformer import (KVCache, Transformer, init_cache, init_params,
                                         rope_inv_freq, unembed)

__all__ = [
    "KVCache", "ModelConfig", "PRESETS", "Transformer", "init_cache", "init_params", "preset",
    "rope_inv_freq", "unembed",
]
