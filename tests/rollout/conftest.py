"""Shared fixtures: a tiny random model whose next-token distributions are far from uniform."""

import functools

import jax
import numpy as np
import pytest

from rlvr_jax.models.config import preset
from rlvr_jax.models.transformer import Transformer, init_params
from rlvr_jax.rollout import generate as gen


@pytest.fixture(scope="session")
def tiny():
  """``(config, params)`` of ``preset("tiny")`` with weights scaled up.

  At the default init (std 0.02) every next-token distribution is nearly uniform, which would make
  greedy ties, truncation rules and log-prob checks vacuous; scaling the matrices gives entropies
  of roughly 1 to 3 nats over 256 tokens.
  """
  config = preset("tiny")
  params = init_params(config, jax.random.PRNGKey(0))
  params = jax.tree.map(lambda x: x * 5.0 if x.ndim >= 3 else x, params)
  params["lm_head"]["kernel"] = params["lm_head"]["kernel"] * 20.0
  params["embed"]["embedding"] = params["embed"]["embedding"] * 20.0
  return config, params


@pytest.fixture(scope="session")
def prompts():
  """Four prompts of different lengths, left-padded to 8 (with one full-length row)."""
  rows = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11, 12, 13, 14, 15, 16, 17]]
  tokens = np.zeros((4, 8), np.int32)
  mask = np.zeros((4, 8), bool)
  for i, r in enumerate(rows):
    tokens[i, 8 - len(r):] = r
    mask[i, 8 - len(r):] = True
  return rows, tokens, mask


# The settings of the one sampled rollout that several tests share (one compilation).
SAMPLED = dict(num_samples=2, max_new_tokens=6, temperature=0.7, stop_token_ids=(0,),
               force_full_length=True, return_entropy=True)


@pytest.fixture(scope="session")
def sampled(tiny, prompts):
  """``(rollout, settings)``: temperature 0.7, G=2, 6 new tokens, stops ignored (full length)."""
  config, params = tiny
  _, tokens, mask = prompts
  return gen.generate(params, config, tokens, mask, jax.random.PRNGKey(1), **SAMPLED), SAMPLED


REFERENCE_WIDTH = 16  # One jit shape for every reference forward pass.


@functools.partial(jax.jit, static_argnames="config")
def _forward(params, tokens, positions, mask, config):
  return Transformer(config).apply({"params": params}, tokens, positions, mask)[0]


@pytest.fixture(scope="session")
def full_logits():
  """``f(config, params, prompts, completions) -> [B, 16, V]`` uncached reference logits.

  Each row is the prompt's real tokens followed by the completion's, right-padded (so positions
  are plain 0, 1, ... and no left padding or cache is involved); ``logits[b, len(prompt) - 1 + t]``
  predicts completion token ``t``.
  """

  def f(config, params, rows, completions):
    seqs = [list(p) + list(c) for p, c in zip(rows, completions)]
    tokens = np.zeros((len(seqs), REFERENCE_WIDTH), np.int32)
    mask = np.zeros((len(seqs), REFERENCE_WIDTH), bool)
    for i, s in enumerate(seqs):
      tokens[i, :len(s)] = s
      mask[i, :len(s)] = True
    positions = np.broadcast_to(np.arange(REFERENCE_WIDTH, dtype=np.int32), tokens.shape)
    return np.asarray(_forward(params, tokens, positions, mask, config=config))

  return f
