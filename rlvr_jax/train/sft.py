"""Supervised warm-up: teacher-forced cross-entropy on (prompt, gold completion) pairs.

The CPU demo starts RL from a policy that solves its task *some* of the time; this module gets it
there. For a prompt ``x`` and target completion ``y`` (the gold answer followed by the end token),

    L(theta) = - sum_{b,t} m_{b,t} log pi_theta(y_{b,t} | x_b, y_{b,<t}) / sum_{b,t} m_{b,t},

the token-mean negative log-likelihood of the completion tokens only (the prompt is context). The
log-probs come from the same log-prob function as the RL update (chunked, no ``[B, T, V]`` logits).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlvr_jax.data import task as task_lib
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import state as state_lib
from rlvr_jax.train import step as step_lib


def nll_loss(logprobs: jax.Array, mask: jax.Array) -> jax.Array:
  """Token-mean negative log-likelihood; ``logprobs``/``mask`` are ``[B, T]``."""
  mask = mask.astype(jnp.float32)
  return -jnp.sum(logprobs * mask) / jnp.maximum(mask.sum(), 1.0)


def make_sft_update(tx: optax.GradientTransformation, logprob_fn: step_lib.LogprobFn):
  """``update(state, prompt_tokens, prompt_mask, target_tokens, target_mask) -> (state, metrics)``.

  Unjitted; metrics are ``sft/loss`` (token NLL) and ``grad_norm``.
  """

  def loss_fn(params, prompt_tokens, prompt_mask, target_tokens, target_mask):
    logprobs, _ = logprob_fn(params, prompt_tokens, prompt_mask, target_tokens, target_mask)
    return nll_loss(logprobs, target_mask)

  def update(state: state_lib.TrainState, prompt_tokens, prompt_mask, target_tokens, target_mask):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, prompt_tokens, prompt_mask,
                                              target_tokens, target_mask)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"sft/loss": loss, "grad_norm": optax.global_norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return update


def pad_targets(targets: Sequence[Sequence[int]], length: int, pad_id: int
                ) -> Tuple[np.ndarray, np.ndarray]:
  """Right-pads target id lists to ``length``: ``(tokens [B, length] int32, mask [B, length])``.

  Longer targets are truncated (their end token is then lost; size ``length`` to avoid it).
  """
  tokens = np.full((len(targets), length), pad_id, np.int32)
  mask = np.zeros((len(targets), length), np.float32)
  for i, target in enumerate(targets):
    target = list(target)[:length]
    tokens[i, :len(target)] = target
    mask[i, :len(target)] = 1.0
  return tokens, mask


def train(params: Any, *, tx: optax.GradientTransformation, logprob_fn: step_lib.LogprobFn,
          batches: Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
          num_steps: int, log_fn: Callable[[int, Dict[str, float]], None] = lambda s, m: None,
          log_every: int = 50, stop_fn: Optional[Callable[[int, Any], bool]] = None,
          stop_every: int = 50) -> Tuple[Any, int]:
  """Runs up to ``num_steps`` SFT updates from ``params``: ``(new params, steps run)``.

  With ``stop_fn``, the warm-up ends early at the first multiple of ``stop_every`` steps where
  ``stop_fn(step, params)`` is true (e.g. "the policy solves 40% of a probe set"): how many steps
  a tiny model needs to learn a task varies a lot with its initialisation, a target accuracy
  much less.

  Args:
    params: initial parameters (their buffers are donated to the first update: do not reuse them).
    tx: optimizer (a fresh state is created; SFT's optimizer state is not kept for RL).
    logprob_fn: see :data:`rlvr_jax.train.step.LogprobFn`.
    batches: yields ``(prompt_tokens [B,S], prompt_mask [B,S], target_tokens [B,T],
      target_mask [B,T])``; keep shapes fixed to compile once.
    num_steps: number of updates.
    log_fn: called as ``log_fn(step, metrics)`` every ``log_every`` steps and at the end.
    log_every: logging period.
    stop_fn: optional early stop, called every ``stop_every`` steps with the current params.
    stop_every: period of ``stop_fn``.
  """
  update = jax.jit(make_sft_update(tx, logprob_fn), donate_argnums=0)
  state = state_lib.create(params, tx)
  history: List[Dict[str, float]] = []
  for i in range(num_steps):
    state, metrics = update(state, *next(batches))
    stop = (stop_fn is not None and (i + 1) % stop_every == 0 and i + 1 < num_steps
            and stop_fn(i + 1, state.params))
    if (i + 1) % log_every == 0 or i + 1 == num_steps or stop:
      history.append({k: float(v) for k, v in metrics.items()})
      log_fn(i + 1, history[-1])
    if stop:
      return state.params, i + 1
  return state.params, num_steps


def sft_target(example: task_lib.Example) -> str:
  """The completion the warm-up teaches: ``metadata['sft_target']`` (the answer in the task's
  answer format) when the task gives one, else the bare gold answer."""
  return str((example.metadata or {}).get("sft_target", example.answer))


def batches(sampler: text_sampler.TextSampler, stream: Iterator[task_lib.Example],
            batch_size: int, target_length: int
            ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
  """SFT batches from a stream of examples: prompts encoded as in RL, targets
  ``sft_target + eos`` right-padded to ``target_length`` (the RL completion budget)."""
  tokenizer = sampler.tokenizer
  while True:
    examples = [next(stream) for _ in range(batch_size)]
    prompt_tokens, prompt_mask = sampler.encode(examples)
    targets = [tokenizer(sft_target(e), add_special_tokens=False)["input_ids"]
               + [tokenizer.eos_token_id] for e in examples]
    yield (prompt_tokens, prompt_mask) + pad_targets(targets, target_length, sampler.pad_id)


def warm_up(params: Any, config: Any, *, sampler: text_sampler.TextSampler,
            stream: Iterator[task_lib.Example], logprob_fn: step_lib.LogprobFn,
            probe_fn: Optional[Callable[[int, Any], float]],
            log_fn: Callable[[str], None]) -> Tuple[Any, int]:
  """The RL run's supervised warm-up (``config`` is ``config.sft``): ``(params, steps run)``.

  ``probe_fn(step, params) -> pass@1`` on a probe of training prompts; the warm-up stops at the
  first check (every ``check_every`` steps) where it reaches ``target_pass_at_1`` (``0``: no
  probe, all ``num_steps``). The optimizer decays over the whole warm-up when
  ``optimizer.decay_steps`` is 0 (a cosine decay to 0 converges far better than a constant rate
  in few steps).
  """
  tx, _ = state_lib.make_optimizer(config.optimizer, num_updates=config.num_steps)
  target = config.target_pass_at_1

  def stop_fn(step: int, params_: Any) -> bool:
    pass_at_1 = probe_fn(step, params_)
    log_fn(f"sft step {step}: probe pass@1 {pass_at_1:.3f} (stop at {target})")
    return pass_at_1 >= target

  fmt = lambda m: ", ".join(f"{k}={v:.4g}" for k, v in m.items())
  return train(params, tx=tx, logprob_fn=logprob_fn,
               batches=batches(sampler, stream, config.batch_size, sampler.max_new_tokens),
               num_steps=config.num_steps,
               log_fn=lambda s, m: log_fn(f"sft step {s}/{config.num_steps}: {fmt(m)}"),
               log_every=config.log_every,
               stop_fn=stop_fn if target and probe_fn is not None else None,
               stop_every=config.check_every)
