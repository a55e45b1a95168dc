"""Agent-RLVR guided re-attempts (experimental; arXiv 2506.11425, read from its abstract only).

Agent-RLVR (Da et al., 2025) makes RLVR work where successful agent trajectories are rare: agents
attempt a task, the attempts are validated, failed ones are supplemented with *agent guidance*
(high-level plans, feedback on the agent's errors and on its environment interactions), the
agent re-attempts with the guidance, and the policy is updated with RLVR on the rewards of the
guided trajectories. What this stage implements from that description, for multi-turn runs
(``config.rl.multiturn.enabled``):

1. groups whose every episode failed (return below ``threshold``) after ``warmup_steps``
   (the sparse-reward case: such a group has no learning signal);
2. for each failed episode of such a group, guidance text built from **its own environment
   feedback** (:func:`feedback_guidance`: the final answer, the tool results and errors it saw,
   and an optional plan hint), or the environment's own ``guidance(episode)`` when it has one;
3. one guided re-attempt per failed episode: the example's prompt with the guidance put before
   it (:func:`guided_example`), run through the same episode sampler;
4. the guided trajectory **replaces** the failed one in the group (prompt included), so it is
   trained on with its own reward and the guidance conditions it without entering the loss.

Not taken from the paper (its full text was not available): the guidance wording, the
replacement rule (every failed episode of an all-failed group), the absence of a teacher model
(guidance is rule-based from the feedback), and training the guided trajectory under the guided
prompt. The released method trains software-engineering agents with guidance written by a
teacher model; this is a small, verifiable stand-in for the same data flow.

Config (``config.rl.stages.agent_rlvr``): ``warmup_steps``, ``threshold``,
``max_feedback_chars``, ``plan_hint``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from rlvr_jax.envs import base as envs_base
from rlvr_jax.envs import chat
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import prng
from rlvr_jax.train.stages import base

DEFAULTS = dict(warmup_steps=0, threshold=1.0, max_feedback_chars=120, plan_hint="")


def failed_groups(rewards: np.ndarray, step: int, *, threshold: float = 1.0,
                  warmup_steps: int = 0) -> np.ndarray:
  """``[P]`` bool: groups whose every return is below ``threshold``, once ``step >=
  warmup_steps``."""
  rewards = base.check_rewards(rewards)
  if step < warmup_steps:
    return np.zeros(rewards.shape[0], bool)
  return np.all(rewards < threshold, axis=1)


def feedback_guidance(episode: envs_base.Episode, *, max_chars: int = 120,
                      plan_hint: str = "") -> str:
  """Guidance from an episode's environment feedback: ``"<plan hint> last answer <text> was
  wrong; tool said <results> "`` (the pieces it has), cut to ``max_chars`` characters.

  It never contains the gold answer: only what the episode itself wrote and was shown.
  """
  answers = [m["content"] for m in episode.messages if m.get("role") == "assistant"]
  shown = [str(m.get("content", "")).strip() for step in episode.steps
           for m in step.observations]
  errors = [str(step.info.get("error") or step.info.get("reward_error") or "")
            for step in episode.steps]
  parts = [plan_hint.strip()] if plan_hint.strip() else []
  if answers:
    parts.append(f"last answer {answers[-1].strip()} was wrong")
  if any(shown):
    parts.append("tool said " + " ".join(s for s in shown if s))
  if any(errors):
    parts.append("error " + " ".join(e for e in errors if e))
  return ("; ".join(parts) + " ")[-max_chars:] if parts else ""


def guided_example(example: Any, guidance: str) -> Any:
  """``example`` with ``guidance`` put before its prompt (text prompts), or before the content
  of its last user message (chat prompts)."""
  prompt = example.prompt
  if isinstance(prompt, str):
    return dataclasses.replace(example, prompt=guidance + prompt)
  messages = [dict(m) for m in prompt]
  for m in reversed(messages):
    if m.get("role") == "user":
      m["content"] = guidance + str(m.get("content", ""))
      break
  return dataclasses.replace(example, prompt=messages)


class AgentRLVR(base.Stage):
  """Guided re-attempts of the failed episodes of all-failed groups (module docstring)."""

  stream_id = 3
  stacks_generations = True
  multiturn = True  # runs in multi-turn runs (its generations are episodes)

  def __init__(self, settings: Dict[str, Any], run: base.RunInfo):
    if run.episodes is None:
      raise ValueError("agent_rlvr needs a multi-turn run (config.rl.multiturn.enabled)")
    self.warmup_steps = int(settings["warmup_steps"])
    self.threshold = float(settings["threshold"])
    self.max_feedback_chars = int(settings["max_feedback_chars"])
    self.plan_hint = str(settings["plan_hint"])
    self.run = run

  def _guidance(self, episode: envs_base.Episode, fits) -> str:
    env = self.run.episodes.env
    if hasattr(env, "guidance"):
      text = env.guidance(episode)
    else:
      text = feedback_guidance(episode, max_chars=self.max_feedback_chars,
                               plan_hint=self.plan_hint)
    while text and not fits(text):
      text = text[len(text) // 4 + 1:]  # keep the end: the plan hint goes first, feedback last
    return text

  def __call__(self, ctx: base.StepContext, group: base.GroupBatch
               ) -> Tuple[base.GroupBatch, base.Metrics]:
    sampler = self.run.episodes
    rewards = group["raw_rewards"]
    groups = failed_groups(rewards, ctx.step, threshold=self.threshold,
                           warmup_steps=self.warmup_steps) & group["valid"].all(axis=1)
    rows = [(p, w) for p in np.flatnonzero(groups) for w in range(rewards.shape[1])]
    metrics = {"agent_rlvr/guided_groups": float(groups.sum()),
               "agent_rlvr/guided_episodes": float(len(rows)),
               "agent_rlvr/guided_reward": 0.0}
    if not rows:
      return group, metrics
    width = ctx.prompt_width or self.run.max_prompt_length
    tokenizer = sampler.tokenizer

    def fits(example):
      return lambda text: len(chat.prompt_ids(
          tokenizer, sampler.env.reset(guided_example(example, text)).messages)) <= width

    examples = []
    for p, w in rows:
      example = ctx.examples[int(group["example_id"][p, w])]
      text = self._guidance(group["episodes"][p, w], fits(example))
      examples.append(guided_example(example, text))
    size = self.run.num_prompts * self.run.group_size
    padded, real = text_sampler.pad_by_repetition(examples, size)
    key = prng.stage_key(ctx.sample_key, ctx.step, self.stream_id, 0)
    batch, episodes = sampler.rollout(ctx.params, padded, key, num_samples=1)
    from rlvr_jax.train.stages import multiturn  # pylint: disable=g-import-not-at-top
    guided = multiturn.episode_group(batch, [0] * size, 1, prompt_width=width,
                                     pad_id=sampler.pad_id, episodes=episodes)
    out = {k: np.array(v, copy=True) for k, v in group.items()}
    for i, (p, w) in enumerate(rows):
      for key_name, value in guided.items():
        if key_name != "example_id" and key_name in out:
          out[key_name][p, w] = value[i, 0]
      out["guided"][p, w] = True
    metrics["agent_rlvr/guided_reward"] = float(guided["raw_rewards"][:real, 0].mean())
    return out, metrics


def guided_rows(group: base.GroupBatch) -> List[Tuple[int, int]]:
  """``(p, w)`` of samples that came from a guided re-attempt (``group['guided']``)."""
  return [tuple(x) for x in np.argwhere(group.get("guided", np.zeros((0, 0), bool)))]


__all__: Sequence[str] = ("AgentRLVR", "DEFAULTS", "failed_groups", "feedback_guidance",
                          "guided_example", "guided_rows")
