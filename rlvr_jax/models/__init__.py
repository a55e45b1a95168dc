"""The policy model: a Flax transformer for the Llama 3.x, Qwen2/Qwen2.5 and Qwen3 families.

``config``, ``transformer`` and ``partition`` import only jax and flax; ``hf`` (checkpoint
import/export) adds ``safetensors``, and imports ``transformers`` only inside ``load_tokenizer``
and ``export_hf(tokenizer_dir=...)``.
"""

from rlvr_jax.models import hf
from rlvr_jax.models.config import ModelConfig, PRESETS, preset
from rlvr_jax.models.partition import param_partition_specs, param_shardings, shard_params
from rlvr_jax.models.transformer import (KVCache, Transformer, init_cache, init_params,
                                         rope_inv_freq, unembed)

__all__ = [
    "KVCache", "ModelConfig", "PRESETS", "Transformer", "hf", "init_cache", "init_params",
    "param_partition_specs", "param_shardings", "preset", "rope_inv_freq", "shard_params",
    "unembed",
]
