"""Tests of the jit'd update step: micro-batching, sharding, remat and the scorer.

A tiny bigram policy and a token-mean policy-gradient objective (written here, independent of
``rlvr_jax.models`` and ``rlvr_jax.objectives``) isolate the step's own logic.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from rlvr_jax import types
from rlvr_jax.train import mesh as mesh_lib
from rlvr_jax.train import state as state_lib
from rlvr_jax.train import step

VOCAB = 12
DIM = 8


def init_params(seed=0):
  rng = np.random.default_rng(seed)
  return {
      "embed": jnp.asarray(rng.normal(size=(VOCAB, DIM)), jnp.float32),
      "out": jnp.asarray(rng.normal(size=(DIM, VOCAB)) * 0.5, jnp.float32),
  }


def logprob_fn(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
  """Bigram policy: token t is predicted from token t-1 (the last prompt token for t=0)."""
  del prompt_mask
  prev = jnp.concatenate([prompt_tokens[:, -1:], completion_tokens[:, :-1]], axis=1)
  logits = params["embed"][prev] @ params["out"]
  logp = jax.nn.log_softmax(logits, axis=-1)
  token_lp = jnp.take_along_axis(logp, completion_tokens[..., None], axis=-1)[..., 0]
  entropy = -(jnp.exp(logp) * logp).sum(-1)
  return token_lp * completion_mask, entropy


@dataclasses.dataclass(frozen=True)
class TokenMeanPG:
  """loss = -sum(ratio * A * mask) / num_tokens (global), ratio = exp(lp - old)."""

  needs_reference: bool = False
  needs_entropy: bool = False
  whole_groups: bool = False

  def loss(self, logprobs, batch, counts, entropy=None):
    ratio = jnp.exp(logprobs - batch.old_logprobs)
    per_token = -ratio * batch.advantages * batch.mask
    return per_token.sum() / counts.num_tokens, {"pg_tokens": batch.mask.sum() / counts.num_tokens}


def random_batch(num_prompts=4, group=4, prompt_len=3, length=5, seed=0):

  rng = np.random.default_rng(seed)
  b = num_prompts * group
  lengths = rng.integers(1, length + 1, size=b)
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.float32)
  loss = types.LossBatch(
      mask=jnp.asarray(mask),
      advantages=jnp.asarray(rng.normal(size=(b, 1)) * mask, jnp.float32),
      old_logprobs=jnp.asarray(-rng.uniform(0.5, 3.0, size=(b, length)) * mask, jnp.float32),
      ref_logprobs=jnp.zeros((b, length), jnp.float32),
      rollout_logprobs=jnp.zeros((b, length), jnp.float32),
      rewards=jnp.asarray(rng.normal(size=b), jnp.float32),
      correct=jnp.zeros((b,), jnp.float32),
      group_ids=jnp.asarray(np.repeat(np.arange(num_prompts), group), jnp.int32),
      truncated=jnp.zeros((b,), jnp.float32),
  )
  return step.TrainBatch(
      prompt_tokens=jnp.asarray(rng.integers(0, VOCAB, size=(b, prompt_len)), jnp.int32),
      prompt_mask=jnp.ones((b, prompt_len), bool),
      completion_tokens=jnp.asarray(rng.integers(0, VOCAB, size=(b, length)), jnp.int32),
      loss=loss)


def _optimizer():
  config = ml_collections.ConfigDict(dict(name="adamw", learning_rate=1e-2, weight_decay=0.01,
                                          grad_clip=1.0, schedule="constant"))
  return state_lib.make_optimizer(config)


def _run(num_micro, group_size=None, remat="none", mesh=None, specs=None):
  tx, schedule = _optimizer()
  params = init_params()
  batch = random_batch()
  fn = step.make_update_fn(TokenMeanPG(), tx, step.with_remat(logprob_fn, remat),
                           num_micro_batches=num_micro, group_size=group_size, schedule=schedule)
  if mesh is None:
    state = state_lib.create(params, tx)
    return jax.jit(fn)(state, batch)
  state, shardings = state_lib.init_sharded(params, tx, specs, mesh, with_reference=False)
  batch = mesh_lib.host_local_to_global(batch, mesh)
  return step.jit_update(fn, shardings, mesh_lib.batch_sharding(mesh))(state, batch)


def _reference_update(params, batch):
  """Full-batch loss gradient by numpy-free autodiff of the formula, then one clipped AdamW step."""
  def loss(p):
    lp, _ = logprob_fn(p, batch.prompt_tokens, batch.prompt_mask, batch.completion_tokens,
                       batch.loss.mask)
    ratio = jnp.exp(lp - batch.loss.old_logprobs)
    return -(ratio * batch.loss.advantages * batch.loss.mask).sum() / batch.loss.mask.sum()
  grads = jax.grad(loss)(params)
  norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
  scale = jnp.minimum(1.0, 1.0 / norm)
  # First AdamW step: m/(sqrt(v)+eps) = g/|g| elementwise (bias-corrected), plus decay.
  return jax.tree.map(
      lambda p, g: p - 1e-2 * ((g * scale) / (jnp.abs(g * scale) + 1e-8) + 0.01 * p),
      params, grads), norm


def test_single_step_matches_hand_written_update():
  state, metrics = _run(1)
  expected, norm = _reference_update(init_params(), random_batch())
  for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
  assert int(state.step) == 1
  np.testing.assert_allclose(metrics["learning_rate"], 1e-2)


@pytest.mark.parametrize("group_size", [None, 4])
def test_micro_batches_give_the_same_update(group_size):
  one, m1 = _run(1)
  four, m4 = _run(4, group_size=group_size)
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  for key in ("loss", "grad_norm", "pg_tokens", "entropy"):
    np.testing.assert_allclose(m1[key], m4[key], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m4["pg_tokens"], 1.0, rtol=1e-6)


def test_remat_does_not_change_the_update():
  plain, _ = _run(2)
  remat, _ = _run(2, remat="full")
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(remat.params)):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_sharded_over_eight_devices_equals_one_device():
  assert jax.device_count() == 8
  mesh = mesh_lib.make_mesh(data=2, fsdp=2, tensor=2)
  specs = {"embed": P("fsdp", "tensor"), "out": P("tensor", None)}
  sharded, metrics = _run(2, mesh=mesh, specs=specs)
  single, single_metrics = _run(2)
  assert sharded.params["embed"].sharding.spec == P("fsdp", "tensor")
  mu = sharded.opt_state[1][0].mu["embed"]
  assert mu.sharding.spec == P("fsdp", "tensor")
  for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  np.testing.assert_allclose(metrics["loss"], single_metrics["loss"], rtol=1e-6)


def test_split_and_merge_micro_batches_round_trip():
  x = jnp.arange(24).reshape(12, 2)
  split = step.split_micro_batches(x, 3, group_size=2)
  # Micro-batch 0 holds groups 0 and 3 (rows 0,1 and 6,7): an interleave of whole groups.
  np.testing.assert_array_equal(split[0][:, 0], [0, 2, 12, 14])
  np.testing.assert_array_equal(step._merge_micro_batches(split, 2), x)
  with pytest.raises(ValueError):
    step.split_micro_batches(x, 5, group_size=None)


def test_score_fn_micro_batched_equals_full():
  batch = random_batch()
  args = (batch.prompt_tokens, batch.prompt_mask, batch.completion_tokens, batch.loss.mask)
  full, _ = jax.jit(step.make_score_fn(logprob_fn))(init_params(), *args)
  micro, _ = jax.jit(step.make_score_fn(logprob_fn, 4, group_size=2))(init_params(), *args)
  np.testing.assert_allclose(full, micro, atol=1e-6)


def test_mesh_shapes():
  assert mesh_lib.mesh_shape(8) == (8, 1, 1)
  assert mesh_lib.mesh_shape(8, data=2, fsdp=-1, tensor=2) == (2, 2, 2)
  assert mesh_lib.mesh_shape(1) == (1, 1, 1)
  with pytest.raises(ValueError):
    mesh_lib.mesh_shape(8, data=3)
  mesh = mesh_lib.make_mesh(devices=jax.devices()[:1])
  assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}


def test_warmup_cosine_schedule():
  config = ml_collections.ConfigDict(dict(learning_rate=1.0, schedule="cosine", warmup_steps=10,
                                          decay_steps=100, end_learning_rate_factor=0.1))
  schedule = state_lib.make_schedule(config)
  np.testing.assert_allclose(schedule(5), 0.5)
  np.testing.assert_allclose(schedule(10), 1.0)
  np.testing.assert_allclose(schedule(60), 0.1 + 0.9 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(schedule(110), 0.1, rtol=1e-6)


def test_chunked_logprobs_give_the_same_update_as_unchunked():
  """The trainer path with the model's chunked scorer equals the full-logits path."""
  from rlvr_jax.models import config as model_config_lib
  from rlvr_jax.models import transformer
  model_config = model_config_lib.preset(
      "tiny", vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2,
      num_kv_heads=1, head_dim=8, max_position_embeddings=32)
  params = transformer.init_params(model_config, jax.random.key(0))
  batch = random_batch()
  tx, schedule = _optimizer()
  results = []
  for chunk_size in (None, 2):
    fn = step.model_logprob_fn(model_config, temperature=0.7, chunk_size=chunk_size,
                               return_entropy=True)
    update = step.make_update_fn(TokenMeanPG(), tx, fn, num_micro_batches=2, schedule=schedule)
    results.append(jax.jit(update)(state_lib.create(params, tx), batch))
  (a, ma), (b, mb) = results
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, atol=1e-6)
  np.testing.assert_allclose(ma["entropy"], mb["entropy"], rtol=1e-5)
  np.testing.assert_allclose(ma["grad_norm"], mb["grad_norm"], rtol=1e-5)


@pytest.mark.parametrize("name", ["grpo", "dapo"])
def test_real_presets_micro_batched_equals_full_batch(name):
  """The library's presets through the trainer: 4 micro-batches == 1 (KL reference included)."""
  from rlvr_jax.objectives import presets
  objective = presets.get(name)
  batch = random_batch()
  rng = np.random.default_rng(1)
  loss = dataclasses.replace(
      batch.loss, ref_logprobs=jnp.asarray(-rng.uniform(0.5, 3.0, batch.loss.mask.shape)
                                           * batch.loss.mask, jnp.float32))
  batch = dataclasses.replace(batch, loss=loss)
  tx, schedule = _optimizer()
  out = []
  for m in (1, 4):
    fn = step.make_update_fn(objective, tx, logprob_fn, num_micro_batches=m, group_size=4,
                             schedule=schedule)
    out.append(jax.jit(fn)(state_lib.create(init_params(), tx), batch))
  (a, ma), (b, mb) = out
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, atol=1e-6)
  assert set(ma) == set(mb)
  for key in ma:
    np.testing.assert_allclose(ma[key], mb[key], rtol=1e-5, atol=1e-6, err_msg=key)


@jax.custom_vjp
def _nan_gradient_if(x, bad):
  """Identity whose gradient is NaN where ``bad``: a finite loss with a non-finite gradient."""
  return x


_nan_gradient_if.defvjp(lambda x, bad: (x, bad),
                        lambda bad, g: (jnp.where(bad, jnp.nan, g), None))


@dataclasses.dataclass(frozen=True)
class PoisonedPG(TokenMeanPG):
  """TokenMeanPG whose loss (``poison="loss"``) or only whose gradient (``"grad"``) is NaN when
  any reward of the batch is NaN."""

  poison: str = "loss"

  def loss(self, logprobs, batch, counts, entropy=None):
    bad = jnp.isnan(batch.rewards).any()
    if self.poison == "grad":
      logprobs = _nan_gradient_if(logprobs, bad)
    loss, metrics = super().loss(logprobs, batch, counts, entropy)
    if self.poison == "loss":
      loss = jnp.where(bad, jnp.nan, loss)
    return loss, metrics


def _poisoned_batch():
  batch = random_batch()
  loss = dataclasses.replace(batch.loss, rewards=batch.loss.rewards.at[3].set(jnp.nan))
  return dataclasses.replace(batch, loss=loss)


@pytest.mark.parametrize("poison,num_micro", [("loss", 1), ("grad", 1), ("loss", 2)])
def test_non_finite_loss_or_gradient_skips_the_update(poison, num_micro):
  tx, schedule = _optimizer()
  fn = jax.jit(step.make_update_fn(PoisonedPG(poison=poison), tx, logprob_fn,
                                   num_micro_batches=num_micro, schedule=schedule))
  start = state_lib.create(init_params(), tx)
  # One good update first, so the optimizer state is not all zeros.
  good, good_metrics = fn(start, random_batch(seed=1))
  assert float(good_metrics["update/skipped"]) == 0.0
  assert int(good.step) == 1
  expected = jax.tree.map(np.asarray, good)
  skipped, metrics = fn(good, _poisoned_batch())
  assert float(metrics["update/skipped"]) == 1.0
  # Params, optimizer state and step counter are exactly those before the update.
  for a, b in zip(jax.tree.leaves(skipped), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), b)
  assert int(skipped.step) == 1
  # The non-finite values stay visible in the metrics (guards.mean_over_updates leaves them out).
  # (A NaN loss selected by ``where`` has a finite gradient: the loss check alone catches it.)
  bad = "loss" if poison == "loss" else "grad_norm"
  assert not np.isfinite(metrics[bad])
  # Training goes on from the intact state.
  after, after_metrics = fn(skipped, random_batch(seed=2))
  assert float(after_metrics["update/skipped"]) == 0.0 and int(after.step) == 2
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(after.params))


def test_skipped_update_with_donated_state_on_a_mesh():
  """The select over the state also works under ``jit_update`` (sharded, donated buffers)."""
  mesh = mesh_lib.make_mesh(data=2, fsdp=2, tensor=2)
  specs = {"embed": P("fsdp", "tensor"), "out": P("tensor", None)}
  tx, schedule = _optimizer()
  fn = step.make_update_fn(PoisonedPG(), tx, logprob_fn, schedule=schedule)
  state, shardings = state_lib.init_sharded(init_params(), tx, specs, mesh, with_reference=False)
  before = jax.tree.map(np.asarray, state.params)
  update = step.jit_update(fn, shardings, mesh_lib.batch_sharding(mesh))
  state, metrics = update(state, mesh_lib.host_local_to_global(_poisoned_batch(), mesh))
  assert float(metrics["update/skipped"]) == 1.0
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)):
    np.testing.assert_array_equal(np.asarray(a), b)
