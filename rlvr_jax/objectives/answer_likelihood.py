"""VeriFree's reward-weighted answer log-likelihood term, and the ``verifree`` objective.

VeriFree (arXiv 2505.21493; sail-sg/VeriFree @c9ae30c, ``verifree.py`` ``learning_step``)
maximises ``J = E_z[pi(a* | x, z)]`` for a reference answer ``a*``. Its exact gradient has two
parts, and the official loss has one term for each, both sums over tokens averaged over the
batch's sequences:

* ``pg_loss = -sg(A_i) · sum_{t in z} log pi`` on the reasoning tokens, ``A`` the RLOO advantage
  of ``R_i = pi(a* | x, z_i)`` (``critic_type=rloo``, no ratio clipping);
* ``sft_loss = -sg(R_i) · sum_{t in a*} log pi(a*_t | x, z_i, a*_<t)`` on the spliced reference
  (``sft_coef_source=reward``).

Importing this module registers the ``verifree`` objective (``presets.register``; the recipe
``experiments/configs/group_rewards.py:verifree`` imports it). The trainer's group-reward hook (``rlvr_jax.rewards.group_functions.verifree``) splices ``a*``
after each sampled ``z`` and provides the loss inputs ``answer_mask`` ``[B, T]`` (1 on the
reference tokens, outside the policy-gradient mask) and ``answer_weights`` ``[B]`` (``R_i``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlvr_jax import advantages
from rlvr_jax.objectives import aggregation
from rlvr_jax.objectives import binding
from rlvr_jax.objectives import compose
from rlvr_jax.objectives import presets
from rlvr_jax.objectives import surrogates
from rlvr_jax.types import GlobalCounts

Array = jax.Array


def answer_nll_term(logprobs: Array, answer_mask: Array, answer_weights: Array):
  """Per-sequence ``-sg(w_i) · sum_t m_{i,t} · log pi_{i,t}`` ``[B]`` (VeriFree's ``sft_loss``
  before the batch mean); no diagnostics (the reward function logs the answer's log-prob)."""
  m = jnp.asarray(answer_mask, jnp.float32)
  if m.shape != logprobs.shape or answer_weights.shape != logprobs.shape[:1]:
    raise ValueError(f"need answer_mask {logprobs.shape} and answer_weights "
                     f"{logprobs.shape[:1]}; got {m.shape}, {answer_weights.shape}")
  answer_lp = jnp.sum(jnp.where(m > 0, logprobs, 0.0), axis=-1)
  return -jax.lax.stop_gradient(answer_weights) * answer_lp, {}


def over_sequences(loss: Array, mask: Array, counts: GlobalCounts) -> Array:
  """``(1/N_seq) Σ_i l_i`` for a per-sequence term ``[B]``, every row counted (the answer
  tokens lie outside the policy-gradient mask), divided by the batch's non-empty sequences as
  the policy-gradient term is."""
  del mask
  return jnp.sum(loss) / jnp.maximum(jnp.asarray(counts.num_sequences, jnp.float32), 1.0)


def answer_likelihood_loss(coef: float = 1.0) -> binding.Stage:
  """The loss term ``coef · (1/N_seq) Σ_i -R_i · Σ_{t in a*} log pi`` (reads ``logprobs``,
  ``answer_mask``, ``answer_weights``)."""
  return binding.bind("regularizer", answer_nll_term, {}, coef=coef, aggregation=over_sequences)


def verifree(*, answer_coef: float = 1.0, kl_coef: float = 0.0) -> compose.Objective:
  """VeriFree (arXiv 2505.21493): RLOO advantage of ``R = pi(a*|x,z)`` → REINFORCE on the
  reasoning tokens → seq-mean-token-sum, plus ``answer_coef`` × the reward-weighted answer
  log-likelihood (:func:`answer_likelihood_loss`); no KL (``kl_coef``, k3, as the official
  ``beta``). Matches the official ``learning_step`` with ``critic_type=rloo``,
  ``sft_coef_source=reward``; its batch mean is over the rows of a mini-batch, here over the
  batch's sequences with reasoning tokens. Needs ``config.rl.stages.group_rewards`` with the
  ``verifree`` function (``experiments/configs/group_rewards.py:verifree``).
  """
  regularizers = [answer_likelihood_loss(answer_coef)]
  if kl_coef:
    regularizers.append(compose.kl_loss(kl_coef, estimator="k3"))
  return compose.make_objective(
      "verifree",
      advantage=compose.advantage(advantages.leave_one_out),
      surrogate=compose.surrogate(surrogates.reinforce),
      aggregation=aggregation.seq_mean_token_sum,
      regularizers=tuple(regularizers),
  )


presets.register("verifree", verifree)
