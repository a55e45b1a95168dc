"""RLVMR verifiable meta-reasoning rewards (arXiv 2507.22844), combined with the outcome.

An agent step tags its reasoning with one meta-reasoning block (``<planning>``, ``<explore>``,
``<reflection>`` or ``<monitor>``) before its ``<action>``; rule-checked rewards pay for tags
whose behaviour helped. Verified against the authors' code (Tencent/DigitalHuman ``RLVMR/``,
mirrored at zzjweb/digitalhuman @5d02be6: ``rlvmr/core_rlvmr.py``, the ALFWorld prompts and
``examples/rlvmr_trainer/run_alfworld.sh``):

* A step whose action is invalid gets no tag and no meta reward.
* ``<planning>``: ``planning_reward`` (1.0) if the episode succeeded, else 0.
* ``<explore>``: ``exploration_reward`` (1.0) if its action differs from every earlier valid
  step's action, else 0.
* ``<reflection>``: ``reflection_reward`` (1.0) if the previous step's action was invalid and
  this step's action differs from it, else 0.
* ``<monitor>`` and untagged steps: tag "none", 0.
* GRPO-MR advantage of step ``k`` of episode ``g`` of prompt ``p``:
  ``A = norm_p(o_{g,k}) + w * norm_{p,tag}(r_{g,k})`` with ``o_{g,k} = R_g - c * 1[invalid]``
  (the invalid-action penalty ``c = 0.1`` of the run script), ``norm`` a z-score over the
  valid steps of the prompt's episodes (the step term within steps of the same tag), Bessel
  std, ``eps = 1e-6``; a group of one step gets mean 0, std 1. ``w = 1.0`` in the run script
  (0.5 in the config file), std normalisation on (the config's ``mean_std_norm``).

Deliberate hardening against a policy that games the tags (each is a deviation from the
code, which matches ``'<planning>' in text``):

* A tag counts only as a closed block with non-whitespace content; a step with blocks of two
  or more different meta tags counts as untagged (the RLVMR prompt demands ONLY ONE tag pair),
  so emitting every tag, or empty tags, earns nothing.
* Actions are compared after collapsing whitespace and case, so re-issuing an action with
  cosmetic changes is not "exploration".
* Reflection at the first step (nothing to reflect on) earns nothing; the code compares the
  action list with ``""`` there and pays it.
* A step needs exactly one ``<action>`` block to have an action; otherwise its action is
  treated as missing (invalid).
"""

from __future__ import annotations

import functools
import re
from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

META_TAGS = ("planning", "explore", "reflection", "monitor")
# Tag ids of the arrays: ``monitor`` shares id 0 with untagged steps, as in RLVMR's code.
TAG_IDS = {"none": 0, "planning": 1, "explore": 2, "reflection": 3, "monitor": 0}
NUM_TAG_IDS = 4

_ACTION = re.compile(r"<action>(.*?)</action>", re.DOTALL)


def _block(text: str, tag: str) -> Optional[str]:
  m = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
  return None if m is None else m.group(1)


def step_tag(text: str) -> str:
  """The step's meta-reasoning tag: the one tag with a closed, non-empty block, else ``"none"``.

  Several different tags with non-empty blocks, or only empty/unclosed ones, give ``"none"``.
  """
  found = [t for t in META_TAGS if (b := _block(text, t)) is not None and b.strip()]
  return found[0] if len(found) == 1 else "none"


def step_action(text: str) -> Optional[str]:
  """The step's action, whitespace-collapsed and lower-cased; None unless exactly one block."""
  actions = _ACTION.findall(text)
  if len(actions) != 1 or not actions[0].strip():
    return None
  return " ".join(actions[0].split()).lower()


def meta_reasoning_rewards(texts: Sequence[str],
                           action_valid: Sequence[bool],
                           success: bool,
                           *,
                           planning_reward: float = 1.0,
                           exploration_reward: float = 1.0,
                           reflection_reward: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
  """RLVMR per-step meta rewards of one episode (rules in the module docstring).

  Args:
    texts: the assistant output of each step.
    action_valid: per step, whether the environment accepted its action. A step without a
      parseable action (:func:`step_action` is None) counts as invalid whatever this says.
    success: the episode's outcome.
    planning_reward, exploration_reward, reflection_reward: the paid amounts (1.0 each in the
      code's config).

  Returns:
    ``(rewards [K] float32, tag_ids [K] int32)`` with ids from :data:`TAG_IDS`.
  """
  if len(texts) != len(action_valid):
    raise ValueError(f"{len(texts)} texts but {len(action_valid)} validity flags")
  if not isinstance(success, (bool, np.bool_)):
    raise TypeError(f"success must be a bool, got {success!r}")
  k = len(texts)
  rewards = np.zeros((k,), np.float32)
  tags = np.zeros((k,), np.int32)
  actions = [step_action(t) for t in texts]
  valid = [bool(v) and a is not None for v, a in zip(action_valid, actions)]
  for i, text in enumerate(texts):
    if not valid[i]:
      continue
    tag = step_tag(text)
    tags[i] = TAG_IDS[tag]
    if tag == "planning":
      rewards[i] = planning_reward if success else 0.0
    elif tag == "explore":
      seen = {actions[j] for j in range(i) if valid[j]}
      rewards[i] = exploration_reward if actions[i] not in seen else 0.0
    elif tag == "reflection":
      recovers = i > 0 and not valid[i - 1] and actions[i] != actions[i - 1]
      rewards[i] = reflection_reward if recovers else 0.0
  return rewards, tags


def meta_reasoning_batch(texts: Sequence[Sequence[str]],
                         action_valid: Sequence[Sequence[bool]],
                         success: Sequence[bool],
                         **kwargs) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """:func:`meta_reasoning_rewards` for ``B`` episodes, padded to the longest.

  Returns:
    ``(rewards [B, K], tag_ids [B, K], turn_mask [B, K], valid [B, K])``; ``valid`` is the
    action validity after parsing (what :func:`rlvmr_advantages` penalises).
  """
  if not (len(texts) == len(action_valid) == len(success)):
    raise ValueError("texts, action_valid and success need one entry per episode")
  b = len(texts)
  k = max((len(t) for t in texts), default=0)
  out = (np.zeros((b, k), np.float32), np.zeros((b, k), np.int32), np.zeros((b, k), bool),
         np.zeros((b, k), bool))
  for i, (ts, vs, s) in enumerate(zip(texts, action_valid, success)):
    r, tag = meta_reasoning_rewards(ts, vs, s, **kwargs)
    n = len(ts)
    out[0][i, :n], out[1][i, :n], out[2][i, :n] = r, tag, True
    out[3][i, :n] = [bool(v) and step_action(t) is not None for t, v in zip(ts, vs)]
  return out


def _group_norm(x: Array, member: Array, normalize_std: bool, eps: float) -> Array:
  """z-score of ``x`` within the members of each group over axes (1, 2); a lone member gets
  mean 0, std 1 (RLVMR's code); ``member`` is ``[P, G, K]``."""
  n = member.sum((1, 2), keepdims=True).astype(jnp.float32)
  xs = jnp.where(member, x, 0.0)
  mean = xs.sum((1, 2), keepdims=True) / jnp.maximum(n, 1.0)
  var = jnp.where(member, (x - mean) ** 2, 0.0).sum((1, 2), keepdims=True) / jnp.maximum(
      n - 1.0, 1.0)
  single = n <= 1
  mean = jnp.where(single, 0.0, mean)
  std = jnp.where(single, 1.0, jnp.sqrt(var))
  centred = x - mean
  return centred / (std + eps) if normalize_std else centred


@functools.partial(jax.jit, static_argnames=("normalize_std",))
def rlvmr_advantages(outcome: Array,
                     step_rewards: Array,
                     tag_ids: Array,
                     turn_mask: Array,
                     action_valid: Array,
                     *,
                     step_weight: float = 1.0,
                     invalid_action_penalty: float = 0.1,
                     normalize_std: bool = True,
                     eps: float = 1e-6) -> Array:
  """GRPO-MR per-step advantages ``A = norm_p(o) + w * norm_{p,tag}(r)`` (module docstring).

  The normalisation runs over *steps* (each valid step is one sample, as in verl-agent), so a
  longer episode weighs more in its prompt's baseline.

  Args:
    outcome: ``[P, G]`` episode rewards ``R_g``.
    step_rewards: ``[P, G, K]`` meta rewards from :func:`meta_reasoning_batch`.
    tag_ids: ``[P, G, K]`` int in ``[0, 4)``.
    turn_mask: ``[P, G, K]`` bool, real steps.
    action_valid: ``[P, G, K]`` bool; invalid steps lose ``invalid_action_penalty``.
    step_weight: ``w``.
    invalid_action_penalty: ``c``.
    normalize_std: divide by the group std (``mean_std_norm``) or only centre (``mean_norm``).
    eps: added to the std.

  Returns:
    ``[P, G, K]`` float32 advantages, 0 on padding. NaN in a real step's inputs makes its whole
    group NaN; NaN on padding is ignored.
  """
  o = jnp.asarray(outcome, jnp.float32)
  r = jnp.asarray(step_rewards, jnp.float32)
  tags = jnp.asarray(tag_ids, jnp.int32)
  m = jnp.asarray(turn_mask, bool)
  valid = jnp.asarray(action_valid, bool)
  if o.ndim != 2 or r.shape[:2] != o.shape or r.ndim != 3:
    raise ValueError(f"need outcome [P,G] and step_rewards [P,G,K]; got {o.shape}, {r.shape}")
  if tags.shape != r.shape or m.shape != r.shape or valid.shape != r.shape:
    raise ValueError(f"tag_ids, turn_mask, action_valid must be {r.shape}; got {tags.shape}, "
                     f"{m.shape}, {valid.shape}")
  step_outcome = o[:, :, None] - invalid_action_penalty * (~valid).astype(jnp.float32)
  a_ep = _group_norm(step_outcome, m, normalize_std, eps)
  a_step = jnp.zeros_like(r)
  for tag in range(NUM_TAG_IDS):
    member = m & (tags == tag)
    a_step = jnp.where(member, _group_norm(r, member, normalize_std, eps), a_step)
  return jnp.where(m, a_ep + step_weight * a_step, 0.0)
