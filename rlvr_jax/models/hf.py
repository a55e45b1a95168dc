"""Hugging Face checkpoint import/export for the Llama 3.x, Qwen2/Qwen2.5 and Qwen3 families.

``load_hf`` reads a local HF directory (``config.json`` plus ``model.safetensors`` or sharded
``model-*.safetensors`` with ``model.safetensors.index.json``) through the safetensors numpy API,
or a llama.cpp ``.gguf`` file through the ``gguf`` package (``gguf_io``): no torch at runtime.
Every parameter must come from the checkpoint and every checkpoint tensor must be used; the only
tensors skipped are the documented ``IGNORED`` ones (rotary ``inv_freq`` buffers, and an
``lm_head.weight`` equal to the embedding when embeddings are tied).

``export_hf`` writes the reverse: ``config.json`` (read by transformers 4.51+ and 5.x) and
safetensors (sharded above ``max_shard_size``) that ``AutoModelForCausalLM.from_pretrained``
loads, optionally with the tokenizer files of another directory.

Layout conversion: an HF ``nn.Linear`` weight is ``[out, in]``; here kernels are ``[in, out]`` with
heads split out (``q_proj`` ``[D, H, Dh]``, ``o_proj`` ``[H, Dh, D]``) and layers stacked on a
leading axis (``nn.scan``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

import jax
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from rlvr_jax.models import partition
from rlvr_jax.models.config import ModelConfig

Params = Any

# HF ``architectures`` entry -> our family name.
SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
_HF_CLASS = {family: cls for cls, family in SUPPORTED_ARCHITECTURES.items()}

# Checkpoint tensors that carry no parameter: non-persistent rotary buffers some old exports saved.
IGNORED = (re.compile(r"(^|\.)rotary_emb\.inv_freq$"),)

# Config-class defaults for keys a config.json may omit (transformers saves only non-defaults).
_FAMILY_DEFAULTS = {
    "llama": dict(max_position_embeddings=2048, rms_norm_eps=1e-6),
    "qwen2": dict(max_position_embeddings=32768, rms_norm_eps=1e-6),
    "qwen3": dict(max_position_embeddings=32768, rms_norm_eps=1e-6),
}

_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"


class CheckpointError(ValueError):
  """A checkpoint directory does not match what the config says it should hold."""


def _family(hf: Mapping[str, Any]) -> str:
  archs = hf.get("architectures") or []
  for arch in archs:
    if arch in SUPPORTED_ARCHITECTURES:
      return SUPPORTED_ARCHITECTURES[arch]
  supported = ", ".join(SUPPORTED_ARCHITECTURES)
  if not archs and hf.get("model_type") in _HF_CLASS:
    return hf["model_type"]
  raise ValueError(f"unsupported architecture {archs or hf.get('model_type')!r}; "
                   f"supported: {supported}")


def _rope(hf: Mapping[str, Any]) -> Tuple[float, Optional[Dict[str, float]]]:
  """(rope_theta, llama3 scaling or None) from a v4 (``rope_theta``/``rope_scaling``) or v5
  (``rope_parameters``) config."""
  params = hf.get("rope_parameters")
  if params is not None:
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    scaling = params
  else:
    theta = hf.get("rope_theta", 10000.0)
    scaling = hf.get("rope_scaling")
  if not scaling:
    return float(theta), None
  kind = scaling.get("rope_type", scaling.get("type", "default"))
  if kind == "default":
    return float(theta), None
  if kind != "llama3":
    raise ValueError(f"rope type {kind!r} is not supported (supported: default, llama3)")
  keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
  return float(theta), {k: float(scaling[k]) for k in keys}


def config_from_hf(hf: Mapping[str, Any], *, dtype: str = "float32",
                   param_dtype: str = "float32", remat: bool = False) -> ModelConfig:
  """``ModelConfig`` from the dict of an HF ``config.json``.

  Args:
    hf: the parsed ``config.json``.
    dtype: compute dtype for the returned config.
    param_dtype: parameter dtype for the returned config.
    remat: rematerialise decoder blocks.

  Raises:
    ValueError: unsupported ``architectures`` (the message lists the supported ones), or a
      feature this model does not implement (non-SiLU activation, MLP biases, sliding-window
      attention, a rope type other than default/llama3).
  """
  family = _family(hf)
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"hidden_act {hf['hidden_act']!r} is not supported (only silu)")
  if hf.get("mlp_bias", False):
    raise ValueError("mlp_bias=True is not supported")
  if hf.get("use_sliding_window", False):
    raise ValueError("use_sliding_window=True is not supported (full attention only)")
  other_layers = set(hf.get("layer_types") or ()) - {"full_attention"}
  if other_layers:
    raise ValueError(f"layer_types {sorted(other_layers)} are not supported (full attention only)")
  defaults = _FAMILY_DEFAULTS[family]
  heads = hf["num_attention_heads"]
  theta, scaling = _rope(hf)
  bias = bool(hf.get("attention_bias", False))
  return ModelConfig(
      vocab_size=hf["vocab_size"],
      hidden_size=hf["hidden_size"],
      intermediate_size=hf["intermediate_size"],
      num_layers=hf["num_hidden_layers"],
      num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
      rope_theta=theta,
      rope_scaling=scaling,
      rms_norm_eps=hf.get("rms_norm_eps", defaults["rms_norm_eps"]),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      # Qwen2 always has q/k/v biases and no o bias; Llama/Qwen3 put attention_bias on all four.
      attention_bias=True if family == "qwen2" else bias,
      attention_out_bias=False if family == "qwen2" else bias,
      qk_norm=family == "qwen3",
      max_position_embeddings=hf.get("max_position_embeddings",
                                     defaults["max_position_embeddings"]),
      dtype=dtype,
      param_dtype=param_dtype,
      remat=remat,
      architecture=family,
  )


def config_to_hf(config: ModelConfig, *, torch_dtype: str = "float32") -> Dict[str, Any]:
  """The HF ``config.json`` dict of ``config``.

  RoPE is written both the transformers 4.x way (``rope_theta``, ``rope_scaling``) and the 5.x way
  (``rope_parameters``), so either version reads it.

  Raises:
    ValueError: the config has a feature the HF class of its family cannot express (an output
      bias in Qwen2; q/k norm outside Qwen3, or Qwen3 without it).
  """
  family = config.architecture
  if family == "qwen2" and config.attention_out_bias:
    raise ValueError("HF Qwen2 has no o_proj bias; cannot export attention_out_bias=True")
  if config.qk_norm != (family == "qwen3"):
    raise ValueError(f"qk_norm={config.qk_norm} cannot be expressed by HF {_HF_CLASS[family]}")
  scaling = None
  rope_parameters = {"rope_type": "default", "rope_theta": config.rope_theta}
  if config.rope_scaling is not None:
    scaling = {"rope_type": "llama3", **dict(config.rope_scaling)}
    scaling["original_max_position_embeddings"] = int(scaling["original_max_position_embeddings"])
    rope_parameters = {**scaling, "rope_theta": config.rope_theta}
  hf = {
      "architectures": [_HF_CLASS[family]],
      "model_type": family,
      "vocab_size": config.vocab_size,
      "hidden_size": config.hidden_size,
      "intermediate_size": config.intermediate_size,
      "num_hidden_layers": config.num_layers,
      "num_attention_heads": config.num_heads,
      "num_key_value_heads": config.num_kv_heads,
      "head_dim": config.head_dim,
      "hidden_act": "silu",
      "max_position_embeddings": config.max_position_embeddings,
      "rms_norm_eps": config.rms_norm_eps,
      "rope_theta": config.rope_theta,
      "rope_scaling": scaling,
      "rope_parameters": rope_parameters,
      "tie_word_embeddings": config.tie_word_embeddings,
      # transformers 4.x reads torch_dtype, 5.x reads dtype.
      "torch_dtype": torch_dtype,
      "dtype": torch_dtype,
      "use_cache": True,
  }
  if family == "qwen2":
    hf.update(use_sliding_window=False, sliding_window=None)
  else:
    # HF puts this one flag on q/k/v and o; a missing half is exported as zeros (exact).
    hf["attention_bias"] = config.attention_bias or config.attention_out_bias
    hf["mlp_bias"] = False
  if family == "qwen3":
    hf.update(use_sliding_window=False, sliding_window=None)
  return hf


def _layer_specs(config: ModelConfig):
  """(hf suffix, our path inside ``layers``, to-ours transform, from-ours transform, hf shape)."""
  d, f = config.hidden_size, config.intermediate_size
  h, kv, dh = config.num_heads, config.num_kv_heads, config.head_dim
  specs = []

  def proj(name, heads, bias):
    specs.append((f"self_attn.{name}.weight", ("attn", name, "kernel"),
                  lambda w, n=heads: w.T.reshape(d, n, dh),
                  lambda k, n=heads: k.reshape(d, n * dh).T, (heads * dh, d)))
    if bias:
      specs.append((f"self_attn.{name}.bias", ("attn", name, "bias"),
                    lambda b, n=heads: b.reshape(n, dh), lambda b, n=heads: b.reshape(n * dh),
                    (heads * dh,)))

  proj("q_proj", h, config.attention_bias)
  proj("k_proj", kv, config.attention_bias)
  proj("v_proj", kv, config.attention_bias)
  specs.append(("self_attn.o_proj.weight", ("attn", "o_proj", "kernel"),
                lambda w: w.T.reshape(h, dh, d), lambda k: k.reshape(h * dh, d).T, (d, h * dh)))
  if config.attention_out_bias:
    specs.append(("self_attn.o_proj.bias", ("attn", "o_proj", "bias"), _same, _same, (d,)))
  if config.qk_norm:
    for name in ("q_norm", "k_norm"):
      specs.append((f"self_attn.{name}.weight", ("attn", name, "scale"), _same, _same, (dh,)))
  specs.append(("input_layernorm.weight", ("input_norm", "scale"), _same, _same, (d,)))
  specs.append(("post_attention_layernorm.weight", ("post_attn_norm", "scale"), _same, _same,
                (d,)))
  for name, shape in (("gate_proj", (f, d)), ("up_proj", (f, d)), ("down_proj", (d, f))):
    specs.append((f"mlp.{name}.weight", ("mlp", name, "kernel"), _transpose, _transpose, shape))
  return specs


def _same(x):
  return x


def _transpose(x):
  return x.T


def _global_specs(config: ModelConfig):
  """(hf name, our path, to-ours, from-ours, hf shape) of the non-layer parameters."""
  v, d = config.vocab_size, config.hidden_size
  specs = [("model.embed_tokens.weight", ("embed", "embedding"), _same, _same, (v, d)),
           ("model.norm.weight", ("final_norm", "scale"), _same, _same, (d,))]
  if not config.tie_word_embeddings:
    specs.append(("lm_head.weight", ("lm_head", "kernel"), _transpose, _transpose, (v, d)))
  return specs


def _set(tree: Dict[str, Any], path: Tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: Mapping[str, Any], path: Tuple[str, ...]):
  for key in path:
    tree = tree[key]
  return tree


class _Checkpoint:
  """Lazy access to the tensors of a local safetensors checkpoint (single file or sharded)."""

  def __init__(self, path: str):
    index_path = os.path.join(path, _INDEX)
    single_path = os.path.join(path, _SINGLE)
    if os.path.exists(index_path):
      with open(index_path, encoding="utf-8") as f:
        weight_map = json.load(f)["weight_map"]
    elif os.path.exists(single_path):
      weight_map = None
    else:
      present = sorted(os.listdir(path))
      raise CheckpointError(
          f"no {_SINGLE} or {_INDEX} in {path} (files: {present}); only safetensors checkpoints "
          "are supported")
    files = sorted(set(weight_map.values())) if weight_map else [_SINGLE]
    self._handles = {}
    for name in files:
      file_path = os.path.join(path, name)
      if not os.path.exists(file_path):
        raise CheckpointError(f"weight file {name} listed in {_INDEX} is missing from {path}")
      self._handles[name] = safe_open(file_path, framework="np")
    self._where = {}
    for name, handle in self._handles.items():
      for key in handle.keys():
        self._where[key] = name
    if weight_map:
      for key, name in weight_map.items():
        if self._where.get(key) != name:
          raise CheckpointError(f"tensor {key} is listed in {_INDEX} under {name} but is not "
                                "in that file")

  def keys(self):
    return self._where.keys()

  def shape(self, key: str) -> Tuple[int, ...]:
    return tuple(self._handles[self._where[key]].get_slice(key).get_shape())

  def get(self, key: str) -> np.ndarray:
    return self._handles[self._where[key]].get_tensor(key)


def read_config(path: str) -> Dict[str, Any]:
  """The HF ``config.json`` dict of a model directory, or its equivalent for a ``.gguf`` file.

  Raises:
    FileNotFoundError: ``path`` is neither a ``.gguf`` file nor a directory with ``config.json``.
  """
  from rlvr_jax.models import gguf_io  # pylint: disable=g-import-not-at-top
  if gguf_io.is_gguf(path):
    return gguf_io.hf_config(path)
  config_path = os.path.join(path, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"no config.json in {path} (and it is not a .gguf file)")
  with open(config_path, encoding="utf-8") as f:
    return json.load(f)


def load_hf(path: str, *, dtype: str = "float32", param_dtype: str = "float32",
            remat: bool = False, mesh: Optional[jax.sharding.Mesh] = None,
            **runtime: Any) -> Tuple[ModelConfig, Params]:
  """Loads a local HF checkpoint directory into ``(ModelConfig, params)``.

  Args:
    path: directory with ``config.json`` and ``model.safetensors`` or a sharded set with
      ``model.safetensors.index.json``; or a ``.gguf`` file (llama.cpp's format, possibly
      quantised: dequantised, then cast to ``param_dtype``; see :mod:`rlvr_jax.models.gguf_io`).
    dtype: compute dtype of the returned config.
    param_dtype: dtype the parameters are cast to.
    remat: rematerialise decoder blocks in the returned config.
    mesh: if given, each parameter goes straight to its sharding from
      ``partition.param_partition_specs`` (no full copy on one device); otherwise parameters are
      placed on the default device.
    **runtime: other ``ModelConfig`` fields that do not change the checkpoint's function
      (``remat_policy``, ``attention``, ``scan_unroll``).

  Returns:
    The config and the ``params`` collection for ``Transformer(config).apply({"params": ...})``.

  Raises:
    FileNotFoundError: no ``config.json`` (and ``path`` is not a ``.gguf`` file).
    ValueError: unsupported architecture (listing the supported ones) or feature.
    CheckpointError: a weight file is missing, a tensor is missing or has the wrong shape (the
      message names it), or the checkpoint holds tensors the model does not use.
  """
  hf_dict = read_config(path)
  config = config_from_hf(hf_dict, dtype=dtype, param_dtype=param_dtype, remat=remat)
  unknown = set(runtime) - {"remat_policy", "attention", "scan_unroll"}
  if unknown:
    raise TypeError(f"load_hf got unexpected runtime options {sorted(unknown)}")
  config = config.replace(**runtime)
  from rlvr_jax.models import gguf_io  # pylint: disable=g-import-not-at-top
  if gguf_io.is_gguf(path):
    ckpt = gguf_io.GGUFCheckpoint(path, hf_dict)
  else:
    ckpt = _Checkpoint(path)
  target = np.dtype(config.params_dtype)
  used = set()

  def read(name, hf_shape):
    if name not in ckpt.keys():
      raise CheckpointError(f"tensor {name} is missing from the checkpoint in {path}")
    if ckpt.shape(name) != tuple(hf_shape):
      raise CheckpointError(f"tensor {name} has shape {ckpt.shape(name)}, the config expects "
                            f"{tuple(hf_shape)}")
    used.add(name)
    return ckpt.get(name)

  params: Dict[str, Any] = {}
  for name, ours, to_ours, _, shape in _global_specs(config):
    _set(params, ours, np.ascontiguousarray(to_ours(read(name, shape)).astype(target)))
  for suffix, ours, to_ours, _, shape in _layer_specs(config):
    stacked = np.stack([to_ours(read(f"model.layers.{i}.{suffix}", shape)).astype(target)
                        for i in range(config.num_layers)])
    _set(params, ("layers",) + ours, stacked)

  unused = sorted(k for k in ckpt.keys()
                  if k not in used and not any(p.search(k) for p in IGNORED))
  if config.tie_word_embeddings and "lm_head.weight" in unused:
    # Some exports store the tied head explicitly; accept it only if it is the embedding.
    if not np.array_equal(ckpt.get("lm_head.weight"), ckpt.get("model.embed_tokens.weight")):
      raise CheckpointError("config ties word embeddings but lm_head.weight differs from "
                            "model.embed_tokens.weight")
    unused.remove("lm_head.weight")
  if unused:
    shown = ", ".join(unused[:10]) + (f" and {len(unused) - 10} more" if len(unused) > 10 else "")
    raise CheckpointError(f"checkpoint tensors not used by the {config.architecture} model: "
                          f"{shown}")

  if mesh is not None:
    return config, partition.shard_params(params, mesh)
  return config, jax.device_put(params)


def _hf_tensors(params: Params, config: ModelConfig, dtype: np.dtype
                ) -> Iterator[Tuple[str, np.ndarray]]:
  """(HF name, array) pairs of ``params`` in HF layout, in checkpoint order."""

  def host(path):
    return np.asarray(jax.device_get(_get(params, path))).astype(dtype)

  # HF Llama/Qwen3 have one attention_bias flag for q/k/v/o and Qwen2 always has q/k/v biases
  # (never o): a bias the HF class has but this model lacks is exported as zeros, which is exact.
  if config.architecture == "qwen2":
    hf_qkv_bias, hf_out_bias = True, False
  else:
    hf_qkv_bias = hf_out_bias = config.attention_bias or config.attention_out_bias
  full = config.replace(attention_bias=hf_qkv_bias, attention_out_bias=hf_out_bias)
  ours_config_paths = {ours for _, ours, _, _, _ in _layer_specs(config)}
  yield "model.embed_tokens.weight", host(("embed", "embedding"))
  layer_specs = _layer_specs(full)
  # Absent entries are the zero biases of the HF layout.
  layers = {ours: host(("layers",) + ours) if ours in ours_config_paths else None
            for _, ours, _, _, _ in layer_specs}
  for i in range(config.num_layers):
    for suffix, ours, _, from_ours, shape in layer_specs:
      value = layers[ours]
      tensor = np.zeros(shape, dtype) if value is None else from_ours(value[i])
      yield f"model.layers.{i}.{suffix}", np.ascontiguousarray(tensor)
  yield "model.norm.weight", host(("final_norm", "scale"))
  if not config.tie_word_embeddings:
    yield "lm_head.weight", np.ascontiguousarray(host(("lm_head", "kernel")).T)


def _parse_size(size: Union[int, str]) -> int:
  if isinstance(size, int):
    return size
  match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B)\s*", size.upper())
  if not match:
    raise ValueError(f"max_shard_size must be bytes or like '5GB', got {size!r}")
  scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}[match.group(2)]
  return int(float(match.group(1)) * scale)


def export_hf(params: Params, config: ModelConfig, out_dir: str, *,
              tokenizer_dir: Optional[str] = None, dtype: Optional[str] = None,
              max_shard_size: Union[int, str] = "5GB") -> None:
  """Writes ``params`` as an HF checkpoint directory that ``AutoModelForCausalLM`` loads.

  Args:
    params: the ``params`` collection (any sharding; gathered to the host tensor by tensor).
    config: its config.
    out_dir: created if needed; existing checkpoint files of the same names are overwritten.
    tokenizer_dir: if given (a directory or a ``.gguf`` file), its tokenizer (with chat
      template) is saved alongside via ``transformers.AutoTokenizer``, and a directory's
      ``generation_config.json`` is copied.
    dtype: dtype of the written tensors (default: ``config.param_dtype``).
    max_shard_size: bytes (int) or a string like ``"5GB"``; above it, tensors are split into
      ``model-0000k-of-0000n.safetensors`` files with ``model.safetensors.index.json``.
  """
  limit = _parse_size(max_shard_size)
  out_dtype = np.dtype(dtype or config.param_dtype)
  os.makedirs(out_dir, exist_ok=True)
  hf_config = config_to_hf(config, torch_dtype=str(out_dtype))
  shards, current, current_size, total = [], {}, 0, 0
  for name, tensor in _hf_tensors(params, config, out_dtype):
    if current and current_size + tensor.nbytes > limit:
      shards.append(current)
      current, current_size = {}, 0
    current[name] = tensor
    current_size += tensor.nbytes
    total += tensor.nbytes
  shards.append(current)
  metadata = {"format": "pt"}  # transformers refuses safetensors files without this format tag
  for stale in (_SINGLE, _INDEX):
    if os.path.exists(os.path.join(out_dir, stale)):
      os.remove(os.path.join(out_dir, stale))
  if len(shards) == 1:
    save_file(shards[0], os.path.join(out_dir, _SINGLE), metadata=metadata)
  else:
    weight_map = {}
    for k, shard in enumerate(shards):
      name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
      save_file(shard, os.path.join(out_dir, name), metadata=metadata)
      weight_map.update({key: name for key in shard})
    with open(os.path.join(out_dir, _INDEX), "w", encoding="utf-8") as f:
      json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
  with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
    json.dump(hf_config, f, indent=2)
  if tokenizer_dir is not None:
    load_tokenizer(tokenizer_dir).save_pretrained(out_dir)
    generation = os.path.join(tokenizer_dir, "generation_config.json")
    if os.path.isdir(tokenizer_dir) and os.path.exists(generation):
      shutil.copy(generation, os.path.join(out_dir, "generation_config.json"))


def load_tokenizer(path: str):
  """The ``transformers.AutoTokenizer`` of a local directory or ``.gguf`` file (chat template
  included; a GGUF's through :func:`rlvr_jax.models.gguf_io.load_tokenizer`).

  transformers is imported here, so the model code itself does not depend on it.
  """
  from rlvr_jax.models import gguf_io  # pylint: disable=g-import-not-at-top
  if gguf_io.is_gguf(path):
    return gguf_io.load_tokenizer(path)
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  return AutoTokenizer.from_pretrained(path, local_files_only=True)
