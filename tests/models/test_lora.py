"""LoRA adapters: the forward formula, adapters off, gradients, optimizer state, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from rlvr_jax.models import Transformer, init_params, lora, preset
from rlvr_jax.models.partition import param_partition_specs, shard_params
from rlvr_jax.rollout import generate as generate_lib
from rlvr_jax.rollout import scoring
from rlvr_jax.train import state as state_lib

CFG = preset("tiny")
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, CFG.vocab_size, (2, 6)), jnp.int32)
POSITIONS = jnp.broadcast_to(jnp.arange(6), (2, 6))
MASK = jnp.ones((2, 6), bool)
# Most tests share one config (all targets), so that each compiled forward is reused.
CONFIG = lora.LoraConfig(rank=4, alpha=12.0)


@pytest.fixture(scope="module")
def base():
  return init_params(CFG, jax.random.PRNGKey(0))


@jax.jit
def _logits(params):
  return Transformer(CFG).apply({"params": params}, TOKENS, POSITIONS, MASK)[0]


def _random_adapters(lora_config, seed=1):
  """Adapters with a non-zero B, so that the LoRA term is visible."""
  adapters = lora.init_adapters(CFG, lora_config, jax.random.PRNGKey(seed))
  leaves, tree = jax.tree.flatten(adapters)
  keys = jax.random.split(jax.random.PRNGKey(seed + 100), len(leaves))
  return jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


def test_config_fields():
  config = lora.LoraConfig(rank=4, alpha=8, targets="v, q,down")
  assert config.targets == ("q", "v", "down")  # canonical order
  assert config.scale == 2.0
  assert config == lora.LoraConfig(rank=4, alpha=8, targets=("down", "q", "v"))
  for bad in (dict(targets="q,x"), dict(targets=""), dict(rank=0), dict(dropout=1.0),
              dict(init="orthogonal"), dict(base_quantization="int4")):
    with pytest.raises(ValueError):
      lora.LoraConfig(**bad)


def test_init_shapes_and_distribution():
  config = lora.LoraConfig(rank=4, targets="q,o,down")
  adapters = lora.init_adapters(CFG, config, jax.random.PRNGKey(0))
  d, f, h, dh, r, n = 64, 128, 4, 16, 4, CFG.num_layers
  attn, mlp = adapters["layers"]["attn"], adapters["layers"]["mlp"]
  assert set(attn) == {"q_proj", "o_proj"} and set(mlp) == {"down_proj"}
  assert attn["q_proj"]["lora_a"].shape == (n, d, r)
  assert attn["q_proj"]["lora_b"].shape == (n, r, h, dh)
  assert attn["o_proj"]["lora_a"].shape == (n, h, dh, r)
  assert attn["o_proj"]["lora_b"].shape == (n, r, d)
  assert mlp["down_proj"]["lora_a"].shape == (n, f, r)
  assert mlp["down_proj"]["lora_b"].shape == (n, r, d)
  for node in (attn["q_proj"], attn["o_proj"], mlp["down_proj"]):
    assert not np.any(node["lora_b"])
  # peft's default: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  a = np.asarray(mlp["down_proj"]["lora_a"])
  assert np.abs(a).max() <= 1 / np.sqrt(f) and np.abs(a).max() > 0.9 / np.sqrt(f)
  assert np.std(a) == pytest.approx(1 / np.sqrt(3 * f), rel=0.1)
  gaussian = lora.init_adapters(CFG, config.replace(init="gaussian", rank=8),
                                jax.random.PRNGKey(0))
  assert np.std(gaussian["layers"]["mlp"]["down_proj"]["lora_a"]) == pytest.approx(1 / 8, rel=0.1)
  assert lora.num_params(adapters) == n * (d * r + r * h * dh + h * dh * r + r * d + f * r + r * d)


def test_zero_b_equals_base_and_adapters_off_is_the_base(base):
  adapters = lora.init_adapters(CFG, CONFIG, jax.random.PRNGKey(1))
  np.testing.assert_array_equal(_logits(lora.attach(base, adapters, CONFIG)), _logits(base))
  assert lora.attach(base, None, CONFIG) is base


def test_forward_equals_merged_weights(base):
  """x W + (x A)(B alpha/r) on each target == the model with W + A B alpha/r, from the formula.

  (A subset of targets is compared with peft's own computation in test_peft_io.py.)
  """
  config = CONFIG
  adapters = _random_adapters(config)
  adapted = _logits(lora.attach(base, adapters, config))
  merged = {**base}
  merged["layers"] = jax.tree.map(lambda x: x, base["layers"])
  for target in config.targets:
    layer, name = lora.TARGET_PATHS[target]
    node = adapters["layers"][layer][name]
    a, b = np.asarray(node["lora_a"]), np.asarray(node["lora_b"])
    kernel = np.asarray(base["layers"][layer][name]["kernel"])
    # W'[l] = W[l] + (A[l] flattened over its input axes) @ (B[l] flattened over outputs) * s.
    ab = np.stack([a[l].reshape(-1, 4) @ b[l].reshape(4, -1) for l in range(CFG.num_layers)])
    merged["layers"][layer][name] = dict(merged["layers"][layer][name],
                                         kernel=kernel + ab.reshape(kernel.shape) * 3.0)
  np.testing.assert_allclose(adapted, _logits(merged), atol=2e-5)
  assert np.abs(adapted - _logits(base)).max() > 1e-3
  np.testing.assert_allclose(_logits(lora.merge(base, adapters, config)), _logits(merged),
                             atol=2e-5)


def test_attach_checks_targets(base):
  adapters = lora.init_adapters(CFG, lora.LoraConfig(targets="q"), jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="targets"):
    lora.attach(base, adapters, lora.LoraConfig(targets="q,v"))


def test_dropout_only_with_an_rng(base):
  config = CONFIG.replace(dropout=0.5)
  adapters = _random_adapters(config)
  no_dropout = _logits(lora.attach(base, adapters, config.replace(dropout=0.0)))
  np.testing.assert_array_equal(_logits(lora.attach(base, adapters, config)), no_dropout)
  key = jax.random.PRNGKey(3)
  dropped = _logits(lora.attach(base, adapters, config, dropout_rng=key))
  assert np.abs(dropped - no_dropout).max() > 1e-4
  np.testing.assert_array_equal(_logits(lora.attach(base, adapters, config, dropout_rng=key)),
                                dropped)
  # Dropout acts on the adapter's input only: with B = 0 the model is the base whatever the mask.
  zero_b = lora.init_adapters(CFG, config, jax.random.PRNGKey(1))
  np.testing.assert_array_equal(_logits(lora.attach(base, zero_b, config, dropout_rng=key)),
                                _logits(base))


def test_inverted_dropout_keeps_the_mean():
  x = jnp.ones((4, 2048, 8))
  leaves = {"lora_a": jnp.eye(8), "lora_b": jnp.eye(8),
            "lora_dropout_key": jax.random.key_data(jax.random.PRNGKey(0)),
            "lora_dropout_keep": jnp.float32(0.75)}
  out = np.asarray(lora.adapter_term(x, (2,), leaves, jnp.float32))
  assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
  assert out.mean() == pytest.approx(1.0, abs=0.02)


# All tests that differentiate share this config, so the loss compiles once.
TRAIN_CONFIG = lora.LoraConfig(rank=4, dropout=0.1)


@jax.jit
def _loss_and_grad(adapters, base, dropout_rng):
  """Mean negative log-likelihood of the tokens' last three under the adapted model."""

  def loss(adapters):
    policy = lora.attach(base, adapters, TRAIN_CONFIG, dropout_rng=dropout_rng)
    logprobs, _ = scoring.token_logprobs(policy, CFG, TOKENS[:, :3], MASK[:, :3], TOKENS[:, 3:],
                                         MASK[:, 3:], chunk_size=2)
    return -jnp.mean(logprobs)

  return jax.value_and_grad(loss)(adapters)


def test_gradient_reaches_b_first(base):
  """With B = 0, dL/dA = x^T (dL/dy) B^T = 0 and dL/dB = (x A)^T dL/dy != 0 (on every target)."""
  adapters = lora.init_adapters(CFG, TRAIN_CONFIG, jax.random.PRNGKey(1))
  _, grads = _loss_and_grad(adapters, base, jax.random.PRNGKey(0))
  for node in jax.tree.leaves(grads, is_leaf=lambda x: isinstance(x, dict) and "lora_a" in x):
    assert not np.any(node["lora_a"])
    b = np.abs(np.asarray(node["lora_b"]))
    assert np.all(b.reshape(b.shape[0], -1).max(axis=1) > 0)


def test_optimizer_steps_train_adapters_only(base):
  adapters = lora.init_adapters(CFG, TRAIN_CONFIG, jax.random.PRNGKey(1))
  tx = optax.adam(1e-2)
  state = state_lib.create(adapters, tx, frozen=base)
  # Optimizer moments exist for the adapters only.
  assert jax.tree.structure(state.opt_state[0].mu) == jax.tree.structure(adapters)
  losses = []
  new = state
  for i in range(4):
    loss, grads = _loss_and_grad(new.params, new.frozen, jax.random.PRNGKey(i))
    updates, opt_state = tx.update(grads, new.opt_state, new.params)
    new = new.replace(params=optax.apply_updates(new.params, updates), opt_state=opt_state)
    losses.append(float(loss))
  assert losses[-1] < losses[0]
  jax.tree.map(np.testing.assert_array_equal, new.frozen, base)
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), new.params, adapters)
  assert all(jax.tree.leaves(changed))


def test_generate_and_score_with_adapters(base):
  """The policy tree goes through generation and scoring unchanged; their log-probs agree."""
  policy = lora.attach(base, _random_adapters(CONFIG), CONFIG)
  rollout = generate_lib.generate(policy, CFG, TOKENS[:, :3], MASK[:, :3], jax.random.PRNGKey(0),
                                  num_samples=2, max_new_tokens=4, force_full_length=True)
  logprobs, _ = jax.jit(scoring.token_logprobs, static_argnums=1)(
      policy, CFG, rollout.prompt_tokens, rollout.prompt_mask, rollout.tokens,
      jnp.ones_like(rollout.tokens, bool))
  np.testing.assert_allclose(logprobs, rollout.logprobs, atol=1e-4)


def _mesh():
  if len(jax.devices()) < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  return Mesh(np.asarray(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))


def test_adapter_partition_specs():
  mesh = _mesh()
  config = lora.LoraConfig(rank=4)
  adapters = lora.init_adapters(CFG, config, jax.random.PRNGKey(0), mesh=mesh)
  specs = param_partition_specs(adapters, mesh)
  attn, mlp = specs["layers"]["attn"], specs["layers"]["mlp"]
  # A split like its kernel's input axes, B like its output axes, the rank replicated.
  assert attn["q_proj"] == {"lora_a": P(None, "fsdp", None), "lora_b": P(None, None, "tensor", None)}
  assert attn["k_proj"]["lora_b"] == P(None, None, "tensor", None)  # 2 KV heads over tensor=2
  assert attn["o_proj"] == {"lora_a": P(None, "tensor", None, None), "lora_b": P(None, None, "fsdp")}
  assert mlp["up_proj"] == {"lora_a": P(None, "fsdp", None), "lora_b": P(None, None, "tensor")}
  assert mlp["down_proj"] == {"lora_a": P(None, "tensor", None), "lora_b": P(None, None, "fsdp")}
  placed = adapters["layers"]["mlp"]["down_proj"]["lora_a"].sharding
  assert placed.spec == P(None, "tensor", None)


def test_sharded_forward_equals_unsharded(base):
  mesh = _mesh()
  adapters = _random_adapters(CONFIG)
  expected = _logits(lora.attach(base, adapters, CONFIG))
  sharded_base = shard_params(base, mesh)
  sharded_adapters = shard_params(adapters, mesh)
  out = jax.jit(lambda b, a: _logits(lora.attach(b, a, CONFIG)))(sharded_base, sharded_adapters)
  np.testing.assert_allclose(out, expected, atol=1e-5)
