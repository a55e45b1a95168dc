"""Source of notebooks/objectives_tour.ipynb (build with `python notebooks/build.py`)."""

# %% [markdown]
# # A tour of RLVR objectives: where does the gradient go?
#
# Every RLVR method in `rlvr_jax.objectives.presets` ends in a loss `L(lp)` of the policy's
# log-probs `lp[b, t]` of the sampled tokens. Its derivative
#
# $$w_{b,t} = -\frac{\partial L}{\partial\, \mathrm{lp}_{b,t}}$$
#
# is the **per-token gradient weight**: the policy-gradient update is
# $\sum_{b,t} w_{b,t} \nabla_\theta \log\pi_\theta(o_{b,t})$, so $w>0$ pushes a token up and
# $w<0$ pushes it down. Summing over a sequence gives its **effective weight**
# $W_b = \sum_t w_{b,t}$, how hard the whole completion is reinforced.
#
# This notebook builds one synthetic batch, runs each preset's reward transform → advantage →
# loss exactly as the trainer does, takes `jax.grad`, and draws the weights. Then it shows three
# known biases as pictures: length normalisation, std normalisation and clip-higher.
#
# Runs in well under a minute on a CPU. Change the knobs in the next cell and rerun.

# %%
import dataclasses

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rlvr_jax import advantages
from rlvr_jax import types
from rlvr_jax.objectives import presets

# Knobs.
PRESETS = ["grpo", "dr_grpo", "dapo", "gspo", "cispo", "dispo", "rloo", "reinforce_pp",
           "w_reinforce", "pacs", "real"]
OVERRIDES = {}  # e.g. {"dapo": {"epsilon_high": 0.5}, "grpo": {"std_epsilon": 1e-4}}
SEED = 0

# 3 prompts x 4 samples: a medium, a hard and an easy question; 1 = verified correct.
REWARDS = np.array([[1, 0, 1, 0],
                    [1, 0, 0, 0],
                    [1, 1, 1, 0]], np.float32)
LENGTHS = np.array([[4, 14, 9, 6],
                    [12, 16, 5, 10],
                    [3, 8, 7, 15]], np.int32)
MAX_LEN = 16
print("available presets:", presets.names())

# %% [markdown]
# ## The batch and the pipeline
#
# `AdvantageInputs` holds the `[P, G]` rewards and `[P, G, T]` masks the advantage stage sees;
# `LossBatch` holds the constants the differentiated loss sees. We evaluate the gradient
# **on-policy** (`lp = old_logprobs`, every ratio is 1), as on the first mini-batch of a step, and
# with the reference equal to the behaviour policy, so KL terms contribute no gradient and the
# pictures show the policy-gradient part alone. Presets with an entropy bonus get a constant
# entropy array: its gradient flows through the parameters, not through `lp`.

# %%
def make_inputs(rewards, lengths, max_len, seed=0):
  """AdvantageInputs for binary rewards plus random behaviour log-probs [P, G, T]."""
  rewards = np.asarray(rewards, np.float32)
  lengths = np.asarray(lengths, np.int32)
  mask = (np.arange(max_len) < lengths[..., None]).astype(np.float32)
  rng = np.random.default_rng(seed)
  old = np.where(mask > 0, -rng.gamma(1.0, 0.7, size=mask.shape), 0.0).astype(np.float32)
  tokens = rng.integers(1, 50, size=mask.shape).astype(np.int32)
  inputs = types.AdvantageInputs(
      rewards=jnp.asarray(rewards), mask=jnp.asarray(mask), tokens=jnp.asarray(tokens),
      lengths=jnp.asarray(lengths), truncated=jnp.zeros(rewards.shape, jnp.float32),
      token_rewards=jnp.zeros(mask.shape, jnp.float32),
      # KL-in-reward stages (RLOO, REINFORCE++) read old/ref log-probs from extras.
      extras={"old_logprobs": jnp.asarray(old), "ref_logprobs": jnp.asarray(old),
              "correct": jnp.asarray(rewards)})
  return inputs, old


def make_loss_batch(objective, inputs, old):
  """Runs the objective's reward transform and advantage stage; returns the LossBatch [B, T]."""
  p, g, t = inputs.mask.shape
  rewards = objective.reward_transform(inputs.rewards, inputs)
  adv = objective.advantage(dataclasses.replace(inputs, rewards=rewards))
  adv = advantages.broadcast_to_tokens(adv, inputs.mask)
  old = jnp.asarray(old).reshape(p * g, t)
  return types.LossBatch(
      mask=inputs.mask.reshape(p * g, t), advantages=adv.reshape(p * g, t), old_logprobs=old,
      ref_logprobs=old, rollout_logprobs=old, rewards=rewards.reshape(-1),
      correct=inputs.extras["correct"].reshape(-1),
      group_ids=jnp.repeat(jnp.arange(p, dtype=jnp.int32), g),
      truncated=inputs.truncated.reshape(-1))


def token_weights(objective, batch, logprobs=None):
  """w = -dL/dlp, [B, T], at `logprobs` (default: on-policy, lp = old_logprobs)."""
  logprobs = batch.old_logprobs if logprobs is None else logprobs
  entropy = jnp.ones_like(logprobs) if objective.needs_entropy else None

  @jax.jit
  def weights(lp, batch):
    counts = types.global_counts(batch.mask, batch.group_ids)
    return -jax.grad(lambda x: objective.loss(x, batch, counts, entropy)[0])(lp)

  return np.asarray(weights(logprobs, batch))


inputs, old = make_inputs(REWARDS, LENGTHS, MAX_LEN, SEED)
objectives = {name: presets.get(name, **OVERRIDES.get(name, {})) for name in PRESETS}
batches = {name: make_loss_batch(obj, inputs, old) for name, obj in objectives.items()}
weights = {name: token_weights(objectives[name], batches[name]) for name in PRESETS}
mask = np.asarray(batches[PRESETS[0]].mask)
seq_labels = [f"q{i // 4}.{i % 4}\n{'✓' if r else '✗'} L={n}"
              for i, (r, n) in enumerate(zip(REWARDS.reshape(-1), LENGTHS.reshape(-1)))]
for name in PRESETS:
  print(f"{name:>13}: max|w| = {np.abs(weights[name]).max():.2e}   "
        f"advantage of the first sequence = {float(batches[name].advantages[0, 0]):+.3f}")

# %% [markdown]
# ## Per-token gradient weight
#
# One panel per preset; rows are the 12 sequences (prompt.sample, ✓/✗, length), columns token
# positions. Each panel has its own colour scale (Dr. GRPO divides by a constant 3000, so its raw
# weights are tiny). Things to see: GRPO/GSPO spread a sequence's weight evenly over its tokens
# (longer → lighter per token), DAPO/CISPO/DISPO/Dr. GRPO give every token of a sequence the same
# weight whatever the length; REINFORCE++ has no per-group baseline (it whitens returns over all
# tokens of the batch), so a sequence's weight depends on the other prompts; REAL and PACS use no
# advantage at all: their weights come from a classification loss over each group.

# %%
fig, axes = plt.subplots(3, 4, figsize=(16, 11), constrained_layout=True)
for ax, name in zip(axes.flat, PRESETS):
  w = np.where(mask > 0, weights[name], np.nan)
  scale = np.nanmax(np.abs(w))
  im = ax.imshow(w, cmap="RdBu", vmin=-scale, vmax=scale, aspect="auto")
  ax.set_title(name + (" (experimental)" if name in presets.EXPERIMENTAL else ""))
  ax.set_yticks(range(len(seq_labels)), [s.replace("\n", " ") for s in seq_labels], fontsize=7)
  ax.set_xlabel("token position")
  fig.colorbar(im, ax=ax, shrink=0.8, format="%.0e")
axes.flat[-1].axis("off")
fig.suptitle("per-token gradient weight  w = -dL/dlp  (blue: pushed up, red: pushed down)")
plt.show()

# %% [markdown]
# ## Effective weight per sequence
#
# $W_b = \sum_t w_{b,t}$, divided by each preset's largest $|W_b|$ so rows compare. Read a row
# left to right: three groups of four. In the easy question (q2) the lone wrong answer weighs as
# much as the three right ones together (group-centred advantages sum to zero), and the length
# of each completion decides how that weight is split under token-level aggregation. W-REINFORCE
# barely rewards the correct answers (λ = 0.1) and punishes every wrong one. REAL and PACS are group-relative classifiers: PACS (a summed score)
# ends up with RLOO's pattern, REAL (a length-averaged score) with GRPO's.

# %%
seq_weight = np.stack([weights[name].sum(axis=1) for name in PRESETS])
norm = seq_weight / np.abs(seq_weight).max(axis=1, keepdims=True)
fig, ax = plt.subplots(figsize=(13, 6))
im = ax.imshow(norm, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
ax.set_yticks(range(len(PRESETS)), PRESETS)
ax.set_xticks(range(len(seq_labels)), seq_labels, fontsize=8)
for i in range(norm.shape[0]):
  for j in range(norm.shape[1]):
    ax.text(j, i, f"{norm[i, j]:+.2f}", ha="center", va="center", fontsize=7)
for x in (3.5, 7.5):
  ax.axvline(x, color="k", lw=1)
fig.colorbar(im, ax=ax)
ax.set_title("effective weight per sequence  W_b = Σ_t w_bt  (row-normalised)")
plt.show()

# %% [markdown]
# Checks on the pictures (they run in CI): with a group-centred advantage and on-policy ratios,
# GRPO's sequence weights sum to zero in every group, and its weight is the same for every
# token of a sequence; DAPO's per-token weight is the advantage over the global token count.

# %%
grpo_w = seq_weight[PRESETS.index("grpo")] if "grpo" in PRESETS else None
if grpo_w is not None and not OVERRIDES.get("grpo"):
  np.testing.assert_allclose(grpo_w.reshape(3, 4).sum(axis=1), 0.0, atol=1e-6)
  w = weights["grpo"]
  per_token = w.sum(1) / mask.sum(1)
  np.testing.assert_allclose(np.where(mask > 0, w, 0), per_token[:, None] * mask, atol=1e-7)
if "dapo" in PRESETS and not OVERRIDES.get("dapo"):
  dapo_batch = batches["dapo"]
  np.testing.assert_allclose(weights["dapo"], dapo_batch.advantages / mask.sum(), atol=1e-7)
print("checks passed")

# %% [markdown]
# ## Bias 1: length normalisation
#
# One group of 8 answers, half right and half wrong, with lengths 4 to 32. GRPO averages each
# sequence's token losses (`seq-mean-token-mean`), so its **per-token** weight falls as $1/|o|$:
# a long wrong answer is punished less per token than a short one, and a short right answer is
# rewarded more: the length bias Dr. GRPO (arXiv 2503.20783) points out. Token-level
# aggregation (DAPO's `token-mean`, Dr. GRPO's constant) gives every token the same weight, so
# the **per-sequence** weight grows with length instead.

# %%
len_lengths = np.array([[4, 4, 8, 8, 16, 16, 32, 32]], np.int32)
len_rewards = np.array([[1, 0, 1, 0, 1, 0, 1, 0]], np.float32)
len_inputs, len_old = make_inputs(len_rewards, len_lengths, 32, SEED)
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
n = len_lengths.reshape(-1)
for name, style in (("grpo", "o-"), ("dr_grpo", "s--"), ("dapo", "^:")):
  obj = presets.get(name)
  w = token_weights(obj, make_loss_batch(obj, len_inputs, len_old))
  per_token = w.sum(1) / n
  unit = np.abs(per_token[:2]).max()  # normalise by the weight at the shortest length
  for sign, label in ((1, "correct"), (0, "wrong")):
    sel = len_rewards.reshape(-1) == sign
    axes[0].plot(n[sel], per_token[sel] / unit, style, label=f"{name} ({label})")
    axes[1].plot(n[sel], w.sum(1)[sel] / (unit * 4), style, label=f"{name} ({label})")
axes[0].set(xlabel="sequence length", ylabel="per-token weight (÷ value at L=4)",
            title="per-token weight vs length")
axes[1].set(xlabel="sequence length", ylabel="sequence weight (÷ value at L=4)",
            title="per-sequence weight vs length (Dr. GRPO and DAPO coincide)")
for ax in axes:
  ax.axhline(0, color="k", lw=0.5)
  ax.set_xticks([4, 8, 16, 32])
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=8)
fig.subplots_adjust(bottom=0.22)
plt.show()

# %% [markdown]
# ## Bias 2: std normalisation
#
# A group of $G = 8$ answers with $k$ correct. GRPO divides the centred reward by the group's
# standard deviation; Dr. GRPO only centres; RLOO uses the leave-one-out mean. The total
# gradient mass $\sum_i |A_i|$ of a group (left) and the advantage of one correct answer (right)
# show the difference: std normalisation gives groups that are *almost* all right or all wrong
# (too easy or too hard questions) as much total weight as a balanced one, and gives a lone
# success on a hard question a huge advantage, while centring weighs questions by
# $p(1-p)$. A group with $k = 0$ or $k = G$ has zero advantage under all three.

# %%
G = 8
k_values = np.arange(G + 1)
std_rewards = (np.arange(G)[None, :] < k_values[:, None]).astype(np.float32)  # [9, 8]
std_inputs, _ = make_inputs(std_rewards, np.full(std_rewards.shape, 4), 4, SEED)
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for name, style in (("grpo", "o-"), ("dr_grpo", "s--"), ("rloo", "^:")):
  obj = presets.get(name, kl_coef=0.0) if name == "rloo" else presets.get(name)
  adv = np.asarray(obj.advantage(std_inputs))
  axes[0].plot(k_values / G, np.abs(adv).sum(axis=1), style, label=name)
  first_correct = np.where(k_values > 0, adv[:, 0], np.nan)
  axes[1].plot(k_values / G, first_correct, style, label=name)
axes[0].set(xlabel="fraction correct k/G", ylabel="Σ_i |A_i|", title="gradient mass of a group")
axes[1].set(xlabel="fraction correct k/G", ylabel="A of a correct answer",
            title="advantage of one correct answer")
for ax in axes:
  ax.legend()
plt.show()

# %% [markdown]
# ## Bias 3: clipping and clip-higher
#
# Off-policy (later mini-batches, or a stale sampler), the ratio $\rho = \pi_\theta/\pi_{old}$
# moves away from 1. Below, one token with advantage $A = +1$ (left) and $A = -1$ (right), the
# gradient weight as a function of $\rho$. PPO's clip (GRPO, ε = 0.2) zeroes the gradient once
# $\rho$ leaves $[1-ε, 1+ε]$ in the direction the advantage pushes. DAPO's clip-higher widens the
# upper bound to 1.28, so tokens the policy is raising keep learning longer. The bound is
# multiplicative: a token at $p = 0.01$ may only reach $p = 0.012$ before its gradient stops,
# which is why DAPO (arXiv 2503.14476 §3.1) raises it to let unlikely tokens grow. CISPO never zeroes the gradient: it
# caps the importance weight at 5 and stops its gradient; DISPO (experimental) masks outside its
# bounds; SAPO replaces the hard clip by a smooth gate. (GRPO's KL term is switched off here to
# isolate the clip.)

# %%
log_ratio = np.linspace(np.log(0.5), np.log(1.8), 241).astype(np.float32)
ratio = np.exp(log_ratio)
n = ratio.shape[0]
signs = np.repeat([1.0, -1.0], n).astype(np.float32)  # the sweep twice: A = +1, then A = -1
# Single-token sequences, each its own group, correct iff A > 0.
sweep = types.LossBatch(
    mask=jnp.ones((2 * n, 1)), advantages=jnp.asarray(signs)[:, None],
    old_logprobs=jnp.full((2 * n, 1), -1.0), ref_logprobs=jnp.full((2 * n, 1), -1.0),
    rollout_logprobs=jnp.full((2 * n, 1), -1.0), rewards=jnp.asarray(signs),
    correct=jnp.asarray(signs > 0, jnp.float32), group_ids=jnp.arange(2 * n, dtype=jnp.int32),
    truncated=jnp.zeros((2 * n,)))
sweep_logprobs = jnp.asarray(-1.0 + np.tile(log_ratio, 2))[:, None]
clip_presets = {"grpo": dict(kl_coef=0.0), "dapo": {}, "cispo": {}, "dispo": {}, "sapo": {}}
fig, axes = plt.subplots(2, len(clip_presets), figsize=(16, 6), sharex=True, sharey="row")
for col, (name, overrides) in enumerate(clip_presets.items()):
  # x 2n: undo the 1/N normalisation of the aggregation so the weight reads per token.
  w = token_weights(presets.get(name, **overrides), sweep, sweep_logprobs)[:, 0] * 2 * n
  for row, adv_sign in enumerate((1.0, -1.0)):
    ax = axes[row, col]
    ax.axvspan(0.8, 1.2, color="0.9")  # PPO's symmetric trust region, for reference
    ax.plot(ratio, w[row * n:(row + 1) * n], ".", ms=2)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_title(f"{name}{' (exp.)' if name in presets.EXPERIMENTAL else ''}, "
                 f"A = {adv_sign:+.0f}", fontsize=10)
    if row == 1:
      ax.set_xlabel("ratio ρ = π/π_old")
  axes[0, 0].set_ylabel("gradient weight w (per token)")
  axes[1, 0].set_ylabel("gradient weight w (per token)")
fig.suptitle("gradient weight vs importance ratio (grey: [0.8, 1.2])")
plt.show()

# %% [markdown]
# ## Your turn
#
# * Change `OVERRIDES` at the top (for example `{"dapo": {"epsilon_high": 0.5}}`) and rerun the
#   notebook: the clip picture moves.
# * Any other combination of stages is an `Objective` too. Below: Dr. GRPO's centring with
#   DAPO's clip-higher and GRPO's sequence averaging, a few lines with `compose.make_objective`,
#   drawn like the presets above.

# %%
from rlvr_jax.objectives import aggregation
from rlvr_jax.objectives import compose
from rlvr_jax.objectives import surrogates

mine = compose.make_objective(
    "center_cliphigher_seqmean",
    advantage=compose.advantage(advantages.group_center),
    surrogate=compose.surrogate(surrogates.ppo_clip, epsilon_low=0.2, epsilon_high=0.28),
    aggregation=aggregation.seq_mean_token_mean,
)
w = token_weights(mine, make_loss_batch(mine, inputs, old))
fig, ax = plt.subplots(figsize=(6, 4))
scale = np.abs(w).max()
ax.imshow(np.where(mask > 0, w, np.nan), cmap="RdBu", vmin=-scale, vmax=scale, aspect="auto")
ax.set_yticks(range(len(seq_labels)), [s.replace("\n", " ") for s in seq_labels], fontsize=7)
ax.set_title(mine.name)
plt.show()
print("sequence weights:", np.round(w.sum(1), 3))
