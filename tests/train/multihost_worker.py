"""One process of the 2-process test in test_multihost.py (not a test module itself).

Usage: python multihost_worker.py PROCESS_ID PORT OUT_FILE. Joins a 2-process CPU run (gloo
collectives), builds the (data=2) mesh over both processes' devices, runs two update steps of a
tiny bigram policy with each process feeding its own half of the batch, and writes the final
params (gathered to every host) to OUT_FILE as .npz.
"""

import sys

import jax

process_id, port, out_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)

import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from rlvr_jax import types  # pylint: disable=g-import-not-at-top,wrong-import-position
from rlvr_jax.objectives import presets  # pylint: disable=g-import-not-at-top,wrong-import-position
from rlvr_jax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rlvr_jax.train import state as state_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rlvr_jax.train import step  # pylint: disable=g-import-not-at-top,wrong-import-position

VOCAB, DIM, B, S, T = 12, 8, 8, 3, 5


def logprob_fn(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
  del prompt_mask
  prev = jnp.concatenate([prompt_tokens[:, -1:], completion_tokens[:, :-1]], axis=1)
  logp = jax.nn.log_softmax(params["embed"][prev] @ params["out"], axis=-1)
  token_lp = jnp.take_along_axis(logp, completion_tokens[..., None], axis=-1)[..., 0]
  return token_lp * completion_mask, None


rng = np.random.default_rng(0)  # the same global batch on both hosts; each feeds its half
params = {"embed": rng.normal(size=(VOCAB, DIM)).astype(np.float32),
          "out": (rng.normal(size=(DIM, VOCAB)) * 0.5).astype(np.float32)}
lengths = rng.integers(1, T + 1, size=B)
mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
batch = step.TrainBatch(
    prompt_tokens=rng.integers(0, VOCAB, (B, S)).astype(np.int32),
    prompt_mask=np.ones((B, S), bool),
    completion_tokens=rng.integers(0, VOCAB, (B, T)).astype(np.int32),
    loss=types.LossBatch(
        mask=mask, advantages=(rng.normal(size=(B, 1)) * mask).astype(np.float32),
        old_logprobs=(-rng.uniform(0.5, 3.0, (B, T)) * mask).astype(np.float32),
        ref_logprobs=np.zeros((B, T), np.float32), rollout_logprobs=np.zeros((B, T), np.float32),
        rewards=rng.normal(size=B).astype(np.float32), correct=np.zeros(B, np.float32),
        group_ids=np.repeat(np.arange(B // 4), 4).astype(np.int32),
        truncated=np.zeros(B, np.float32)))

mesh = mesh_lib.make_mesh(data=2)
tx, schedule = state_lib.make_optimizer(ml_collections.ConfigDict(
    dict(name="adamw", learning_rate=1e-2, grad_clip=1.0)))
specs = {"embed": P(), "out": P()}
state, shardings = state_lib.init_sharded(params, tx, specs, mesh, with_reference=False)
update = step.jit_update(step.make_update_fn(presets.get("dapo"), tx, logprob_fn,
                                             num_micro_batches=2, group_size=4,
                                             schedule=schedule),
                         shardings, mesh_lib.batch_sharding(mesh))
half = B // 2
local = jax.tree.map(lambda x: x[process_id * half:(process_id + 1) * half], batch)
for _ in range(2):
  state, metrics = update(state, mesh_lib.host_local_to_global(local, mesh))
final = {k: np.asarray(multihost_utils.process_allgather(v, tiled=True))
         for k, v in state.params.items()}
np.savez(out_file, loss=float(metrics["loss"]), **final)
jax.distributed.shutdown()
