"""GGUF import: llama.cpp's single-file checkpoints of the Llama, Qwen2 and Qwen3 families.

A ``.gguf`` file holds the model's hyperparameters, its tokenizer (vocabulary, merges, special
tokens, chat template) and its tensors, often block-quantised (Q4_0, Q4_1, Q8_0, K-quants).
``hf.load_hf`` accepts such a file wherever it accepts an HF directory: this module turns the
file's metadata into the equivalent HF ``config.json`` dict (:func:`hf_config`), and its tensors
into HF-named float arrays (:class:`GGUFCheckpoint`, dequantised with the ``gguf`` package's numpy
kernels, then cast to the model's dtype by the loader), so one code path checks and converts both.
Quantisation error stays: a Q4 file gives the Q4 model's function, in full precision.

llama.cpp stores a Llama's ``q_proj``/``k_proj`` rows permuted (its rotary embedding pairs
adjacent dimensions; HF pairs the two halves of a head); :func:`unpermute_qk` undoes it, as
transformers' own GGUF loader does. Qwen2/Qwen3 files are stored unpermuted.

``python -m rlvr_jax.models.gguf_io model.gguf out_dir`` writes the file as an HF directory
(safetensors, ``config.json``, tokenizer with chat template), for tools that want one.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, Tuple

import numpy as np

# GGUF ``general.architecture`` -> (our family, HF class).
ARCHITECTURES = {
    "llama": ("llama", "LlamaForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
}

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_LAYER = re.compile(r"^blk\.(\d+)\.(.+)$")


def is_gguf(path: str) -> bool:
  """Whether ``path`` names a GGUF file (by its ``.gguf`` suffix)."""
  return str(path).lower().endswith(".gguf") and os.path.isfile(path)


def _reader(path: str):
  try:
    import gguf  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - gguf is a core dependency
    raise ImportError("reading a .gguf file needs the `gguf` package (pip install gguf)") from e
  return gguf.GGUFReader(path)


def metadata(reader) -> Dict[str, Any]:
  """The scalar and string metadata of a ``gguf.GGUFReader`` (long arrays such as the vocabulary
  are left out)."""
  out = {}
  for key, field in reader.fields.items():
    if len(field.data) > 16:
      continue
    try:
      out[key] = field.contents()
    except Exception:  # pylint: disable=broad-except
      continue
  return out


def hf_name(name: str) -> str:
  """The HF tensor name of a llama.cpp tensor name (unknown names are returned unchanged, so the
  loader's unused-tensor check names them)."""
  if name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[name]
  match = _LAYER.match(name)
  if match and match.group(2) in _LAYER_NAMES:
    return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"
  return name


def unpermute_qk(weight: np.ndarray, num_heads: int) -> np.ndarray:
  """Undoes llama.cpp's Llama q/k row permutation (``convert_hf_to_gguf.py``'s ``permute``).

  Within each head of ``2 * half`` rows, llama.cpp stores row ``2 * i + j`` what HF stores at row
  ``j * half + i``; this maps the stored rows back. Works on weights ``[H * Dh, D]`` and biases.
  """
  half = weight.shape[0] // num_heads // 2
  w = weight.reshape(num_heads, half, 2, *weight.shape[1:])
  return w.swapaxes(1, 2).reshape(weight.shape)


def hf_config(path: str) -> Dict[str, Any]:
  """The HF ``config.json`` dict equivalent to a GGUF file's metadata.

  Raises:
    ValueError: an architecture other than llama/qwen2/qwen3 (the message lists them), or a
      Llama 3 file whose rope scaling is stored only as a ``rope_freqs`` tensor.
  """
  reader = _reader(path)
  meta = metadata(reader)
  arch = meta.get("general.architecture")
  if arch not in ARCHITECTURES:
    raise ValueError(f"GGUF architecture {arch!r} is not supported; supported: "
                     f"{', '.join(ARCHITECTURES)}")
  family, hf_class = ARCHITECTURES[arch]
  names = {t.name for t in reader.tensors}
  if "rope_freqs.weight" in names:
    raise ValueError(f"{path} stores Llama 3 rope scaling as a rope_freqs tensor, whose "
                     "parameters this loader cannot recover; load the safetensors directory")

  def get(key, default=None):
    return meta.get(f"{arch}.{key}", default)

  heads = int(get("attention.head_count"))
  hidden = int(get("embedding_length"))
  vocab = get("vocab_size")
  if vocab is None:
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
  config = {
      "architectures": [hf_class],
      "model_type": family,
      "vocab_size": int(vocab),
      "hidden_size": hidden,
      "intermediate_size": int(get("feed_forward_length")),
      "num_hidden_layers": int(get("block_count")),
      "num_attention_heads": heads,
      "num_key_value_heads": int(get("attention.head_count_kv", heads)),
      "head_dim": int(get("attention.key_length", hidden // heads)),
      "rope_theta": float(get("rope.freq_base", 10000.0)),
      "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-6)),
      "max_position_embeddings": int(get("context_length", 2048)),
      "tie_word_embeddings": "output.weight" not in names,
      "hidden_act": "silu",
  }
  scaling = get("rope.scaling.type")
  if scaling and scaling != "none":
    config["rope_scaling"] = {"rope_type": scaling, "factor": float(get("rope.scaling.factor", 1))}
  if family == "llama":
    config["attention_bias"] = "blk.0.attn_q.bias" in names
  return config


class GGUFCheckpoint:
  """The tensors of a GGUF file under their HF names, dequantised to float32 on access
  (``keys``/``shape``/``get``, the interface ``hf.load_hf`` reads checkpoints through)."""

  def __init__(self, path: str, config: Dict[str, Any]):
    reader = _reader(path)
    self._tensors = {hf_name(t.name): t for t in reader.tensors}
    self._llama = config["model_type"] == "llama"
    self._heads = {"q_proj": config["num_attention_heads"],
                   "k_proj": config["num_key_value_heads"]}

  def keys(self):
    """The HF names of the file's tensors."""
    return self._tensors.keys()

  def shape(self, key: str) -> Tuple[int, ...]:
    """The HF (numpy, row-major) shape of tensor ``key``; GGUF stores dimensions reversed."""
    return tuple(int(d) for d in reversed(self._tensors[key].shape))

  def get(self, key: str) -> np.ndarray:
    """Tensor ``key`` dequantised to float32, in HF layout."""
    import gguf  # pylint: disable=g-import-not-at-top
    tensor = self._tensors[key]
    value = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    value = np.asarray(value, np.float32).reshape(self.shape(key))
    if self._llama:
      for proj, heads in self._heads.items():
        if f".self_attn.{proj}." in key:
          value = unpermute_qk(value, heads)
    return value


def load_tokenizer(path: str):
  """The tokenizer of a GGUF file (vocabulary, special tokens and chat template), through
  transformers' GGUF tokenizer conversion.

  transformers reads the file with ``AutoTokenizer.from_pretrained(dir, gguf_file=name)``; where
  that route needs torch (transformers 5 imports it in its GGUF reader) and torch is missing, the
  same conversion is fed the metadata read here with the ``gguf`` package.
  """
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  directory, name = os.path.split(os.path.abspath(path))
  try:
    return AutoTokenizer.from_pretrained(directory, gguf_file=name, local_files_only=True)
  except (ImportError, ModuleNotFoundError):
    return _tokenizer_without_torch(path)


def _tokenizer_without_torch(path: str):
  """:func:`load_tokenizer`'s fallback: transformers' ``convert_gguf_tokenizer`` on metadata read
  with the ``gguf`` package, wrapped in a ``PreTrainedTokenizerFast``."""
  import transformers  # pylint: disable=g-import-not-at-top
  from transformers.integrations.gguf import gguf_tokenizer_mapping as mapping  # pylint: disable=g-import-not-at-top
  reader = _reader(path)
  wanted = {f"tokenizer.{key}": (group, name)
            for group, renames in mapping.GGUF_TOKENIZER_MAPPING.items()
            for key, name in renames.items()}
  groups: Dict[str, Dict[str, Any]] = {"tokenizer": {}, "tokenizer_config": {}}
  for key, field in reader.fields.items():
    if key in wanted:
      group, name = wanted[key]
      value = field.contents()
      groups[group][name] = value
  tokens = groups["tokenizer"]["tokens"]
  backend, _ = mapping.convert_gguf_tokenizer(reader.fields["general.architecture"].contents(),
                                              groups["tokenizer"])
  special = {}
  for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                    ("unk_token", "unk_token_id"), ("pad_token", "pad_token_id")):
    if key in groups["tokenizer"]:
      special[name] = tokens[int(groups["tokenizer"][key])]
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend, chat_template=groups["tokenizer_config"].get("chat_template"),
      **special)


def convert(path: str, out_dir: str, *, dtype: str = "float32") -> str:
  """Writes GGUF file ``path`` as an HF directory (dequantised safetensors in ``dtype``,
  ``config.json``, tokenizer files with the chat template); returns ``out_dir``."""
  from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
  config, params = hf.load_hf(path, dtype=dtype, param_dtype=dtype)
  hf.export_hf(params, config, out_dir, tokenizer_dir=path, dtype=dtype)
  return out_dir


def main(argv) -> None:
  """``python -m rlvr_jax.models.gguf_io MODEL.gguf OUT_DIR [DTYPE]``."""
  if len(argv) not in (3, 4):
    raise SystemExit("usage: python -m rlvr_jax.models.gguf_io MODEL.gguf OUT_DIR [float32]")
  print(convert(argv[1], argv[2], dtype=argv[3] if len(argv) == 4 else "float32"))


if __name__ == "__main__":
  main(sys.argv)
