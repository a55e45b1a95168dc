"""Partition rules on 8 simulated CPU devices (see tests/conftest.py)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rlvr_jax.models import Transformer, hf, init_params, preset
from rlvr_jax.models.partition import param_partition_specs, shard_params

CFG = preset("tiny")


def _mesh(shape):
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  return Mesh(np.asarray(jax.devices()[:8]).reshape(shape), ("data", "fsdp", "tensor"))


@pytest.fixture(scope="module")
def params():
  return init_params(CFG, jax.random.PRNGKey(0))


def test_rules_by_path(params):
  specs = param_partition_specs(params)
  attn, mlp = specs["layers"]["attn"], specs["layers"]["mlp"]
  assert specs["embed"]["embedding"] == P("tensor", "fsdp")
  assert specs["lm_head"]["kernel"] == P("fsdp", "tensor")
  assert attn["q_proj"]["kernel"] == P(None, "fsdp", "tensor", None)
  assert attn["o_proj"]["kernel"] == P(None, "tensor", None, "fsdp")
  assert mlp["gate_proj"]["kernel"] == P(None, "fsdp", "tensor")
  assert mlp["down_proj"]["kernel"] == P(None, "tensor", "fsdp")
  assert specs["layers"]["input_norm"]["scale"] == P()
  assert specs["final_norm"]["scale"] == P()
  # Biases and q/k norms of the other families, from abstract shapes (no init compile).
  for cfg in (CFG.replace(architecture="qwen2", attention_bias=True),
              CFG.replace(architecture="llama", attention_bias=True, attention_out_bias=True),
              CFG.replace(architecture="qwen3", qk_norm=True, tie_word_embeddings=True)):
    shapes = jax.eval_shape(functools.partial(init_params, cfg), jax.random.PRNGKey(0))
    attn = param_partition_specs(shapes)["layers"]["attn"]
    if cfg.attention_bias:
      assert attn["k_proj"]["bias"] == P(None, "tensor", None)
    if cfg.attention_out_bias:
      assert attn["o_proj"]["bias"] == P()
    if cfg.qk_norm:
      assert attn["q_norm"]["scale"] == P()


def test_sharded_forward_equals_unsharded(params):
  mesh = _mesh((2, 2, 2))
  sharded = shard_params(params, mesh)
  q = sharded["layers"]["attn"]["q_proj"]["kernel"]
  # [L, D, H, Dh] = [2, 64, 4, 16] split 2-way on D (fsdp) and H (tensor).
  assert q.sharding.spec == P(None, "fsdp", "tensor", None)
  assert {s.data.shape for s in q.addressable_shards} == {(2, 32, 2, 16)}

  rng = np.random.default_rng(0)
  tokens = rng.integers(1, CFG.vocab_size, size=(4, 6)).astype(np.int32)
  mask = np.ones((4, 6), bool)
  mask[1, :2] = mask[3, :5] = False
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)

  @jax.jit
  def forward(p, t, pos, m):
    return Transformer(CFG).apply({"params": p}, t, pos, m)[0]

  plain = forward(params, tokens, positions, mask)
  batch = NamedSharding(mesh, P(("data", "fsdp")))
  got = forward(sharded, *(jax.device_put(x, batch) for x in (tokens, positions, mask)))
  np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(plain)[mask], atol=1e-5)


def test_indivisible_dims_fall_back_to_replication(params):
  mesh = _mesh((1, 2, 4))
  specs = param_partition_specs(params, mesh)
  # 2 KV heads cannot split 4 ways; 4 query heads can.
  assert specs["layers"]["attn"]["k_proj"]["kernel"] == P(None, "fsdp", None, None)
  assert specs["layers"]["attn"]["q_proj"]["kernel"] == P(None, "fsdp", "tensor", None)
  no_tensor = Mesh(np.asarray(jax.devices()[:8]).reshape(4, 2), ("data", "fsdp"))
  assert param_partition_specs(params, no_tensor)["lm_head"]["kernel"] == P("fsdp", None)


def test_abstract_params_and_unknown_paths(params):
  shapes = jax.eval_shape(functools.partial(init_params, CFG), jax.random.PRNGKey(0))
  assert param_partition_specs(shapes) == param_partition_specs(params)
  with pytest.raises(ValueError, match="no partition rule matches parameter adapter/kernel"):
    param_partition_specs({**params, "adapter": {"kernel": jnp.zeros((2, 2))}})


def test_init_params_directly_sharded(params):
  mesh = _mesh((2, 2, 2))
  sharded = init_params(CFG, jax.random.PRNGKey(0), mesh=mesh)
  assert sharded["layers"]["mlp"]["down_proj"]["kernel"].sharding.spec == P(None, "tensor", "fsdp")
  jax.tree_util.tree_map(np.testing.assert_array_equal, sharded, params)


def test_load_hf_onto_mesh(params, tmp_path):
  mesh = _mesh((2, 2, 2))
  hf.export_hf(params, CFG, str(tmp_path))
  _, loaded = hf.load_hf(str(tmp_path), mesh=mesh)
  emb = loaded["embed"]["embedding"]
  assert emb.sharding.spec == P("tensor", "fsdp")
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
