"""Tests of the supervised warm-up (rlvr_jax.train.sft)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlvr_jax.train import sft


def _logprob_fn(params, prompt_tokens, prompt_mask, target_tokens, target_mask):
  """A bigram-free toy policy: log-softmax of one logit vector, whatever the context."""
  del prompt_tokens, prompt_mask, target_mask
  logprobs = jax.nn.log_softmax(params["logits"])[target_tokens]
  return logprobs, None


def _batches(counter):
  prompt = np.zeros((4, 2), np.int32)
  targets, mask = sft.pad_targets([[1, 2], [1], [1, 2], [2]], 3, pad_id=0)
  for i in itertools.count():
    counter.append(i)
    yield prompt, np.ones_like(prompt, bool), targets, mask


def test_nll_loss_is_the_token_mean():
  logprobs = jnp.asarray([[-1.0, -2.0, -5.0], [-3.0, 0.0, 0.0]])
  mask = jnp.asarray([[1, 1, 0], [1, 0, 0]])
  np.testing.assert_allclose(sft.nll_loss(logprobs, mask), (1 + 2 + 3) / 3)


def test_pad_targets():
  tokens, mask = sft.pad_targets([[5, 6, 7], [8]], 2, pad_id=0)
  np.testing.assert_array_equal(tokens, [[5, 6], [8, 0]])
  np.testing.assert_array_equal(mask, [[1, 1], [1, 0]])


def test_train_lowers_the_loss_and_stops_early_at_the_target():
  params = {"logits": jnp.zeros(4)}
  tx = optax.sgd(0.5)
  used, calls, logged = [], [], []

  def stop_fn(step, p):
    calls.append(step)
    # The toy's probability of token 1 (the most frequent target) passes 0.35 after some steps.
    return float(jax.nn.softmax(p["logits"])[1]) > 0.35

  out, steps = sft.train(params, tx=tx, logprob_fn=_logprob_fn, batches=_batches(used), num_steps=200,
                  log_fn=lambda s, m: logged.append((s, m["sft/loss"])), log_every=1000,
                  stop_fn=stop_fn, stop_every=5)
  assert calls and all(c % 5 == 0 for c in calls)
  assert len(used) == calls[-1] == steps < 200   # stopped at the first check that passed
  assert float(jax.nn.softmax(out["logits"])[1]) > 0.35
  assert logged[-1][0] == calls[-1]          # the stopping step is logged
  # Without the hook all 200 steps run and the loss falls.
  used2, logged2 = [], []
  # (train donates its input buffers: start from fresh params.)
  _, steps2 = sft.train({"logits": jnp.zeros(4)}, tx=tx, logprob_fn=_logprob_fn,
                        batches=_batches(used2), num_steps=200,
                        log_fn=lambda s, m: logged2.append((s, m["sft/loss"])), log_every=100)
  assert len(used2) == steps2 == 200 and [s for s, _ in logged2] == [100, 200]
  assert logged2[-1][1] < np.log(4)
