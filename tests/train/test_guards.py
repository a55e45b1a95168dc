"""Failure guards of the training loop: consecutive skipped updates, skip-aware metric means."""

import math

import pytest

from rlvr_jax.train import guards


def test_skip_guard_stops_after_k_consecutive_skips():
  guard = guards.SkipGuard(max_consecutive=3)
  guard.update(1, [0.0, 1.0])
  guard.update(2, [1.0])
  assert guard.consecutive == 2
  guard.update(3, [0.0, 1.0, 1.0])  # an applied update resets the count
  assert guard.consecutive == 2 and guard.total == 4
  with pytest.raises(guards.TooManySkippedUpdates) as info:
    guard.update(4, [1.0], last_checkpoint=3)
  message = str(info.value)
  assert "step 4" in message and "3 consecutive" in message
  assert "checkpoint at step 3 is intact" in message


def test_skip_guard_without_checkpoint_and_argument_checks():
  guard = guards.SkipGuard(max_consecutive=1)
  with pytest.raises(guards.TooManySkippedUpdates, match="no checkpoint was written yet"):
    guard.update(7, 1.0)
  for bad in (0, -1, 1.5, True):
    with pytest.raises(ValueError, match="max_consecutive"):
      guards.SkipGuard(bad)


def test_mean_over_updates_leaves_skipped_updates_out():
  per_update = [
      {"loss": 1.0, "grad_norm": 2.0, "ratio_max": 1.5, "ratio_min": 0.5, "update/skipped": 0.0},
      {"loss": math.nan, "grad_norm": math.inf, "ratio_max": math.nan, "ratio_min": math.nan,
       "update/skipped": 1.0},
      {"loss": 3.0, "grad_norm": 4.0, "ratio_max": 1.2, "ratio_min": 0.8, "update/skipped": 0.0},
  ]
  out = guards.mean_over_updates(per_update)
  assert out == {"loss": 2.0, "grad_norm": 3.0, "ratio_max": 1.5, "ratio_min": 0.5,
                 "update/skipped": 1.0}
  # Every update skipped: the values are reported as they were (not finite), flagged by the count.
  out = guards.mean_over_updates(per_update[1:2] * 2)
  assert out["update/skipped"] == 2.0 and math.isnan(out["loss"])
  # Metrics without the flag (an older step function) average over all updates.
  assert guards.mean_over_updates([{"loss": 1.0}, {"loss": 2.0}]) == {"loss": 1.5}


def test_nonfinite_leaves_names_only_bad_float_leaves():
  import jax
  import jax.numpy as jnp
  import numpy as np
  tree = {"w": jnp.ones((2, 3)), "b": jnp.array([0.0, jnp.inf], jnp.bfloat16),
          "n": np.array([np.nan]), "step": jnp.zeros((), jnp.int32), "key": jax.random.key(0)}
  assert guards.nonfinite_leaves(tree) == ["['b']", "['n']"]
  assert guards.nonfinite_leaves({"w": jnp.ones(3), "i": jnp.arange(3)}) == []


def test_a_run_that_keeps_skipping_stops_with_its_last_good_checkpoint_intact(tmp_path):
  """The pieces as a loop wires them: update step, skip-aware metrics, guard, checkpoints."""
  import dataclasses
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from rlvr_jax import types
  from rlvr_jax.train import checkpoint
  from rlvr_jax.train import state as state_lib
  from rlvr_jax.train import step as step_lib

  @dataclasses.dataclass(frozen=True)
  class MeanLogprob:
    """loss = -mean(logprobs * advantages): NaN advantages make it NaN."""
    needs_entropy: bool = False
    whole_groups: bool = False

    def loss(self, logprobs, batch, counts, entropy=None):
      return -(logprobs * batch.advantages).sum() / counts.num_tokens, {}

  def logprob_fn(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
    del prompt_tokens, prompt_mask
    return jax.nn.log_softmax(params["logits"])[completion_tokens] * completion_mask, None

  def batch(advantage):
    b, t = 2, 3
    mask = jnp.ones((b, t))
    zeros = jnp.zeros((b, t))
    loss = types.LossBatch(mask=mask, advantages=jnp.full((b, t), advantage), old_logprobs=zeros,
                           ref_logprobs=zeros, rollout_logprobs=zeros, rewards=jnp.zeros(b),
                           correct=jnp.zeros(b), group_ids=jnp.zeros(b, jnp.int32),
                           truncated=jnp.zeros(b))
    return step_lib.TrainBatch(prompt_tokens=jnp.zeros((b, 1), jnp.int32),
                               prompt_mask=jnp.ones((b, 1), bool),
                               completion_tokens=jnp.ones((b, t), jnp.int32), loss=loss)

  tx = optax.adam(0.1)
  update = jax.jit(step_lib.make_update_fn(MeanLogprob(), tx, logprob_fn))
  state = state_lib.create({"logits": jnp.zeros(4)}, tx)
  guard = guards.SkipGuard(max_consecutive=2)
  advantages = [1.0, 1.0, float("nan"), float("nan")]
  with checkpoint.Checkpointer(str(tmp_path), async_save=False) as ckpt:
    with pytest.raises(guards.TooManySkippedUpdates, match="step 4.*step 3 is intact"):
      for step, advantage in enumerate(advantages, start=1):
        state, metrics = update(state, batch(advantage))
        metrics = guards.mean_over_updates([jax.device_get(metrics)])
        guard.update(step, metrics["update/skipped"], last_checkpoint=ckpt.latest_step())
        ckpt.save(step, state)
    assert ckpt.all_steps() == [1, 2, 3]
    # Step 3 skipped its update: its checkpoint holds the same finite state as step 2.
    restored, _ = ckpt.restore(3, abstract_state=checkpoint.abstract_state(state))
    second, _ = ckpt.restore(2, abstract_state=checkpoint.abstract_state(state))
  for a, b, live in zip(jax.tree.leaves(restored), jax.tree.leaves(second),
                        jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(live))
  assert int(restored.step) == 2 and np.isfinite(np.asarray(restored.params["logits"])).all()
