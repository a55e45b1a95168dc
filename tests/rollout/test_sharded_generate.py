"""Generation on the training mesh (rlvr_jax/rollout/sharding.py, generate(mesh=...)).

On 8 simulated CPU devices: each mesh generates, from the same key, the tokens of unsharded
generation (log-probs to 1e-5), compiles once, keeps its rows, KV cache and outputs split as the
rules say; the trainer runs RL steps with generation split over a (data=4, tensor=2) mesh.
"""

import json
import re

import jax
import numpy as np
import pytest

from experiments.configs import tiny as tiny_configs
from rlvr_jax.models import partition
from rlvr_jax.rollout import generate as gen
from rlvr_jax.rollout import processors as pr
from rlvr_jax.rollout import sharding
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import loop
from rlvr_jax.train import mesh as mesh_lib

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")

# P = 4 prompts x G = 4 samples: the (data=8) mesh cannot split the prompts, so it prefills them
# replicated and splits the 16 rows after repetition; the 4-way batch meshes split the prompts.
G, N, TEMPERATURE = 4, 6, 1.0


@pytest.fixture(scope="module")
def reference(tiny, prompts):
  """``(settings, rollout)``: unsharded sampling, with stop ids that end some rows early."""
  config, params = tiny
  _, tokens, mask = prompts
  settings = dict(num_samples=G, max_new_tokens=N, temperature=TEMPERATURE, return_entropy=True)
  free = gen.generate(params, config, tokens, mask, jax.random.PRNGKey(3), **settings)
  # Tokens drawn at step 2 of a few rows: those rows stop there, others run on (stop ids are
  # traced, so this does not recompile).
  settings["stop_token_ids"] = tuple(sorted(set(np.asarray(free.tokens)[::5, 2].tolist())))
  rollout = gen.generate(params, config, tokens, mask, jax.random.PRNGKey(3), **settings)
  lengths = np.asarray(rollout.lengths)
  assert lengths.min() < N and lengths.max() == N  # stops and a full-length row both occur
  return settings, rollout


def _cache_shape_per_device(config, params, tokens, mask, settings, mesh):
  """``(rows, KV)`` of one device's per-layer decode caches ``[rows, KV, S + N, Dh]`` in the
  compiled program (the lowering hits the cache of the call just made: no new trace or
  compile)."""
  compiled = gen._generate.lower(  # pylint: disable=protected-access
      sharding.shard_params(params, mesh), sharding.shard_rows(tokens, mesh),
      sharding.shard_rows(mask, mesh), jax.random.PRNGKey(3),
      gen._stop_id_array(settings["stop_token_ids"]),  # pylint: disable=protected-access
      config=config, num_samples=G, max_new_tokens=N,
      processor=pr.default_chain(TEMPERATURE, None, None, None), pad_token_id=0,
      return_entropy=True, force_full_length=False, mesh=mesh).compile()
  dims = (r"(\d+)", r"(\d+)", tokens.shape[1] + N, config.head_dim)
  pattern = r"f32\[" + ",".join(map(str, dims)) + r"\]"
  return {tuple(int(v) for v in m) for m in re.findall(pattern, compiled.as_text())}


@pytest.mark.parametrize("data,fsdp,tensor", [(8, 1, 1), (4, 1, 2), (2, 2, 2)])
def test_mesh_generation_equals_unsharded(tiny, prompts, reference, data, fsdp, tensor):
  config, params = tiny
  _, tokens, mask = prompts
  settings, plain = reference
  mesh = mesh_lib.make_mesh(data, fsdp, tensor)
  traces = gen.num_traces()
  out = gen.generate(params, config, tokens, mask, jax.random.PRNGKey(3), mesh=mesh, **settings)
  assert gen.num_traces() == traces + 1
  np.testing.assert_array_equal(out.tokens, plain.tokens)
  np.testing.assert_array_equal(out.lengths, plain.lengths)
  np.testing.assert_array_equal(out.truncated, plain.truncated)
  np.testing.assert_allclose(out.logprobs, plain.logprobs, atol=1e-5)
  np.testing.assert_allclose(out.entropy, plain.entropy, atol=1e-5)

  # Outputs stay on the devices, rows split over data x fsdp (each device holds B / 8 or B / 4).
  b = tokens.shape[0] * G
  for x in (out.tokens, out.logprobs, out.lengths, out.prompt_tokens):
    assert len(x.sharding.device_set) == 8
    assert x.sharding.shard_shape(x.shape)[0] == b // (data * fsdp)
  # The KV cache in the decode loop: rows split like the outputs, the 2 KV heads over tensor.
  shapes = _cache_shape_per_device(config, params, tokens, mask, settings, mesh)
  assert (b // (data * fsdp), config.num_kv_heads // tensor) in shapes
  assert all(kv == config.num_kv_heads // tensor for _, kv in shapes)

  # The trainer's case: params already placed by the partition rules, other prompts and key.
  placed = partition.shard_params(params, mesh)
  again = gen.generate(placed, config, (tokens + 5) % config.vocab_size, mask,
                       jax.random.PRNGKey(4), mesh=mesh, **settings)
  assert gen.num_traces() == traces + 1
  assert not np.array_equal(again.tokens, out.tokens)


def test_row_and_cache_specs_fall_back_to_replication():
  mesh = mesh_lib.make_mesh(4, 1, 2)
  assert sharding.row_spec(mesh, 8) == jax.sharding.PartitionSpec(("data", "fsdp"))
  assert sharding.row_spec(mesh, 6) == jax.sharding.PartitionSpec()  # 4 does not divide 6
  assert sharding.cache_spec(mesh, 8, 2) == jax.sharding.PartitionSpec(
      None, ("data", "fsdp"), "tensor", None, None)
  assert sharding.cache_spec(mesh, 6, 3) == jax.sharding.PartitionSpec(None, None, None, None,
                                                                       None)


def test_trainer_generates_on_a_data4_tensor2_mesh(tmp_path, monkeypatch):
  config = tiny_configs.tiny_config("dapo", num_steps=2, sft_steps=0)  # no reference to score
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 4, 1, 2
  seen = []

  def recording_generate(*args, **kwargs):
    rollout = gen.generate(*args, **kwargs)
    seen.append((kwargs["mesh"], rollout.tokens.sharding, rollout.tokens.shape))
    return rollout

  monkeypatch.setattr(text_sampler, "generate_fn", recording_generate)
  loop.train(config, str(tmp_path))
  with open(tmp_path / "metrics.jsonl") as f:
    steps = [json.loads(line) for line in f]
  assert [m["step"] for m in steps] == [1, 2]
  assert all(np.isfinite(m["loss"]) and m["num_tokens"] > 0 for m in steps)
  assert len(seen) == 2  # one generation per step (no evaluation in this config)
  for mesh, tokens_sharding, shape in seen:
    assert dict(mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    assert shape == (config.rl.num_prompts * config.rl.num_samples, config.rl.max_new_tokens)
    # 16 rows over 4 batch shards, each shard on a tensor pair: 8 devices, 4 rows each.
    assert len(tokens_sharding.device_set) == 8
    assert tokens_sharding.shard_shape(shape) == (4, shape[1])
