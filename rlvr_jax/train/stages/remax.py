"""ReMax's baseline input (arXiv 2310.10505): one greedy completion per prompt, scored.

An input provider, on when the objective reads ``greedy_rewards`` (the ``remax`` preset): it adds
``greedy_rewards`` ``[P]``, the verifier's score of one greedy (temperature 0) completion of each
group's prompt under the sampling policy. No config keys.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from rlvr_jax.train import prng
from rlvr_jax.train.stages import base

DEFAULTS: Dict[str, Any] = {}


class GreedyRewards(base.Stage):
  """Provides ``greedy_rewards`` ``[P]``."""

  stream_id = 2
  provides = ("greedy_rewards",)

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    del settings
    self.sampler = run.sampler

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    examples = [ctx.examples[i] for i in group["example_id"][:, 0]]
    key = prng.stage_key(ctx.sample_key, ctx.step, self.stream_id, 0)
    _, texts = self.sampler.sample(ctx.params, examples, key, num_samples=1, temperature=0.0)
    rewards = np.asarray(ctx.scorer(texts, examples).rewards, np.float32)
    return dict(group, greedy_rewards=rewards), {"remax/greedy_reward": float(rewards.mean())}
