"""Checkpointer: round trip, keep-last-N, target shardings, SIGKILL mid-save, HF export hook."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rlvr_jax.train import checkpoint


def _state(seed=0):
  params = {"w": jnp.arange(12.0).reshape(3, 4) + seed, "b": jnp.zeros((4,), jnp.bfloat16)}
  opt = optax.adamw(1e-3)
  return {
      "params": params,
      "opt_state": opt.init(params),
      "step": jnp.asarray(seed, jnp.int32),
      "key": jax.random.key(seed),
      "raw_key": jax.random.PRNGKey(seed),
  }


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_and_keep_last_n(tmp_path):
  with checkpoint.Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
    assert ckpt.latest_step() is None
    with pytest.raises(FileNotFoundError):
      ckpt.restore(abstract_state=checkpoint.abstract_state(_state()))
    for step in range(1, 5):
      # Advance the optimizer so its state is not all zeros.
      state = _state(step)
      grads = jax.tree.map(jnp.ones_like, state["params"])
      _, state["opt_state"] = optax.adamw(1e-3).update(
          grads, state["opt_state"], state["params"])
      assert ckpt.save(step, state, {"data_position": step * 10, "config": {"lr": 1e-3}})
    ckpt.wait()
    assert ckpt.all_steps() == [3, 4]
    assert ckpt.latest_step() == 4
    restored, extras = ckpt.restore(abstract_state=checkpoint.abstract_state(state))
    _assert_trees_equal(restored, state)
    assert extras == {"data_position": 40, "config": {"lr": 1e-3}}
    old, old_extras = ckpt.restore(3, abstract_state=checkpoint.abstract_state(state))
    assert int(old["step"]) == 3 and old_extras["data_position"] == 30
    with pytest.raises(FileNotFoundError, match="available"):
      ckpt.restore(1, abstract_state=checkpoint.abstract_state(state))
  # A new Checkpointer on the same directory sees the same steps (resumption).
  with checkpoint.Checkpointer(str(tmp_path), max_to_keep=2) as again:
    assert again.latest_step() == 4


def test_restore_into_target_shardings(tmp_path):
  devices = np.array(jax.devices()[:8]).reshape(4, 2)
  mesh = Mesh(devices, ("data", "tensor"))
  w = jax.device_put(jnp.arange(64.0).reshape(8, 8), NamedSharding(mesh, P("data", "tensor")))
  state = {"params": {"w": w}, "key": jax.random.key(3)}
  with checkpoint.Checkpointer(str(tmp_path), async_save=False) as ckpt:
    ckpt.save(7, state)
    target = {"params": {"w": NamedSharding(mesh, P(None, "data"))},
              "key": NamedSharding(mesh, P())}
    restored, extras = ckpt.restore(
        abstract_state=checkpoint.abstract_state(state, shardings=target))
  assert extras == {}
  assert restored["params"]["w"].sharding == target["params"]["w"]
  assert restored["key"].sharding == target["key"]
  np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.asarray(w))


def test_restore_partial_from_train_state(tmp_path):
  from rlvr_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top
  params = {"w": jnp.arange(6.0).reshape(2, 3)}
  tx = optax.adam(1e-3)
  train_state = state_lib.TrainState(step=jnp.asarray(4), params=params, opt_state=tx.init(params))
  with checkpoint.Checkpointer(str(tmp_path), async_save=False) as ckpt:
    ckpt.save(4, train_state)
    ckpt.save(5, train_state.replace(params={"w": params["w"] + 1}))
  target = NamedSharding(Mesh(np.array(jax.devices()[:2]), ("data",)), P("data"))
  abstract = {"params": {"w": jax.ShapeDtypeStruct((2, 3), jnp.float32, sharding=target)}}
  latest = checkpoint.restore_partial(str(tmp_path), abstract)
  np.testing.assert_array_equal(np.asarray(latest["params"]["w"]), np.asarray(params["w"]) + 1)
  assert latest["params"]["w"].sharding == target
  older = checkpoint.restore_partial(str(tmp_path), abstract, step=4)
  np.testing.assert_array_equal(np.asarray(older["params"]["w"]), np.asarray(params["w"]))
  with pytest.raises(FileNotFoundError):
    checkpoint.restore_partial(str(tmp_path), abstract, step=9)


def test_to_jsonable():
  cfg = ml_collections.ConfigDict({"lr": 1e-3, "shape": (2, 3), "nested": {"g": np.int64(8)}})
  out = checkpoint.to_jsonable({"config": cfg, "arr": np.arange(3), "fn": len, "none": None})
  assert out == {"config": {"lr": 1e-3, "shape": [2, 3], "nested": {"g": 8}},
                 "arr": [0, 1, 2], "fn": repr(len), "none": None}


_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    from rlvr_jax.train import checkpoint
    ckpt = checkpoint.Checkpointer(sys.argv[1], max_to_keep=2, async_save=False)
    step = 0
    while True:
      step += 1
      # 32 MiB per save: long enough to be caught mid-write.
      ckpt.save(step, {"w": np.full((8 * 1024 * 1024,), step, np.float32)}, {"pos": step})
      print("saved", step, flush=True)
""")


def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
  directory = str(tmp_path / "ckpt")
  proc = subprocess.Popen([sys.executable, "-c", _CHILD, directory],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  try:
    assert proc.stdout.readline().split() == ["saved", "1"]
    deadline = time.time() + 60
    partial = None
    while time.time() < deadline and partial is None:
      partial = next((n for n in os.listdir(directory) if "tmp" in n), None)
    assert partial is not None, "never observed a save in progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
  partial_step = int(partial.split(".")[0])
  ckpt = checkpoint.Checkpointer(directory, max_to_keep=2, async_save=False)
  try:
    latest = ckpt.latest_step()
    assert latest == partial_step - 1
    abstract = {"w": jax.ShapeDtypeStruct((8 * 1024 * 1024,), jnp.float32)}
    state, extras = ckpt.restore(abstract_state=abstract)
    assert extras == {"pos": latest}
    np.testing.assert_array_equal(np.asarray(state["w"][:4]), np.full((4,), latest, np.float32))
    # The directory stays usable: the next save after a crash commits normally.
    ckpt.save(latest + 1, {"w": np.zeros((8 * 1024 * 1024,), np.float32)}, {"pos": -1})
    assert ckpt.latest_step() == latest + 1
  finally:
    ckpt.close()


def test_export_hf_round_trip(tmp_path):
  """Checkpoint → HF directory (models.hf.export_hf) → load_hf gives the same params."""
  hf = pytest.importorskip("rlvr_jax.models.hf")
  from rlvr_jax import models  # pylint: disable=g-import-not-at-top
  config = models.preset("tiny")
  # Random values of the right shapes; eval_shape traces init without compiling it.
  shapes = jax.eval_shape(lambda: models.init_params(config, jax.random.key(0)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape).astype(np.float32), s.dtype), shapes)
  opt_state = optax.adam(1e-3).init(params)
  state = {"params": params, "opt_state": opt_state, "step": jnp.asarray(3)}
  with checkpoint.Checkpointer(str(tmp_path / "c"), async_save=False) as ckpt:
    ckpt.save(3, state)
  # Only the params' abstract tree is needed, not the optimizer state's.
  out = checkpoint.export_hf(str(tmp_path / "c"), str(tmp_path / "hf"), model_config=config,
                             abstract_params=shapes)
  assert out == str(tmp_path / "hf")
  _, loaded = hf.load_hf(out)
  for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
    np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32))
  assert jax.tree.structure(loaded) == jax.tree.structure(params)


def test_save_and_load_params(tmp_path):
  params = {"layer": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3),
                      "bias": np.ones(3, np.float32)}, "scale": np.float32(2.0)}
  path = str(tmp_path / "p.msgpack")
  checkpoint.save_params(path, jax.tree_util.tree_map(jnp.asarray, params))
  like = jax.tree_util.tree_map(jnp.zeros_like, params)
  loaded = checkpoint.load_params(path, like)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
  assert not os.path.exists(path + ".tmp")
  # An abstract target (jax.eval_shape) gives the same arrays, with its dtypes.
  abstract = jax.eval_shape(lambda: jax.tree_util.tree_map(jnp.asarray, params))
  loaded = checkpoint.load_params(path, abstract)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, params)
  assert loaded["layer"]["kernel"].dtype == np.float32
  wrong_shape = dict(like, layer={"kernel": np.zeros((3, 3)), "bias": np.zeros(3)})
  with pytest.raises(ValueError, match="kernel"):
    checkpoint.load_params(path, wrong_shape)
  with pytest.raises(ValueError):
    checkpoint.load_params(path, {"other": np.zeros(2)})
  with pytest.raises(FileNotFoundError):
    checkpoint.load_params(str(tmp_path / "missing"), like)


@pytest.mark.parametrize("keep,kept", [(None, [1, 2, 3]), (0, [1, 2, 3]), (1, [3]), (2, [2, 3])])
def test_keep_has_a_meaning_for_every_value(tmp_path, keep, kept):
  """``keep``: None or 0 keep every checkpoint, k >= 1 the newest k (0 used to delete each one)."""
  with checkpoint.Checkpointer(str(tmp_path), max_to_keep=keep, async_save=False) as ckpt:
    for step in (1, 2, 3):
      ckpt.save(step, _state(step))
    assert ckpt.all_steps() == kept


@pytest.mark.parametrize("keep", [-1, 1.5, True, "2"])
def test_keep_rejects_other_values(tmp_path, keep):
  with pytest.raises(ValueError, match="checkpoint.keep"):
    checkpoint.Checkpointer(str(tmp_path), max_to_keep=keep)
  assert not os.listdir(tmp_path)


def test_save_refuses_non_finite_state_and_keeps_the_last_good_one(tmp_path):
  good = _state(1)
  with checkpoint.Checkpointer(str(tmp_path), async_save=False) as ckpt:
    ckpt.save(1, good, {"data_position": 10})
    bad = dict(good, params={"w": good["params"]["w"].at[0, 0].set(jnp.nan),
                             "b": good["params"]["b"]})
    with pytest.raises(checkpoint.NonFiniteStateError) as info:
      ckpt.save(2, bad, {"data_position": 20})
    message = str(info.value)
    assert "step 2" in message and "['params']['w']" in message
    assert "step 1" in message  # the checkpoint that stays the latest
    assert ckpt.all_steps() == [1]
    restored, extras = ckpt.restore(abstract_state=checkpoint.abstract_state(good))
  _assert_trees_equal(restored, good)
  assert extras == {"data_position": 10}


def _train_state(hidden=4):
  from rlvr_jax.train import state as state_lib
  tx = optax.adamw(1e-3)
  return state_lib.create({"w": jnp.ones((3, hidden)), "b": jnp.zeros((hidden,))}, tx)


def test_check_resume_accepts_a_matching_state_and_writes_nothing(tmp_path):
  ckpt_dir = str(tmp_path / "checkpoints")
  assert checkpoint.check_resume(ckpt_dir, checkpoint.abstract_state(_train_state())) is None
  assert not os.path.exists(ckpt_dir)  # a fresh workdir stays untouched
  state = _train_state()
  with checkpoint.Checkpointer(ckpt_dir, async_save=False) as ckpt:
    ckpt.save(5, state, {"config": {"model": {"hidden": 4}}})
  before = sorted(os.walk(tmp_path))
  assert checkpoint.check_resume(ckpt_dir, jax.eval_shape(lambda: state)) == 5
  assert sorted(os.walk(tmp_path)) == before


def test_check_resume_rejects_another_model_with_a_clear_error(tmp_path):
  ckpt_dir = str(tmp_path / "checkpoints")
  with checkpoint.Checkpointer(ckpt_dir, async_save=False) as ckpt:
    ckpt.save(5, _train_state(4), {"config": {"model": {"hidden": 4, "layers": 2}}})
  new_config = ml_collections.ConfigDict({"model": {"hidden": 8, "layers": 2}})
  with pytest.raises(checkpoint.IncompatibleCheckpointError) as info:
    checkpoint.check_resume(ckpt_dir, checkpoint.abstract_state(_train_state(8)),
                            config=new_config)
  message = str(info.value)
  assert ckpt_dir in message and "step 5" in message
  assert "params.w" in message and "(3, 4)" in message and "(3, 8)" in message
  assert "model.hidden: 4 -> 8" in message and "layers" not in message
  # Another tree (e.g. a reference model now kept) is rejected too, naming the extra leaves.
  with_ref = _train_state(4).replace(ref_params={"w": jnp.ones((3, 4)), "b": jnp.zeros((4,))})
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match="ref_params"):
    checkpoint.check_resume(ckpt_dir, checkpoint.abstract_state(with_ref))
  # A different dtype is a different state as well.
  as_bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if x.dtype == jnp.float32 else x,
                         _train_state(4))
  with pytest.raises(checkpoint.IncompatibleCheckpointError, match="bfloat16"):
    checkpoint.check_resume(ckpt_dir, checkpoint.abstract_state(as_bf16))


def test_save_params_refuses_non_finite_params(tmp_path):
  path = str(tmp_path / "p.msgpack")
  with pytest.raises(checkpoint.NonFiniteStateError, match=r"\['w'\]"):
    checkpoint.save_params(path, {"w": jnp.array([1.0, jnp.inf]), "b": jnp.zeros(2)})
  assert not os.listdir(tmp_path)
