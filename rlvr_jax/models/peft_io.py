"""LoRA adapters in Hugging Face peft's format, and merged export as a plain HF checkpoint.

A peft LoRA directory holds ``adapter_config.json`` (``peft_type: "LORA"``, ``r``,
``lora_alpha``, ``lora_dropout``, ``target_modules``, ...) and ``adapter_model.safetensors`` with,
for layer ``i`` and module ``m`` of the Llama/Qwen2/Qwen3 models of transformers,

    base_model.model.model.layers.{i}.{self_attn|mlp}.{m}.lora_A.weight   [r, in]
    base_model.model.model.layers.{i}.{self_attn|mlp}.{m}.lora_B.weight   [out, r]

peft computes ``base(x) + lora_B(lora_A(dropout(x))) * lora_alpha / r`` on ``nn.Linear`` weights
``[out, in]``, the transpose of our ``A [I, r]``, ``B [r, O]`` (heads flattened), so the export
is a transpose and reshape per layer; ``B`` is stored unscaled in both.

Only what ``rlvr_jax.models.lora`` computes is read or written: plain LoRA on q/k/v/o and
gate/up/down projections of every layer, no bias, no DoRA/rsLoRA, one rank and alpha. An adapter
directory using anything else is refused with a message rather than silently misread.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from rlvr_jax.models import hf
from rlvr_jax.models import lora
from rlvr_jax.models.config import ModelConfig

Params = Any
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"

# Our target -> (transformers sub-module, module name).
_HF_MODULES = {
    "q": ("self_attn", "q_proj"), "k": ("self_attn", "k_proj"), "v": ("self_attn", "v_proj"),
    "o": ("self_attn", "o_proj"), "gate": ("mlp", "gate_proj"), "up": ("mlp", "up_proj"),
    "down": ("mlp", "down_proj"),
}
_FROM_HF_NAME = {name: target for target, (_, name) in _HF_MODULES.items()}
_PREFIX = "base_model.model.model.layers"

# peft options that change the computation and that this module does not implement, with the
# value that means "off".
_UNSUPPORTED_OFF = {
    "use_dora": False, "use_rslora": False, "bias": "none", "fan_in_fan_out": False,
    "modules_to_save": None, "layers_to_transform": None, "rank_pattern": {},
    "alpha_pattern": {}, "layer_replication": None, "trainable_token_indices": None,
    "target_parameters": None, "exclude_modules": None, "use_qalora": False,
    "lora_bias": False,
}


def _key(layer: int, target: str, matrix: str) -> str:
  block, name = _HF_MODULES[target]
  return f"{_PREFIX}.{layer}.{block}.{name}.lora_{matrix}.weight"


def export_peft(adapters: Params, model_config: ModelConfig, lora_config: lora.LoraConfig,
                out_dir: str, *, base_model_name_or_path: Optional[str] = None,
                dtype: str = "float32") -> None:
  """Writes ``adapters`` as a peft LoRA directory that ``peft.PeftModel.from_pretrained`` loads.

  Args:
    adapters: ``lora.init_adapters``'s tree (any sharding; gathered to the host).
    model_config: the base model's config.
    lora_config: the adapters' config (``rank``, ``alpha``, ``dropout``, ``targets``).
    out_dir: created if needed; the two adapter files in it are overwritten.
    base_model_name_or_path: recorded in ``adapter_config.json`` (peft loads the base from it
      when ``AutoPeftModelForCausalLM`` is used).
    dtype: dtype of the written tensors.
  """
  lora.check_targets(adapters, lora_config)
  tensors: Dict[str, np.ndarray] = {}
  r = lora_config.rank
  for target in lora_config.targets:
    layer, name = lora.TARGET_PATHS[target]
    adapter = adapters["layers"][layer][name]
    a = np.asarray(jax.device_get(adapter[lora.A]), np.float32)
    b = np.asarray(jax.device_get(adapter[lora.B]), np.float32)
    for i in range(model_config.num_layers):
      tensors[_key(i, target, "A")] = a[i].reshape(-1, r).T.astype(dtype)
      tensors[_key(i, target, "B")] = b[i].reshape(r, -1).T.astype(dtype)
  config = {
      "peft_type": "LORA",
      "task_type": "CAUSAL_LM",
      "base_model_name_or_path": base_model_name_or_path,
      "r": lora_config.rank,
      "lora_alpha": lora_config.alpha,
      "lora_dropout": lora_config.dropout,
      "target_modules": sorted(_HF_MODULES[t][1] for t in lora_config.targets),
      "init_lora_weights": True if lora_config.init == "kaiming" else "gaussian",
      "inference_mode": True,
      **_UNSUPPORTED_OFF,
  }
  os.makedirs(out_dir, exist_ok=True)
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
            os.path.join(out_dir, WEIGHTS_NAME), metadata={"format": "pt"})
  with open(os.path.join(out_dir, CONFIG_NAME), "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2)


def _lora_config_from_peft(cfg: Dict[str, Any]) -> lora.LoraConfig:
  if cfg.get("peft_type", "LORA") != "LORA":
    raise ValueError(f"not a LoRA adapter: peft_type {cfg.get('peft_type')!r}")
  for key, off in _UNSUPPORTED_OFF.items():
    value = cfg.get(key, off)
    # An empty list/dict/None means "off" as much as the default does.
    if value != off and (value or off == "none"):
      raise ValueError(f"peft option {key}={value!r} is not supported (only {off!r})")
  modules = cfg["target_modules"]
  if isinstance(modules, str):
    raise ValueError(f"target_modules as a regex ({modules!r}) is not supported; list the "
                     "module names")
  unknown = sorted(set(modules) - set(_FROM_HF_NAME))
  if unknown:
    raise ValueError(f"target_modules {unknown} are not supported (supported: "
                     f"{sorted(_FROM_HF_NAME)})")
  init = cfg.get("init_lora_weights", True)
  return lora.LoraConfig(rank=int(cfg["r"]), alpha=float(cfg["lora_alpha"]),
                         dropout=float(cfg.get("lora_dropout", 0.0)),
                         targets=tuple(_FROM_HF_NAME[m] for m in modules),
                         init="gaussian" if init == "gaussian" else "kaiming")


def import_peft(path: str, model_config: ModelConfig) -> Tuple[Params, lora.LoraConfig]:
  """Reads a peft LoRA directory into ``(adapters, lora_config)`` for ``model_config``'s model.

  Args:
    path: a directory with ``adapter_config.json`` and ``adapter_model.safetensors``.
    model_config: the base model's config (shapes are checked against it).

  Returns:
    float32 adapters (``lora.init_adapters``'s layout) and their config.

  Raises:
    ValueError: a peft option or target module this library does not implement, a missing or
      mis-shaped tensor, or tensors the config does not account for.
  """
  with open(os.path.join(path, CONFIG_NAME), encoding="utf-8") as f:
    lora_config = _lora_config_from_peft(json.load(f))
  r = lora_config.rank
  with safe_open(os.path.join(path, WEIGHTS_NAME), framework="np") as f:
    # Files saved from a live PeftModel's state dict may keep the adapter name (".default").
    stored = {k.replace(".default.weight", ".weight"): k for k in f.keys()}
    used = set()
    adapters: Dict[str, Any] = {}
    for target in lora_config.targets:
      in_axes, out_axes = lora.kernel_axes(model_config, target)
      expected = {"A": (r, int(np.prod(in_axes))), "B": (int(np.prod(out_axes)), r)}
      per_layer = {"A": [], "B": []}
      for i in range(model_config.num_layers):
        for matrix, shape in expected.items():
          key = _key(i, target, matrix)
          if key not in stored:
            raise ValueError(f"tensor {key} is missing from {path}")
          value = f.get_tensor(stored[key])
          if value.shape != shape:
            raise ValueError(f"tensor {key} has shape {value.shape}, expected {shape}")
          used.add(key)
          per_layer[matrix].append(value.astype(np.float32))
      a = np.stack([x.T for x in per_layer["A"]]).reshape((-1,) + in_axes + (r,))
      b = np.stack([x.T for x in per_layer["B"]]).reshape((-1, r) + out_axes)
      layer, name = lora.TARGET_PATHS[target]
      adapters.setdefault("layers", {}).setdefault(layer, {})[name] = {
          lora.A: jnp.asarray(a), lora.B: jnp.asarray(b)}
  unused = sorted(set(stored) - used)
  if unused:
    raise ValueError(f"adapter tensors not used: {unused[:5]}{' ...' if len(unused) > 5 else ''}")
  return adapters, lora_config


def export_merged(base: Params, adapters: Params, model_config: ModelConfig,
                  lora_config: lora.LoraConfig, out_dir: str, **export_kwargs: Any) -> None:
  """Writes ``base`` with the adapters merged (``W + A B * alpha / r``) as a plain HF checkpoint.

  The sum is formed in float32 (a quantised base is dequantised first) and written in
  ``model_config.param_dtype`` unless ``dtype=...`` is given. ``export_kwargs`` go to
  ``hf.export_hf`` (``tokenizer_dir``, ``dtype``, ``max_shard_size``).
  """
  merged = lora.merge(base, adapters, lora_config)
  hf.export_hf(merged, model_config, out_dir, **export_kwargs)
