"""Config helpers of the RL loop: the objective as config data, and up-front validation.

**The objective is config data.** ``config.rl.objective`` is a ConfigDict holding the preset's
``name`` and *every* keyword argument of the preset with its value (:func:`objective_config`
fills in the preset's defaults), so ``--config.rl.objective.epsilon_high=0.3`` changes that one
value, ``config.json`` shows every resolved hyperparameter, and :func:`build_objective` rejects
a key the preset does not take (e.g. after changing only ``name`` on the command line: switch
presets with the config file's argument instead, ``--config=experiments/configs/demo.py:dapo``).

**Validation before any work.** :func:`validate` rejects out-of-range values (a negative or
non-finite learning rate, ``num_steps < 0``, ``temperature <= 0``, a batch the mesh cannot
divide, prompts plus ``max_new_tokens`` beyond the model's positions, ...) before the warm-up.
"""

from __future__ import annotations

import math
from typing import Any, List, Optional

import ml_collections

from rlvr_jax.objectives import presets


def objective_config(name: str, **values) -> ml_collections.ConfigDict:
  """``config.rl.objective`` for preset ``name``: every keyword argument of the preset, at its
  default unless given in ``values``.

  Raises:
    KeyError: an unknown preset. TypeError: a value name the preset does not take.
  """
  defaults = presets.defaults(name)
  unknown = sorted(set(values) - set(defaults))
  if unknown:
    raise TypeError(f"Preset {name!r} takes no {unknown}; it takes {sorted(defaults)}.")
  return ml_collections.ConfigDict(dict(name=name, **{**defaults, **values}))


def objective_hparams(objective: ml_collections.ConfigDict) -> dict:
  """The preset keyword arguments of ``config.rl.objective`` (everything but ``name``)."""
  return {k: v for k, v in objective.items() if k != "name"}


def build_objective(objective: ml_collections.ConfigDict):
  """The :class:`~rlvr_jax.objectives.compose.Objective` of ``config.rl.objective``."""
  name = objective.name
  hparams = objective_hparams(objective)
  known = presets.defaults(name)
  unknown = sorted(set(hparams) - set(known))
  if unknown:
    raise ValueError(
        f"config.rl.objective has {unknown}, which preset {name!r} does not take (it takes "
        f"{sorted(known)}). To switch presets, pass it to the config file "
        f"(--config=experiments/configs/demo.py:{name}) rather than setting only "
        "config.rl.objective.name.")
  return presets.get(name, **hparams)


def _finite_positive(value: Any) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def problems(config: ml_collections.ConfigDict, *, batch_divisor: int = 1,
             group_width: Optional[int] = None, max_positions: Optional[int] = None
             ) -> List[str]:
  """Every out-of-range value of ``config`` (empty when it is valid).

  Args:
    config: the experiment config.
    batch_divisor: devices along the mesh's batch axes; a mini-batch's rows must divide over them.
    group_width: samples per group in the update (``num_samples``, unless a stage changes it).
    max_positions: the model's position limit (prompt bucket + completion must fit).
  """
  rl, out = config.rl, []

  def need(ok: bool, message: str) -> None:
    if not ok:
      out.append(message)

  for name, opt in (("optimizer", config.optimizer), ("sft.optimizer", config.sft.optimizer)):
    need(_finite_positive(opt.learning_rate),
         f"config.{name}.learning_rate must be finite and > 0, got {opt.learning_rate}")
    need(opt.warmup_steps >= 0, f"config.{name}.warmup_steps must be >= 0")
  for name in ("num_steps", "num_iterations", "num_prompts", "num_samples", "max_new_tokens",
               "num_mini_batches", "num_micro_batches", "chunk_size"):
    minimum = 0 if name == "num_steps" else 1
    need(rl[name] >= minimum, f"config.rl.{name} must be >= {minimum}, got {rl[name]}")
  need(rl.max_skipped_updates >= 1,
       f"config.rl.max_skipped_updates must be >= 1, got {rl.max_skipped_updates}")
  need(config.sft.num_steps >= 0, f"config.sft.num_steps must be >= 0, got {config.sft.num_steps}")
  need(_finite_positive(rl.temperature),
       f"config.rl.temperature must be finite and > 0, got {rl.temperature}")
  need(rl.top_p is None or 0 < rl.top_p <= 1, f"config.rl.top_p must be in (0, 1], got {rl.top_p}")
  need(rl.top_k is None or rl.top_k >= 1, f"config.rl.top_k must be >= 1, got {rl.top_k}")
  if rl.num_prompts >= 1 and rl.num_mini_batches >= 1:
    need(rl.num_prompts % rl.num_mini_batches == 0,
         f"config.rl.num_prompts ({rl.num_prompts}) must be a multiple of num_mini_batches "
         f"({rl.num_mini_batches})")
  need(not (config.eval.every and not config.eval.num_prompts),
       "config.eval.every > 0 needs config.eval.num_prompts > 0")
  need(config.eval.num_prompts >= 0 and config.eval.num_samples >= 1
       and config.eval.batch_size >= 1, "config.eval: num_prompts >= 0, num_samples >= 1 and "
       "batch_size >= 1")
  need(config.reward.timeout_s > 0, f"config.reward.timeout_s must be > 0")
  need(math.isfinite(config.reward.failure_reward), "config.reward.failure_reward must be finite")
  need(config.checkpoint.every >= 0, "config.checkpoint.every must be >= 0")
  need(config.lora.rank >= 0, f"config.lora.rank must be >= 0, got {config.lora.rank}")
  need(not (config.lora.rank and rl.ref_refresh_steps),
       "config.rl.ref_refresh_steps needs full fine-tuning: with LoRA the reference is the base")
  buckets = tuple(config.data.prompt_buckets)
  need(bool(buckets) and min(buckets) >= 1, "config.data.prompt_buckets must be positive lengths")
  if max_positions is not None and buckets:
    need(max(buckets) + rl.max_new_tokens <= max_positions,
         f"the largest prompt bucket ({max(buckets)}) + config.rl.max_new_tokens "
         f"({rl.max_new_tokens}) exceed the model's {max_positions} positions")
  if batch_divisor > 1 and rl.num_mini_batches >= 1:
    width = group_width or rl.num_samples
    rows = rl.num_prompts // rl.num_mini_batches * width
    need(rows % batch_divisor == 0,
         f"a mini-batch of {rl.num_prompts // rl.num_mini_batches} groups x {width} samples "
         f"does not divide over the mesh's {batch_divisor} batch shards; change "
         "config.rl.num_prompts or num_mini_batches (ViSurf's groups have num_samples + 1 "
         "samples, DARS's n_max)")
  return out


def check_lora_base(saved: Optional[str], current: Optional[str]) -> None:
  """A resumed LoRA run's adapters were trained on this base (fingerprints of the base weights,
  ``builders.fingerprint``, saved at the first start); raises ``ValueError`` otherwise."""
  if saved != current:
    raise ValueError(
        f"The checkpoint's adapters were trained on another base (fingerprint {saved}, this run "
        f"builds {current}): resume with the same model.hf_dir / sft.init_from / lora settings.")


def validate(config: ml_collections.ConfigDict, **kwargs) -> None:
  """Raises ``ValueError`` listing every problem :func:`problems` finds."""
  found = problems(config, **kwargs)
  if found:
    raise ValueError("Invalid config:\n  " + "\n  ".join(found))
