"""continuous.generate(): each row equals the static engine run on that row alone, the schedule
(slots, prefill chunks, mesh shards) does not change the result, each prompt is prefilled once,
the cache has num_slots rows, one compile per shape, log-probs equal their teacher-forced
recomputation.

Four prompts x G=2 on the tiny model of ``conftest.py``, 12 new tokens, 3 slots (8 rows), so rows
start in three waves and refills happen mid-loop. Distinct jit shapes are few on purpose.
"""

import re

import jax
import jax.extend.core as jex
import numpy as np
import pytest

from rlvr_jax.rollout import continuous as cont
from rlvr_jax.rollout import generate as gen
from rlvr_jax.rollout import processors as pr
from rlvr_jax.rollout import scoring
from rlvr_jax.rollout import sharding
from rlvr_jax.train import mesh as mesh_lib

G, N, SLOTS = 2, 12, 3
KEY = jax.random.PRNGKey(7)
SETTINGS = dict(num_samples=G, max_new_tokens=N, temperature=0.7, return_entropy=True,
                pad_token_id=255)

score = jax.jit(scoring.token_logprobs,
                static_argnames=("config", "temperature", "chunk_size", "return_entropy"))


def _run(tiny, prompts, params=None, **kw):
  config, default_params = tiny
  params = default_params if params is None else params
  _, tokens, mask = prompts
  return cont.generate(params, config, tokens, mask, KEY, **{**SETTINGS, "num_slots": SLOTS,
                                                             "return_stats": True, **kw})


@pytest.fixture(scope="module")
def free_run(tiny, prompts):
  """``(rollout, stats)`` with no stop token: every row runs all N tokens."""
  return _run(tiny, prompts)


def _varied_stops(tokens):
  """Stop ids that end the rows at very different lengths: the tokens that rows 0, 3, 6 sample at
  steps 1, 5 and 9 (a row stops at the first of them it samples)."""
  return tuple(sorted({int(tokens[0, 1]), int(tokens[3, 5]), int(tokens[6, 9])}))


def test_each_row_equals_the_static_engine_on_that_row_alone(tiny, prompts, free_run):
  config, params = tiny
  _, tokens, mask = prompts
  stops = _varied_stops(np.asarray(free_run[0].tokens))
  r, _ = _run(tiny, prompts, stop_token_ids=stops)
  lengths = np.asarray(r.lengths)
  assert lengths.min() <= 2 and lengths.max() == N and len(set(lengths.tolist())) >= 4, lengths
  for b in range(len(lengths)):
    p = b // G
    ref = gen.generate(params, config, tokens[p:p + 1], mask[p:p + 1],
                       jax.random.fold_in(KEY, b), **{**SETTINGS, "num_samples": 1},
                       stop_token_ids=stops)
    np.testing.assert_array_equal(np.asarray(r.tokens)[b], np.asarray(ref.tokens)[0])
    assert r.lengths[b] == ref.lengths[0] and r.truncated[b] == ref.truncated[0]
    np.testing.assert_allclose(np.asarray(r.logprobs)[b], np.asarray(ref.logprobs)[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(r.entropy)[b], np.asarray(ref.entropy)[0], atol=1e-5)
  np.testing.assert_array_equal(r.prompt_tokens, np.repeat(tokens, G, axis=0))
  np.testing.assert_array_equal(r.prompt_mask, np.repeat(mask, G, axis=0))


def test_schedule_prefills_and_compiles(tiny, prompts, free_run):
  config, params = tiny
  rows, tokens, mask = prompts
  r, stats = free_run
  np.testing.assert_array_equal(r.lengths, N)
  assert np.all(np.asarray(r.truncated))
  # Each prompt is prefilled once (not G times), in chunks of ceil(SLOTS / G) = 2 prompts.
  assert int(stats.prefilled_prompts) == len(rows) and int(stats.prefill_calls) == 2
  # Equal lengths: the 8 rows run in waves of 3, 3 and 2 slots, N steps each.
  assert int(stats.decode_steps) == 3 * N
  # Same key, same rows; new prompt contents and stop ids of the same shape do not retrace.
  np.testing.assert_array_equal(_run(tiny, prompts)[0].tokens, r.tokens)
  traces = cont.num_traces()
  cont.generate(params, config, (tokens + 7) % config.vocab_size, mask[::-1].copy(),
                jax.random.PRNGKey(3), num_slots=SLOTS, stop_token_ids=(1, 2), **SETTINGS)
  assert cont.num_traces() == traces


def test_stop_lengths_and_teacher_forced_logprobs(tiny, prompts, free_run):
  config, params = tiny
  forced = np.array([1, N, 3, 7, 2, N, 5, 9], np.int32)
  r, stats = _run(tiny, prompts, stop_lengths=forced)
  np.testing.assert_array_equal(r.lengths, forced)
  np.testing.assert_array_equal(r.truncated, forced == N)
  tokens, free = np.asarray(r.tokens), np.asarray(free_run[0].tokens)
  for b, n in enumerate(forced):
    np.testing.assert_array_equal(tokens[b, :n], free[b, :n])  # A row's tokens keep their keys.
    assert np.all(tokens[b, n:] == 255) and np.all(np.asarray(r.logprobs)[b, n:] == 0)
  # 49 tokens over 3 slots: the schedule leaves at most a few slot-steps idle.
  assert int(stats.decode_steps) < forced.sum() / SLOTS + N
  lp, ent = score(params, config, r.prompt_tokens, r.prompt_mask, r.tokens, r.mask,
                  temperature=SETTINGS["temperature"], return_entropy=True)
  np.testing.assert_allclose(lp, r.logprobs, atol=1e-5)
  np.testing.assert_allclose(ent, r.entropy, atol=1e-5)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_mesh_shards_run_their_own_rows(tiny, prompts, free_run):
  config, params = tiny
  _, tokens, mask = prompts
  mesh = mesh_lib.make_mesh(2, 2, 2)
  r, stats = _run(tiny, prompts, mesh=mesh, params=sharding.shard_params(params, mesh))
  # Another schedule, the same rows: each of the 4 row shards decodes its prompt's 2 rows one
  # after the other in 1 slot, prefilling its prompt itself.
  np.testing.assert_array_equal(r.tokens, free_run[0].tokens)
  np.testing.assert_allclose(r.logprobs, free_run[0].logprobs, atol=1e-5)
  assert r.tokens.sharding.spec == sharding.row_spec(mesh, r.tokens.shape[0])
  assert int(stats.prefilled_prompts) == len(tokens) and int(stats.prefill_calls) == len(tokens)
  assert int(stats.decode_steps) == 2 * N


def _collectives_by_computation(hlo_text):
  """``{computation name: [collective op names]}`` of a compiled HLO module's text."""
  found, name = {}, None
  for line in hlo_text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      name = "ENTRY" if line.startswith("ENTRY") else line.split()[0]
    op = re.search(r"\s(all-gather|all-reduce|reduce-scatter|all-to-all)(-start)?\(", line)
    if op:
      found.setdefault(name, []).append(op.group(1))
  return found


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_mesh_decode_is_tensor_parallel(tiny, prompts, free_run):
  """On (data=2, fsdp=2, tensor=2): same rows as unsharded, each device's slot cache holds
  KV / tensor heads, and no all-gather runs outside the entry computation (fsdp shards are
  gathered once there; the loops only all-reduce activations and sampling reductions)."""
  config, params = tiny
  _, tokens, mask = prompts
  mesh = mesh_lib.make_mesh(2, 2, 2)
  placed = sharding.shard_params(params, mesh)
  r = _run(tiny, prompts, mesh=mesh, params=placed)[0]
  np.testing.assert_array_equal(r.tokens, free_run[0].tokens)
  stop_lengths = sharding.shard_rows(np.full(len(tokens) * G, N, np.int32), mesh)
  stop_ids = gen._stop_id_array(())  # pylint: disable=protected-access
  compiled = cont._generate.lower(  # pylint: disable=protected-access
      placed, sharding.shard_rows(tokens, mesh), sharding.shard_rows(mask, mesh), KEY,
      stop_ids, stop_lengths, config=config, mesh=mesh,
      processor=pr.default_chain(SETTINGS["temperature"]), force_full_length=False,
      num_slots=1, prefill_chunk=1,
      **{k: v for k, v in SETTINGS.items() if k != "temperature"}).compile().as_text()
  s = tokens.shape[1]
  per_device = set(re.findall(rf"f32\[(\d+),(\d+),{s + N},{config.head_dim}\]", compiled))
  assert per_device == {("1", str(config.num_kv_heads // 2))}, per_device
  collectives = _collectives_by_computation(compiled)
  assert "all-gather" in collectives.get("ENTRY", []), collectives
  in_loops = [op for name, ops in collectives.items() if name != "ENTRY" for op in ops]
  assert in_loops and set(in_loops) == {"all-reduce"}, collectives


def _cache_like_shapes(jaxpr, layers, kv_heads, head_dim):
  """``(rows, columns)`` of every array shaped like a stacked cache ``[L, rows, KV, columns, Dh]``
  (key ``"stacked"``) or one layer's ``[rows, KV, columns, Dh]`` (key ``"layer"``) in a (nested)
  jaxpr."""
  found = {"stacked": set(), "layer": set()}
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      shape = tuple(getattr(var.aval, "shape", ()))
      if len(shape) == 5 and shape[0] == layers and (shape[2], shape[4]) == (kv_heads, head_dim):
        found["stacked"].add((shape[1], shape[3]))
      if len(shape) == 4 and (shape[1], shape[3]) == (kv_heads, head_dim):
        found["layer"].add((shape[0], shape[2]))
    for param in eqn.params.values():
      for p in (param if isinstance(param, (tuple, list)) else (param,)):
        if isinstance(p, jex.ClosedJaxpr):
          p = p.jaxpr
        if isinstance(p, jex.Jaxpr):
          for key, shapes in _cache_like_shapes(p, layers, kv_heads, head_dim).items():
            found[key] |= shapes
  return found


def test_kv_cache_is_sized_by_slots(tiny, prompts):
  config, params = tiny
  rows, tokens, mask = prompts
  settings = {k: v for k, v in SETTINGS.items() if k != "temperature"}
  jaxpr = jax.make_jaxpr(
      lambda p, t, m, key: cont._generate(  # pylint: disable=protected-access
          p, t, m, key, gen._stop_id_array(()), np.full(len(rows) * G, N, np.int32),  # pylint: disable=protected-access
          processor=pr.default_chain(0.7), force_full_length=False,
          num_slots=SLOTS, prefill_chunk=2, config=config, mesh=None, **settings))(
              params, tokens, mask, KEY).jaxpr
  s = tokens.shape[1]
  shapes = _cache_like_shapes(jaxpr, config.num_layers, config.num_kv_heads, config.head_dim)
  # The per-layer slot caches and the ring of prefill_chunk = 2 prompts are there, and nothing
  # larger: the static engine's cache would hold P * G = 8 rows.
  assert (SLOTS, s + N) in shapes["layer"] and (2, s) in shapes["stacked"], shapes
  assert max(r * c for r, c in shapes["layer"] | shapes["stacked"]) == SLOTS * (s + N), shapes


def test_bad_input(tiny, prompts):
  config, params = tiny
  _, tokens, mask = prompts
  call = lambda **kw: cont.generate(params, config, tokens, mask, KEY, max_new_tokens=N,
                                    num_samples=G, **kw)
  with pytest.raises(ValueError, match="num_slots"):
    call(num_slots=0)
  with pytest.raises(ValueError, match="prefill_chunk"):
    call(prefill_chunk=0)
  with pytest.raises(ValueError, match="stop_lengths"):
    call(stop_lengths=np.ones(3, np.int32))
  with pytest.raises(ValueError, match="stop_lengths"):
    call(stop_lengths=np.zeros(len(tokens) * G, np.int32))
  with pytest.raises(ValueError, match="left-padded"):
    cont.generate(params, config, tokens, mask[:, ::-1].copy(), KEY, max_new_tokens=N)
