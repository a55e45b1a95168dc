"""peft interop: our adapters load in peft with equal logits, peft's load here, merged export."""

import functools
import json
import os

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from rlvr_jax.models import Transformer, hf, lora, peft_io

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

_COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6)
_FAMILIES = {
    # Untied, biases on q/k/v and o, llama3 RoPE.
    "llama": ("LlamaConfig", dict(head_dim=8, rope_theta=500000.0, attention_bias=True,
                                  tie_word_embeddings=False)),
    # Tied embeddings, q/k/v biases.
    "qwen2": ("Qwen2Config", dict(rope_theta=1000000.0, tie_word_embeddings=True)),
}


def _hf_model(family, path):
  """A tiny random HF model with perturbed norms and biases, saved at ``path``."""
  cls_name, kwargs = _FAMILIES[family]
  config = getattr(transformers, cls_name)(**_COMMON, **kwargs)
  torch.manual_seed(0)
  model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.eval().save_pretrained(path)
  return model


def _fresh(path):
  return transformers.AutoModelForCausalLM.from_pretrained(
      path, attn_implementation="eager").eval()


def _batch():
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, _COMMON["vocab_size"], size=(2, 7)).astype(np.int32)
  mask = np.ones((2, 7), bool)
  tokens[1, :3], mask[1, :3] = 0, False  # a left-padded row
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
  return tokens, positions, mask


def _torch_logits(model):
  tokens, positions, mask = _batch()
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(tokens.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)),
                position_ids=torch.from_numpy(positions.astype(np.int64)))
  return out.logits.float().numpy()[mask]


@functools.partial(jax.jit, static_argnums=1)
def _apply(params, cfg, tokens, positions, mask):
  return Transformer(cfg).apply({"params": params}, tokens, positions, mask)[0]


def _our_logits(params, cfg):
  tokens, positions, mask = _batch()
  return np.asarray(_apply(params, cfg, tokens, positions, mask))[mask]


def _random_adapters(cfg, lora_config):
  adapters = lora.init_adapters(cfg, lora_config, jax.random.PRNGKey(1))
  leaves, tree = jax.tree.flatten(adapters)
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.1 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("family,targets", [("llama", lora.TARGETS), ("qwen2", "q,v,o,down")])
def test_export_loads_in_peft_with_equal_logits(family, targets, tmp_path):
  base_dir, adapter_dir = str(tmp_path / "base"), str(tmp_path / "adapter")
  _hf_model(family, base_dir)
  cfg, base = hf.load_hf(base_dir)
  config = lora.LoraConfig(rank=4, alpha=8.0, dropout=0.05, targets=targets)
  adapters = _random_adapters(cfg, config)
  peft_io.export_peft(adapters, cfg, config, adapter_dir, base_model_name_or_path=base_dir)

  written = json.load(open(os.path.join(adapter_dir, "adapter_config.json"), encoding="utf-8"))
  assert written["peft_type"] == "LORA" and written["r"] == 4 and written["lora_alpha"] == 8.0
  modules = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj",
             "up": "up_proj", "down": "down_proj"}
  assert sorted(written["target_modules"]) == sorted(modules[t] for t in config.targets)
  tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
  assert tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"].shape == (4, 32)
  assert len(tensors) == 2 * cfg.num_layers * len(config.targets)

  peft_model = peft.PeftModel.from_pretrained(_fresh(base_dir), adapter_dir).eval()
  expected = _torch_logits(peft_model)
  got = _our_logits(lora.attach(base, adapters, config), cfg)
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
  # The adapters matter at this scale, so the comparison above tests them.
  assert np.abs(expected - _our_logits(base, cfg)).max() > 1e-2


def test_import_peft_adapter_and_merged_export(tmp_path):
  base_dir, adapter_dir = str(tmp_path / "base"), str(tmp_path / "adapter")
  _hf_model("qwen2", base_dir)
  peft_config = peft.LoraConfig(r=4, lora_alpha=16, lora_dropout=0.1, init_lora_weights="gaussian",
                                target_modules=["k_proj", "o_proj", "gate_proj", "up_proj"])
  peft_model = peft.get_peft_model(_fresh(base_dir), peft_config)
  with torch.no_grad():  # peft starts B at zero; make the adapter do something.
    for name, p in peft_model.named_parameters():
      if "lora_B" in name:
        p.normal_(0.0, 0.1)
  peft_model.eval().save_pretrained(adapter_dir)
  expected = _torch_logits(peft_model)

  cfg, base = hf.load_hf(base_dir)
  adapters, config = peft_io.import_peft(adapter_dir, cfg)
  assert config == lora.LoraConfig(rank=4, alpha=16.0, dropout=0.1, init="gaussian",
                                   targets=("k", "o", "gate", "up"))
  np.testing.assert_allclose(_our_logits(lora.attach(base, adapters, config), cfg), expected,
                             atol=1e-4, rtol=0)

  # Export then import again gives the same arrays and config.
  again_dir = str(tmp_path / "again")
  peft_io.export_peft(adapters, cfg, config, again_dir)
  again, again_config = peft_io.import_peft(again_dir, cfg)
  assert again_config == config
  jax.tree.map(np.testing.assert_array_equal, again, adapters)

  # Merged weights as a plain HF checkpoint: transformers alone reproduces the peft model.
  merged_dir = str(tmp_path / "merged")
  peft_io.export_merged(base, adapters, cfg, config, merged_dir)
  np.testing.assert_allclose(_torch_logits(_fresh(merged_dir)), expected, atol=1e-4, rtol=0)


def test_import_refuses_what_it_cannot_compute(tmp_path):
  base_dir, adapter_dir = str(tmp_path / "base"), str(tmp_path / "adapter")
  _hf_model("llama", base_dir)
  cfg, _ = hf.load_hf(base_dir)
  config = lora.LoraConfig(rank=2, targets="q,v")
  peft_io.export_peft(lora.init_adapters(cfg, config, jax.random.PRNGKey(0)), cfg, config,
                      adapter_dir)
  config_path = os.path.join(adapter_dir, "adapter_config.json")
  original = json.load(open(config_path, encoding="utf-8"))
  for change, message in ((dict(use_dora=True), "use_dora"), (dict(bias="all"), "bias"),
                          (dict(target_modules=["q_proj", "lm_head"]), "lm_head"),
                          (dict(target_modules=".*proj"), "regex"),
                          (dict(r=3), "shape")):
    json.dump({**original, **change}, open(config_path, "w", encoding="utf-8"))
    with pytest.raises(ValueError, match=message):
      peft_io.import_peft(adapter_dir, cfg)
