"""int8 / NF4 storage of the frozen base (QLoRA): error bounds, the NF4 levels, the model on it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from rlvr_jax.models import Transformer, init_params, lora, preset, quant
from rlvr_jax.models.partition import param_partition_specs
from rlvr_jax.train import state as state_lib

pytest.importorskip("qwix")

CFG = preset("tiny")
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, CFG.vocab_size, (2, 6)), jnp.int32)
POSITIONS = jnp.broadcast_to(jnp.arange(6), (2, 6))
MASK = jnp.ones((2, 6), bool)
# The tiny model's o_proj input axis is Dh = 16, so blocks of 16 (QLoRA uses 64).
CONFIG = lora.LoraConfig(rank=4, alpha=12.0, quant_block_size=16)

# The 16 NormalFloat levels, QLoRA paper (arXiv:2305.14314) appendix E.
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], np.float32)


@pytest.fixture(scope="module")
def base():
  return init_params(CFG, jax.random.PRNGKey(0))


@jax.jit
def _logits(params):
  return Transformer(CFG).apply({"params": params}, TOKENS, POSITIONS, MASK)[0]


def _block_absmax(w, block):
  """max |w| over blocks of ``block`` along axis 1, broadcast back to w's shape."""
  shape = (w.shape[0], w.shape[1] // block, block) + w.shape[2:]
  m = np.abs(w).reshape(shape).max(axis=2, keepdims=True)
  return np.broadcast_to(m, shape).reshape(w.shape)


def test_int8_error_is_at_most_half_a_step():
  w = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 64, 3, 8))) * 0.02
  q = quant.quantize(jnp.asarray(w), "int8", 16, 1)
  assert q.qvalue.dtype == jnp.int8 and q.qvalue.shape == w.shape
  assert q.scale.shape == (2, 4, 3, 8)
  error = np.abs(np.asarray(quant.dequantize(q, jnp.float32)) - w)
  # Symmetric absmax: the step is absmax / 127, rounding errs by at most half of it.
  assert np.all(error <= _block_absmax(w, 16) / 127 / 2 * (1 + 1e-5))


def test_nf4_rounds_to_the_nearest_paper_level():
  w = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (2, 64, 5)))
  q = quant.quantize(jnp.asarray(w), "nf4", 64, 1)
  absmax = _block_absmax(w, 64)
  normalised = np.asarray(quant.dequantize(q, jnp.float32)) / absmax
  # Every dequantised value is a level times the block's absmax, the nearest level to w/absmax.
  nearest = NF4_LEVELS[np.abs(w[..., None] / absmax[..., None] - NF4_LEVELS).argmin(-1)]
  np.testing.assert_allclose(normalised, nearest, atol=1e-6)
  # Levels survive a round trip exactly; the error is at most half the widest gap (0.304 / 2).
  levels = jnp.asarray(np.tile(NF4_LEVELS, 4).reshape(1, 64, 1))
  np.testing.assert_allclose(quant.dequantize(quant.quantize(levels, "nf4", 64, 1), jnp.float32),
                             levels, atol=1e-7)
  assert np.abs(normalised - w / absmax).max() <= np.diff(NF4_LEVELS).max() / 2 + 1e-6
  # For normal weights NF4's relative RMS error is about 10% (4 bits), int8's well under 1%.
  assert np.sqrt(np.mean((normalised * absmax - w) ** 2)) / w.std() < 0.12


def test_block_size_must_divide():
  with pytest.raises(ValueError, match="block_size 64"):
    quant.quantize(jnp.ones((2, 48, 4)), "nf4", 64, 1)


@pytest.mark.parametrize("method,tolerance", [("int8", 0.02), ("nf4", 0.25)])
def test_quantised_base(base, method, tolerance):
  config = CONFIG.replace(base_quantization=method)
  frozen = lora.prepare_base(base, config)
  for name in ("q", "k", "v", "o", "gate", "up", "down"):
    layer, proj = lora.TARGET_PATHS[name]
    assert quant.is_quantized(frozen["layers"][layer][proj]["kernel"])
  assert not quant.is_quantized(frozen["embed"]["embedding"])
  dequantised = lora.dequantize_base(frozen)
  # The model on the quantised base is the model on its dequantised weights, close to the float.
  np.testing.assert_allclose(_logits(frozen), _logits(dequantised), atol=1e-5)
  # Logits inherit the weights' relative RMS error (about 0.5% for int8, 10% for NF4; measured
  # 0.6% and 10.5% on this model), with margin.
  reference = np.asarray(_logits(base))
  error = np.sqrt(np.mean((np.asarray(_logits(frozen)) - reference) ** 2)) / reference.std()
  assert error < tolerance
  # LoRA on it: the model with W + A B alpha/r, W dequantised.
  leaves, tree = jax.tree.flatten(lora.init_adapters(CFG, config, jax.random.PRNGKey(1)))
  adapters = jax.tree.unflatten(tree, [x + 0.05 for x in leaves])
  np.testing.assert_allclose(_logits(lora.attach(frozen, adapters, config)),
                             _logits(lora.merge(frozen, adapters, config)), atol=2e-5)


def _mesh():
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  return Mesh(np.asarray(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))


def test_sharded_train_state_with_a_quantised_frozen_base(base):
  mesh = _mesh()
  config = CONFIG.replace(base_quantization="nf4")
  frozen = lora.prepare_base(base, config)
  frozen_specs = param_partition_specs(frozen, mesh)
  q_kernel = frozen_specs["layers"]["attn"]["q_proj"]["kernel"]
  # qvalue [L, D, H, Dh] and scale [L, D / 16, H, Dh] shard like the float kernel.
  assert (q_kernel.qvalue, q_kernel.scale) == (P(None, "fsdp", "tensor", None),) * 2
  adapters = lora.init_adapters(CFG, config, jax.random.PRNGKey(1))
  tx = optax.adam(1e-3)
  state, shardings = state_lib.init_sharded(
      adapters, tx, param_partition_specs(adapters, mesh), mesh, with_reference=False,
      frozen=frozen, frozen_specs=frozen_specs)
  placed = state.frozen["layers"]["attn"]["q_proj"]["kernel"].qvalue.sharding
  assert placed.spec == P(None, "fsdp", "tensor", None)
  mu = state.opt_state[0].mu["layers"]["mlp"]["down_proj"]["lora_a"]
  assert mu.sharding.spec == P(None, "tensor", None)
  assert jax.tree.structure(shardings.frozen) == jax.tree.structure(frozen)
  out = jax.jit(lambda s: _logits(lora.attach(s.frozen, s.params, config)))(state)
  np.testing.assert_allclose(out, _logits(frozen), atol=1e-5)


def test_backward_pass_does_not_keep_dequantised_kernels():
  """The gradient w.r.t. the adapters re-dequantises in the backward pass: its compiled scratch
  memory grows by less than half the float kernels' size over a float base (without the
  rematerialisation it grows by more than all of them)."""
  cfg = preset("tiny", hidden_size=128, intermediate_size=256, num_heads=2, num_kv_heads=2,
                head_dim=64, num_layers=4)
  base = init_params(cfg, jax.random.PRNGKey(0))
  tokens, mask = jnp.zeros((1, 8), jnp.int32), jnp.ones((1, 8), bool)
  kernels = sum(x.nbytes for path, x in jax.tree_util.tree_leaves_with_path(base["layers"])
                if "kernel" in jax.tree_util.keystr(path))
  scratch = {}
  for method in ("none", "nf4"):
    config = lora.LoraConfig(rank=4, base_quantization=method)
    frozen = lora.prepare_base(base, config)
    adapters = lora.init_adapters(cfg, config, jax.random.PRNGKey(1))

    def loss(adapters, frozen, config=config):
      logits = Transformer(cfg).apply({"params": lora.attach(frozen, adapters, config)}, tokens,
                                      jnp.broadcast_to(jnp.arange(8), (1, 8)), mask)[0]
      return jnp.sum(logits)

    compiled = jax.jit(jax.grad(loss)).lower(adapters, frozen).compile()
    scratch[method] = compiled.memory_analysis().temp_size_in_bytes
  assert scratch["nf4"] - scratch["none"] < kernels / 2, (scratch, kernels)
