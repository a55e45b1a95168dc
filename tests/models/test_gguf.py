"""GGUF import: a tiny random Llama written with the ``gguf`` package (q/k permuted as llama.cpp
stores them, the MLP block-quantised to Q8_0) loads with the same logits as transformers' own GGUF
loader, and with its tokenizer and chat template."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from rlvr_jax.models import Transformer
from rlvr_jax.models import gguf_io
from rlvr_jax.models import hf

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_HEADS, _KV, _HIDDEN, _FFN, _LAYERS = 4, 2, 64, 96, 2
_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _vocabulary():
  """A byte-level BPE vocabulary: the 256 byte symbols, two merges and two special tokens."""
  from transformers.convert_slow_tokenizer import bytes_to_unicode  # pylint: disable=g-import-not-at-top
  tokens = [bytes_to_unicode()[b] for b in range(256)] + ["he", "hel", "<|im_start|>",
                                                          "<|im_end|>"]
  types = [1] * 258 + [3, 3]  # 1 normal, 3 control
  return tokens, types, ["h e", "he l"]


def _llama_cpp_permute(w, heads):
  """convert_hf_to_gguf.py's ``permute``: HF's half-split rotary rows to interleaved pairs."""
  return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
      w.shape)


_TO_GGUF = {hf_name: name for name, hf_name in gguf_io._GLOBAL_NAMES.items()}  # pylint: disable=protected-access


def _gguf_name(name):
  if name in _TO_GGUF:
    return _TO_GGUF[name]
  _, _, layer, rest = name.split(".", 3)
  inverse = {v: k for k, v in gguf_io._LAYER_NAMES.items()}  # pylint: disable=protected-access
  return f"blk.{layer}.{inverse[rest]}"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
  """(path to a tiny Llama .gguf, the torch model it was written from)."""
  tokens, types, merges = _vocabulary()
  config = transformers.LlamaConfig(
      vocab_size=len(tokens), hidden_size=_HIDDEN, intermediate_size=_FFN,
      num_hidden_layers=_LAYERS, num_attention_heads=_HEADS, num_key_value_heads=_KV,
      rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256,
      tie_word_embeddings=False)
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.eval()

  path = str(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")
  writer = gguf.GGUFWriter(path, "llama")
  writer.add_block_count(_LAYERS)
  writer.add_context_length(256)
  writer.add_embedding_length(_HIDDEN)
  writer.add_feed_forward_length(_FFN)
  writer.add_head_count(_HEADS)
  writer.add_head_count_kv(_KV)
  writer.add_rope_freq_base(10000.0)
  writer.add_layer_norm_rms_eps(1e-5)
  writer.add_vocab_size(len(tokens))
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre("gpt2")
  writer.add_token_list(tokens)
  writer.add_token_types(types)
  writer.add_token_merges(merges)
  writer.add_bos_token_id(len(tokens) - 2)
  writer.add_eos_token_id(len(tokens) - 1)
  writer.add_add_bos_token(False)
  writer.add_chat_template(_TEMPLATE)
  for name, tensor in model.state_dict().items():
    value = tensor.numpy().astype(np.float32)
    if name.endswith("q_proj.weight"):
      value = _llama_cpp_permute(value, _HEADS)
    elif name.endswith("k_proj.weight"):
      value = _llama_cpp_permute(value, _KV)
    if ".mlp." in name:  # block-quantised, as real files are
      quantised = gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q8_0)
      writer.add_tensor(_gguf_name(name), quantised, raw_shape=quantised.shape,
                        raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
      writer.add_tensor(_gguf_name(name), value)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path, model


def test_logits_match_transformers_gguf_loader(tiny_gguf):
  path, model = tiny_gguf
  cfg, params = hf.load_hf(path)
  assert (cfg.architecture, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads) == (
      "llama", _LAYERS, _HEADS, _KV)
  assert not cfg.tie_word_embeddings
  # Unquantised tensors come back exactly, q/k un-permuted into our [D, H, Dh] layout.
  state = model.state_dict()
  q = state["model.layers.1.self_attn.q_proj.weight"].numpy()
  np.testing.assert_array_equal(np.asarray(params["layers"]["attn"]["q_proj"]["kernel"][1]),
                                q.T.reshape(_HIDDEN, _HEADS, -1))
  k = state["model.layers.0.self_attn.k_proj.weight"].numpy()
  np.testing.assert_array_equal(np.asarray(params["layers"]["attn"]["k_proj"]["kernel"][0]),
                                k.T.reshape(_HIDDEN, _KV, -1))

  directory, name = os.path.split(path)
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      directory, gguf_file=name, dtype=torch.float32, attn_implementation="eager").eval()
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 256, size=(2, 11)).astype(np.int32)
  positions = np.broadcast_to(np.arange(11, dtype=np.int32), tokens.shape)
  mask = np.ones(tokens.shape, bool)
  with torch.no_grad():
    expected = reference(input_ids=torch.from_numpy(tokens.astype(np.int64))).logits.numpy()
  got = np.asarray(Transformer(cfg).apply({"params": params}, jnp.asarray(tokens),
                                          jnp.asarray(positions), jnp.asarray(mask))[0])
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
  # Q8_0 is lossy: the file's model is close to, not equal to, the model it was written from.
  with torch.no_grad():
    original = model(input_ids=torch.from_numpy(tokens.astype(np.int64))).logits.numpy()
  assert 0 < np.abs(got - original).max() < 0.05


def test_tokenizer_chat_template_and_export(tiny_gguf, tmp_path):
  path, _ = tiny_gguf
  tok = hf.load_tokenizer(path)
  assert tok.eos_token == "<|im_end|>"
  chat = [{"role": "user", "content": "hello"}]
  text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
  assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
  ids = tok(text, add_special_tokens=False)["input_ids"]
  assert ids[0] == 258 and 257 in ids  # <|im_start|> is one token; "hel" merged
  # Without torch the same conversion is fed metadata read by the gguf package.
  assert gguf_io._tokenizer_without_torch(path)(text, add_special_tokens=False)[  # pylint: disable=protected-access
      "input_ids"] == ids

  # As an HF directory: same model, tokenizer with the template.
  out = gguf_io.convert(path, str(tmp_path / "hf"))
  cfg, params = hf.load_hf(path)
  cfg2, params2 = hf.load_hf(out)
  assert cfg2 == cfg
  np.testing.assert_array_equal(np.asarray(params2["embed"]["embedding"]),
                                np.asarray(params["embed"]["embedding"]))
  again = hf.load_tokenizer(out)
  assert again.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == text


def test_unsupported_architecture_is_named(tmp_path):
  path = str(tmp_path / "gpt.gguf")
  writer = gguf.GGUFWriter(path, "gpt2")
  writer.add_block_count(1)
  writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  with pytest.raises(ValueError, match="'gpt2' is not supported; supported: llama, qwen2"):
    hf.load_hf(path)
