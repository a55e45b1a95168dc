"""HF import/export: parity with transformers (CPU torch), round trips and bad checkpoints."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from rlvr_jax.models import Transformer, init_cache, init_params, preset
from rlvr_jax.models import hf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_COMMON = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6)

# name -> (transformers config class, kwargs, save_pretrained max_shard_size)
_FAMILIES = {
    # llama3 rope rule with head_dim 16, theta 5e5, original length 64: the 8 frequencies fall in
    # all three bands (wavelength < 16, between, > 64). attention_bias also puts a bias on o_proj.
    "llama": ("LlamaConfig",
              dict(head_dim=16, rope_theta=500000.0, tie_word_embeddings=False,
                   attention_bias=True, max_position_embeddings=512,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 64}),
              "60KB"),
    "qwen2": ("Qwen2Config", dict(rope_theta=1000000.0, tie_word_embeddings=True), None),
    # head_dim (32) != hidden_size / heads (16), as in the released Qwen3 models.
    "qwen3": ("Qwen3Config", dict(head_dim=32, rope_theta=1000000.0, tie_word_embeddings=False),
              None),
}


# A tiny untied Llama for tests that need no torch model (the preset the other test areas use,
# so its init compiles once per process).
_SMALL = preset("tiny")


@pytest.fixture(scope="module")
def small_params():
  return init_params(_SMALL, jax.random.PRNGKey(0))


def _hf_model(family, seed=0):
  cls_name, kwargs, _ = _FAMILIES[family]
  config = getattr(transformers, cls_name)(**_COMMON, **kwargs)
  torch.manual_seed(seed)
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
  with torch.no_grad():
    # Norm scales start at 1 and biases at 0; perturb everything so the test sees them.
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model.eval()


def _batch(seed=0, batch=3, length=9, pads=(0, 3, 6)):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, _COMMON["vocab_size"], size=(batch, length)).astype(np.int32)
  mask = np.ones((batch, length), bool)
  for b, n in enumerate(pads):
    tokens[b, :n] = 0
    mask[b, :n] = False
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  return tokens, positions, mask


def _hf_logits(model, tokens, positions, mask):
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(tokens.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)),
                position_ids=torch.from_numpy(positions.astype(np.int64)))
  return out.logits.float().numpy()


@functools.partial(jax.jit, static_argnames="cfg")
def _logits(params, cfg, tokens, positions, mask):
  return Transformer(cfg).apply({"params": params}, tokens, positions, mask)[0]


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_parity_and_export_round_trip(family, tmp_path):
  model = _hf_model(family)
  shard = _FAMILIES[family][2]
  src = str(tmp_path / "src")
  model.save_pretrained(src, **({"max_shard_size": shard} if shard else {}))
  if shard:
    assert os.path.exists(os.path.join(src, "model.safetensors.index.json"))
    assert len([f for f in os.listdir(src) if f.endswith(".safetensors")]) > 1

  cfg, params = hf.load_hf(src)
  assert cfg.architecture == family
  assert cfg.qk_norm == (family == "qwen3")
  assert cfg.tie_word_embeddings == (family == "qwen2")
  assert (cfg.rope_scaling is not None) == (family == "llama")

  tokens, positions, mask = _batch()
  expected = _hf_logits(model, tokens, positions, mask)
  got = np.asarray(_logits(params, cfg, jnp.asarray(tokens), jnp.asarray(positions),
                           jnp.asarray(mask)))
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got[mask], expected[mask], atol=1e-4, rtol=0)

  # Export (sharded for one family) and reload in transformers: same tensors, same logits.
  out = str(tmp_path / "out")
  hf.export_hf(params, cfg, out, max_shard_size="40KB" if family == "qwen3" else "5GB")
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(
      out, attn_implementation="eager").eval()
  assert type(reloaded) is type(model)
  original = model.state_dict()
  for name, tensor in reloaded.state_dict().items():
    assert torch.equal(tensor, original[name]), name
  np.testing.assert_allclose(_hf_logits(reloaded, tokens, positions, mask)[mask],
                             expected[mask], atol=1e-6, rtol=0)
  assert hf.load_hf(out)[0] == cfg
  # Runtime options ride along without touching the checkpoint's function; others are refused.
  flash = hf.load_hf(out, attention="flash", remat_policy="dots")[0]
  assert flash == cfg.replace(attention="flash", remat_policy="dots")
  with pytest.raises(TypeError, match="vocab_size"):
    hf.load_hf(out, vocab_size=8)


def test_cached_decoding_matches_transformers(tmp_path):
  # Qwen3: q/k norm and head_dim != D/H both touch what the cache stores.
  model = _hf_model("qwen3", seed=1)
  model.save_pretrained(str(tmp_path))
  cfg, params = hf.load_hf(str(tmp_path))
  tokens, positions, mask = _batch(seed=1, batch=2, length=8, pads=(0, 3))
  expected = _hf_logits(model, tokens, positions, mask)
  prefill, slots = 5, 8
  step = jax.jit(lambda p, t, pos, m, c, i: Transformer(cfg).apply(
      {"params": p}, t, pos, m, cache=c, cache_index=i))
  cache = init_cache(cfg, 2, slots)
  cache_mask = np.zeros((2, slots), bool)
  cache_mask[:, :prefill] = mask[:, :prefill]
  out, cache = step(params, tokens[:, :prefill], positions[:, :prefill], cache_mask, cache,
                    jnp.int32(0))
  outs = [np.asarray(out)]
  for i in range(prefill, 8):
    cache_mask[:, i] = True
    out, cache = step(params, tokens[:, i:i + 1], positions[:, i:i + 1], cache_mask, cache,
                      jnp.int32(i))
    outs.append(np.asarray(out))
  got = np.concatenate(outs, axis=1)
  np.testing.assert_allclose(got[mask], expected[mask], atol=1e-4, rtol=0)


def test_bfloat16_load_and_export(tmp_path):
  model = _hf_model("qwen2").to(torch.bfloat16)
  src = str(tmp_path / "src")
  model.save_pretrained(src)
  cfg, params = hf.load_hf(src, dtype="bfloat16", param_dtype="bfloat16")
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree_util.tree_leaves(params))
  out = str(tmp_path / "out")
  hf.export_hf(params, cfg, out)
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
  for name, tensor in reloaded.state_dict().items():
    assert tensor.dtype == torch.bfloat16
    assert torch.equal(tensor, model.state_dict()[name]), name


def test_tokenizer_load_and_export(tmp_path, small_params):
  tokenizers = pytest.importorskip("tokenizers")
  words = ["<unk>", "<eos>", "what", "is", "two", "plus", "four"]
  backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(
      vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
  backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>",
                                             eos_token="<eos>")
  tok.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
  tok_dir = str(tmp_path / "tok")
  tok.save_pretrained(tok_dir)
  with open(os.path.join(tok_dir, "generation_config.json"), "w") as f:
    json.dump({"eos_token_id": 1}, f)

  loaded = hf.load_tokenizer(tok_dir)
  assert loaded("what is two plus four")["input_ids"] == [2, 3, 4, 5, 6]
  chat = [{"role": "user", "content": "two plus two"}]
  assert loaded.apply_chat_template(chat, tokenize=False) == "user two plus two "

  out = str(tmp_path / "out")
  hf.export_hf(small_params, _SMALL, out, tokenizer_dir=tok_dir)
  again = hf.load_tokenizer(out)
  assert again.apply_chat_template(chat, tokenize=False) == "user two plus two "
  assert again.eos_token_id == 1
  with open(os.path.join(out, "generation_config.json")) as f:
    assert json.load(f)["eos_token_id"] == 1


def test_config_from_published_style_dicts():
  # transformers 4.x layout, as in the released Llama-3.2-1B config.json.
  llama = {
      "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
      "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
      "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
      "hidden_act": "silu", "max_position_embeddings": 131072, "rms_norm_eps": 1e-05,
      "rope_theta": 500000.0, "attention_bias": False, "mlp_bias": False,
      "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"},
      "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
  assert hf.config_from_hf(llama) == preset("llama3.2-1b")
  # As in the released Qwen2.5-0.5B config.json (no head_dim key; sliding window declared off).
  qwen = {
      "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
      "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
      "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_act": "silu",
      "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
      "rope_scaling": None, "sliding_window": 32768, "use_sliding_window": False,
      "tie_word_embeddings": True, "max_window_layers": 21}
  assert hf.config_from_hf(qwen, dtype="bfloat16") == preset("qwen2.5-0.5b", dtype="bfloat16")
  for name in ("qwen2.5-1.5b", "qwen3-0.6b", "llama3.2-1b", "tiny"):
    assert hf.config_from_hf(hf.config_to_hf(preset(name))) == preset(name)


def test_unsupported_configs():
  base = hf.config_to_hf(preset("tiny"))
  with pytest.raises(ValueError, match="supported: LlamaForCausalLM, Qwen2ForCausalLM, "
                                       "Qwen3ForCausalLM"):
    hf.config_from_hf({**base, "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})
  with pytest.raises(ValueError, match="rope type 'yarn'"):
    hf.config_from_hf({**base, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4,
                                                   "factor": 4.0}})
  with pytest.raises(ValueError, match="sliding"):
    hf.config_from_hf({**base, "use_sliding_window": True})
  with pytest.raises(ValueError, match="sliding_attention"):
    hf.config_from_hf({**base, "layer_types": ["full_attention", "sliding_attention"]})
  with pytest.raises(ValueError, match="hidden_act"):
    hf.config_from_hf({**base, "hidden_act": "gelu"})
  with pytest.raises(ValueError, match="qk_norm"):
    hf.config_to_hf(preset("tiny", qk_norm=True))


@pytest.fixture
def exported(tmp_path, small_params):
  """A tiny untied Llama checkpoint written by export_hf (no torch needed)."""
  cfg, params = _SMALL, small_params
  path = str(tmp_path / "ckpt")
  hf.export_hf(params, cfg, path)
  return path, cfg, params


def _edit_weights(path, edit):
  file = os.path.join(path, "model.safetensors")
  tensors = load_file(file)
  edit(tensors)
  save_file(tensors, file, metadata={"format": "pt"})


def test_load_of_exported_is_exact(exported):
  path, cfg, params = exported
  cfg2, params2 = hf.load_hf(path)
  assert cfg2 == cfg
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, params2)


def test_unknown_architecture_lists_supported(exported):
  path, _, _ = exported
  config_file = os.path.join(path, "config.json")
  with open(config_file) as f:
    config = json.load(f)
  config["architectures"] = ["MistralForCausalLM"]
  with open(config_file, "w") as f:
    json.dump(config, f)
  with pytest.raises(ValueError, match="'MistralForCausalLM'.*supported: LlamaForCausalLM"):
    hf.load_hf(path)


def test_missing_tensor_is_named(exported):
  path, _, _ = exported
  _edit_weights(path, lambda t: t.pop("model.layers.0.mlp.up_proj.weight"))
  with pytest.raises(hf.CheckpointError, match=r"model\.layers\.0\.mlp\.up_proj\.weight"):
    hf.load_hf(path)


def test_wrong_shape_is_named(exported):
  path, _, _ = exported

  def edit(t):
    t["model.layers.0.self_attn.k_proj.weight"] = np.zeros((16, 64), np.float32)

  _edit_weights(path, edit)
  with pytest.raises(hf.CheckpointError,
                     match=r"k_proj\.weight has shape \(16, 64\).*expects \(32, 64\)"):
    hf.load_hf(path)


def test_unused_tensor_is_an_error_but_inv_freq_is_ignored(exported):
  path, _, params = exported

  def add_buffer(t):
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones((8,), np.float32)

  _edit_weights(path, add_buffer)
  _, loaded = hf.load_hf(path)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, loaded)

  def add_stray(t):
    t["model.layers.0.mlp.extra.weight"] = np.ones((4,), np.float32)

  _edit_weights(path, add_stray)
  with pytest.raises(hf.CheckpointError, match=r"not used.*model\.layers\.0\.mlp\.extra\.weight"):
    hf.load_hf(path)


def test_tied_checkpoint_with_explicit_lm_head(tmp_path, small_params):
  cfg = _SMALL.replace(tie_word_embeddings=True)
  params = {k: v for k, v in small_params.items() if k != "lm_head"}
  path = str(tmp_path / "tied")
  hf.export_hf(params, cfg, path)
  _edit_weights(path, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"]}))
  assert hf.load_hf(path)[0] == cfg
  _edit_weights(path, lambda t: t.update({"lm_head.weight": t["lm_head.weight"] + 1}))
  with pytest.raises(hf.CheckpointError, match="lm_head.weight differs"):
    hf.load_hf(path)


def test_missing_files(exported, tmp_path):
  path, cfg, params = exported
  os.remove(os.path.join(path, "model.safetensors"))
  with pytest.raises(hf.CheckpointError, match="no model.safetensors"):
    hf.load_hf(path)
  os.remove(os.path.join(path, "config.json"))
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf.load_hf(path)
  sharded = str(tmp_path / "sharded")
  hf.export_hf(params, cfg, sharded, max_shard_size=20_000)
  with open(os.path.join(sharded, "model.safetensors.index.json")) as f:
    files = sorted(set(json.load(f)["weight_map"].values()))
  assert len(files) > 1
  os.remove(os.path.join(sharded, files[-1]))
  with pytest.raises(hf.CheckpointError, match=files[-1]):
    hf.load_hf(sharded)
