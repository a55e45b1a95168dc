"""The RL loop with ``config.rollout.engine = "continuous"``: two GRPO steps of the tiny config
whose 4 x 4 rollouts go through the continuous-batching engine with 6 slots, split over a
(data=4, tensor=2) mesh."""

import json

import numpy as np

from experiments.configs import tiny
from rlvr_jax.rollout import continuous
from rlvr_jax.train import loop


def test_two_rl_steps_with_the_continuous_engine(tmp_path):
  config = tiny.tiny_config(num_steps=2, sft_steps=0)
  config.rollout.engine = "continuous"
  config.rollout.num_slots = 6
  # On the 8 simulated devices: 4 row shards, each decoding its prompt's 4 rows in 2 slots.
  config.mesh.data, config.mesh.tensor = 4, 2
  traces = continuous.num_traces()
  loop.train(config, str(tmp_path))
  assert continuous.num_traces() > traces  # The rollouts were the continuous engine's.
  with open(tmp_path / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f if line.strip()]
  assert [r["step"] for r in records] == [1, 2]
  assert all(np.isfinite(r["loss"]) for r in records)
