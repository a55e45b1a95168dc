"""Source of notebooks/agent_episodes.ipynb (build with `python notebooks/build.py`)."""

# %% [markdown]
# # Agent episodes: a tool-using trajectory and its masks
#
# A multi-turn rollout alternates **model turns** and **observations** (tool results the
# environment appends). RL trains on the model's tokens only, but the model must *see* the
# observations: teacher forcing attends to every real token, while the loss mask has holes on the
# observations. This notebook runs a few episodes of the CPU tool demo's environment
# (`experiments/configs/tool_demo.py`: two-digit multiplication with a calculator called as
# `calc(37*48)`) with the tiny character model after a short supervised warm-up, then shows:
#
# 1. the conversations, as the environment saw them;
# 2. the token layout of the batch: `token_mask` (attend) against `loss_mask` (train);
# 3. that the rollout's behaviour log-probs are the teacher-forced ones only when the observations
#    are attended to.
#
# It runs in about a minute on a 2-core CPU. The RL run that teaches the model to call the tool
# is `python -m experiments.train --config=experiments/configs/tool_demo.py --workdir=...`
# (docs/training.md, Multi-turn).

# %%
import pathlib
import sys

import jax
import matplotlib.pyplot as plt
import numpy as np

# experiments/ (the config files) lives at the repository root, next to notebooks/.
ROOT = pathlib.Path.cwd().parent if pathlib.Path.cwd().name == "notebooks" else pathlib.Path.cwd()
sys.path.insert(0, str(ROOT))
from experiments.configs import tool_demo  # pylint: disable=g-import-not-at-top

from rlvr_jax.data import task as task_lib
from rlvr_jax.rollout import multiturn as multiturn_rollout
from rlvr_jax.rollout import scoring
from rlvr_jax.train import builders
from rlvr_jax.train import sft
from rlvr_jax.train import step as step_lib
from rlvr_jax.train.stages import multiturn

config = tool_demo.get_config()
# A shorter warm-up than the demo's, with half the examples tool-using demonstrations, so that
# the policy calls the calculator often enough to show episodes of both kinds.
config.sft.num_steps = 300
config.sft.batch_size = 32
config.rl.multiturn.demonstration_fraction = 0.5

tokenizer = builders.build_tokenizer(config)
model_config, params = builders.build_model(config, tokenizer, jax.random.PRNGKey(0))
source = builders.build_task(config)
episodes_sampler, source = multiturn.from_config(config, model_config, tokenizer, source)
print("environment:", type(episodes_sampler.env).__name__)
demo = next(e for e in source.examples("train", 0) if "sft_target" in e.metadata)
print("a warm-up demonstration:", repr(demo.prompt), "->", repr(demo.metadata["sft_target"]))

# %% [markdown]
# ## A short supervised warm-up
#
# The trainer's warm-up (`rlvr_jax.train.sft`) on `prompt -> sft_target <eos>`: half the targets
# are whole tool-using trajectories (call, the template's end of turn, the calculator's result,
# the copied answer), the others the bare answer.

# %%
params, _ = sft.warm_up(
    params, config.sft, sampler=builders.build_sampler(config, model_config, tokenizer),
    stream=task_lib.training_stream(source, config.sft.seed),
    logprob_fn=step_lib.model_logprob_fn(model_config, temperature=1.0,
                                         chunk_size=config.rl.chunk_size, return_entropy=False),
    probe_fn=None, log_fn=print)

# %% [markdown]
# ## A few episodes
#
# Four held-out problems, two episodes each, sampled at temperature 1. Each episode ends when a
# turn has no call (the answer, scored by the verifier), or at the turn or token budget.

# %%
examples = task_lib.distinct_examples(source, "test", 4, seed=0)
batch, episodes = episodes_sampler.rollout(params, examples, jax.random.PRNGKey(1),
                                           num_samples=2)
for b, episode in enumerate(episodes):
  turns = " | ".join(repr(m["content"]) for m in episode.messages)
  print(f"[{b}] reward {float(batch.rewards[b]):.0f}, {int(batch.num_turns[b])} turns, "
        f"{int(batch.tool_calls[b])} calls: {turns}")
print(multiturn_rollout.multiturn_metrics(batch))

# %% [markdown]
# ## The masked trajectory
#
# Completion tokens of every episode (rows): **model** tokens (trained: `loss_mask = 1`),
# **observation** tokens (attended, not trained: the holes), padding. Then one tool-using
# episode token by token.

# %%
token_mask = np.asarray(batch.token_mask)
loss_mask = np.asarray(batch.loss_mask)
kind = np.where(loss_mask > 0, 2, np.where(token_mask, 1, 0))  # 2 model, 1 observation, 0 pad
fig, ax = plt.subplots(figsize=(12, 3))
ax.imshow(kind, cmap=plt.matplotlib.colors.ListedColormap(["white", "tab:orange", "tab:blue"]),
          aspect="auto", interpolation="nearest")
ax.set(xlabel="completion position", ylabel="episode",
       title="blue: model tokens (loss)   orange: observation tokens (holes)   white: padding")
plt.show()

caller = next((b for b in range(len(episodes)) if batch.tool_calls[b] > 0), 0)
tokens = np.asarray(batch.tokens[caller])
for t in range(int(batch.lengths[caller])):
  text = tokenizer.decode([int(tokens[t])])
  role = "model" if loss_mask[caller, t] else "observation"
  print(f"{t:3d} {text!r:10} {role:12} turn {int(batch.turn_ids[caller, t])}  "
        f"behaviour log-prob {float(batch.logprobs[caller, t]):+.3f}")

# %% [markdown]
# ## Teacher forcing must attend to the observations
#
# Re-scoring the trajectories with `token_mask` as the completion mask gives the behaviour
# log-probs of the model tokens (the KV-cache continuation equals a from-scratch forward pass);
# scoring with the loss mask instead hides the observations from attention and changes every
# log-prob after the first one. The trainer passes the attention mask
# (`TrainBatch.completion_mask`) to its update and scorers for this reason.

# %%
def teacher_forced(mask):
  """Log-probs of the batch's completion tokens, attending to ``mask``."""
  return np.asarray(scoring.token_logprobs(
      params, model_config, batch.prompt_tokens, batch.prompt_mask, batch.tokens, mask,
      temperature=config.rl.temperature, chunk_size=8)[0])


model_tokens = loss_mask > 0
attend = np.abs(teacher_forced(token_mask) - np.asarray(batch.logprobs))[model_tokens].max()
hide = np.abs(teacher_forced(loss_mask) - np.asarray(batch.logprobs))[model_tokens].max()
print(f"max |difference| on model tokens: attending to observations {attend:.1e}, "
      f"hiding them {hide:.2f}")
assert attend < 1e-4
