"""Cost of every preset's jit-compiled loss+gradient relative to plain token-mean REINFORCE.

Times ``jax.jit(jax.value_and_grad(objective.loss))`` on one ``[B, T]`` batch (default
``[512, 1024]`` tokens, groups of 8) for each preset in ``rlvr_jax.objectives.presets`` and for a
plain REINFORCE objective (``−A·lp``, token-mean), and prints JSON: per preset the time in
milliseconds and its ratio to the plain objective. Advantages and the batch are built once,
outside the timed region (they run once per rollout batch, not per micro-batch). Times are the
minimum over ``--repeats`` rounds after one compile run, each round timing the plain objective
and the preset in turn (the ratio uses the baseline measured beside each preset). Presets that
read an entropy receive a constant ``[B, T]`` array; computing it from logits is the trainer's cost.

  python benchmarks/objectives.py                       # [512, 1024]
  python benchmarks/objectives.py --batch 64 --length 256 --repeats 5   # CPU-sized
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlvr_jax import advantages
from rlvr_jax.objectives import aggregation, compose, presets, regularizers, surrogates
from rlvr_jax.types import AdvantageInputs, LossBatch, global_counts


def build_inputs(batch: int, length: int, group: int, seed: int):
  """Synthetic rollout of ``batch`` sequences: random lengths, binary rewards, log-probs."""
  rng = np.random.default_rng(seed)
  prompts = batch // group
  lengths = rng.integers(1, length + 1, (prompts, group)).astype(np.int32)
  mask = (np.arange(length)[None, None] < lengths[..., None]).astype(np.float32)
  correct = (rng.uniform(size=(prompts, group)) < 0.4).astype(np.float32)
  old = rng.normal(-1.0, 0.5, (batch, length)).astype(np.float32)
  ref = old + rng.normal(0, 0.05, old.shape).astype(np.float32)
  inputs = AdvantageInputs(
      rewards=jnp.asarray(correct), mask=jnp.asarray(mask),
      tokens=jnp.asarray(rng.integers(0, 4, (prompts, group, length)).astype(np.int32)),
      lengths=jnp.asarray(lengths), truncated=jnp.asarray((lengths == length).astype(np.float32)),
      token_rewards=jnp.zeros((prompts, group, length)),
      extras={"greedy_rewards": jnp.asarray(correct[:, 0]),
              "self_rewards": jnp.asarray(rng.uniform(0, 1, (prompts, group)).astype(np.float32)),
              "old_logprobs": jnp.asarray(old.reshape(prompts, group, length)),
              "ref_logprobs": jnp.asarray(ref.reshape(prompts, group, length)),
              "correct": jnp.asarray(correct), "step": jnp.asarray(1000)})
  flat_correct = correct.reshape(batch)
  truncated = (lengths.reshape(batch) == length).astype(np.float32)
  extras = {"thr": jnp.asarray(rng.normal(size=(batch, length)).astype(np.float32)),
            "selfreward_position": jnp.asarray(np.minimum(lengths.reshape(batch), length - 1)),
            "selfreward_weights": regularizers.laser_class_weights(flat_correct, truncated)}
  logprobs = jnp.asarray(old + rng.normal(0, 0.1, old.shape).astype(np.float32))
  entropy = jnp.asarray(rng.uniform(0, 2, (batch, length)).astype(np.float32))
  constants = dict(old=old, ref=ref, correct=flat_correct, truncated=truncated, extras=extras)
  return inputs, constants, logprobs, entropy


def loss_batch(objective, inputs, constants):
  rewards = objective.reward_transform(inputs.rewards, inputs)
  adv = objective.advantage(dataclasses.replace(inputs, rewards=rewards))
  batch, length = constants["old"].shape
  adv = advantages.broadcast_to_tokens(adv, inputs.mask).reshape(batch, length)
  group = inputs.rewards.shape[1]
  return LossBatch(
      mask=inputs.mask.reshape(batch, length), advantages=adv,
      old_logprobs=jnp.asarray(constants["old"]), ref_logprobs=jnp.asarray(constants["ref"]),
      rollout_logprobs=jnp.asarray(constants["old"]), rewards=rewards.reshape(batch),
      correct=jnp.asarray(constants["correct"]),
      group_ids=jnp.repeat(jnp.arange(batch // group, dtype=jnp.int32), group),
      truncated=jnp.asarray(constants["truncated"]), extras=constants["extras"])


def compiled_step(objective, batch, logprobs, entropy):
  """A zero-argument callable running the jit-compiled loss+grad once (compiled on creation)."""
  counts = global_counts(batch.mask, batch.group_ids)
  entropy = entropy if objective.needs_entropy else None
  step = jax.jit(jax.value_and_grad(objective.loss, has_aux=True))
  run = lambda: jax.block_until_ready(step(logprobs, batch, counts, entropy))
  run()
  return run


def interleaved_min_ms(runs, repeats: int) -> list:
  """Minimum time of each callable over ``repeats`` rounds that call them in turn.

  Alternating the preset with the baseline exposes both to the same load on a shared machine,
  and the minimum is the least noisy estimate of the intrinsic cost.
  """
  best = [float("inf")] * len(runs)
  for _ in range(repeats):
    for i, run in enumerate(runs):
      start = time.perf_counter()
      run()
      best[i] = min(best[i], time.perf_counter() - start)
  return [b * 1e3 for b in best]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=512, help="sequences B")
  parser.add_argument("--length", type=int, default=1024, help="tokens per sequence T")
  parser.add_argument("--group", type=int, default=8, help="samples per prompt G")
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--presets", default="", help="comma list (default: all)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  prompts = args.batch // args.group
  inputs, constants, logprobs, entropy = build_inputs(args.batch, args.length, args.group,
                                                      args.seed)
  # Overrides only make the synthetic batch valid (bundle size must divide P; DAPO's length
  # budget must fit T); they do not change the loss's cost.
  bundle = next(b for b in (5, 4, 2, 1) if prompts % b == 0)
  overrides = {"riskpo": {"bundle_size": bundle},
               "dapo": {"max_length": args.length, "cache_length": max(1, args.length // 4)}}
  plain = compose.make_objective(
      "reinforce_token_mean", advantage=compose.advantage(advantages.group_zscore),
      surrogate=compose.surrogate(surrogates.reinforce), aggregation=aggregation.token_mean)
  plain_run = compiled_step(plain, loss_batch(plain, inputs, constants), logprobs, entropy)
  names = args.presets.split(",") if args.presets else presets.names()
  results = {}
  baselines = []
  for name in names:
    objective = presets.get(name, **overrides.get(name, {}))
    run = compiled_step(objective, loss_batch(objective, inputs, constants), logprobs, entropy)
    base_ms, ms = interleaved_min_ms([plain_run, run], args.repeats)
    baselines.append(base_ms)
    results[name] = {"ms": round(ms, 4), "baseline_ms": round(base_ms, 4),
                     "ratio": round(ms / base_ms, 3), "needs_entropy": objective.needs_entropy}
  baseline_ms = min(baselines)
  print(json.dumps({
      "shape": [args.batch, args.length], "group": args.group, "repeats": args.repeats,
      "device": str(jax.devices()[0]), "platform": platform.machine(),
      "baseline": {"name": "reinforce_token_mean", "ms": round(baseline_ms, 3)},
      "presets": results,
  }, indent=1))


if __name__ == "__main__":
  main()
