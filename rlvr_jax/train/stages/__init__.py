"""Data-stage methods, one module each, plugged into the RL loop by config.

==================  =====================================  ==============================
name                module                                 switched on by
==================  =====================================  ==============================
dars                :mod:`.dars`                           ``config.rl.stages.dars.enabled``
scaf                :mod:`.scaf`                           ``config.rl.stages.scaf.enabled``
visurf              :mod:`.visurf`                         ``config.rl.stages.visurf.enabled``
overlong_filter     :mod:`.overlong`                       ``...overlong_filter.enabled``
remax               :mod:`.remax`                          the objective reads ``greedy_rewards``
laser               :mod:`.laser`                          the objective reads ``self_rewards``
agent_rlvr          :mod:`.agent_rlvr`                     ``...agent_rlvr.enabled`` (multi-turn)
group_rewards       :mod:`.group_rewards`                  ``...group_rewards.enabled``
==================  =====================================  ==============================

``group_rewards`` runs inside collection, on every generated round before dynamic sampling's
filter (its ``scores_rounds``); the others run in this order, after collection
(:mod:`.dynamic_sampling`: one generation, or DAPO's dynamic sampling) and before the advantage
stage. A new method is one module with a
:class:`~.base.Stage` subclass and one :func:`register` call (from your own code too: see
``docs/add_your_own_method.md``); its config entry ``config.rl.stages.<name>`` holds its keys,
with the defaults given at registration.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Tuple

import ml_collections

from rlvr_jax.train.stages import agent_rlvr
from rlvr_jax.train.stages import base
from rlvr_jax.train.stages import dars
from rlvr_jax.train.stages import group_rewards
from rlvr_jax.train.stages import laser
from rlvr_jax.train.stages import overlong
from rlvr_jax.train.stages import remax
from rlvr_jax.train.stages import scaf
from rlvr_jax.train.stages import visurf

StageFactory = Callable[[Dict[str, Any], base.RunInfo], base.Stage]


@dataclasses.dataclass(frozen=True)
class _Entry:
  factory: StageFactory
  defaults: Mapping[str, Any]
  provides: Tuple[str, ...]


_REGISTRY: Dict[str, _Entry] = {}


def register(name: str, factory: StageFactory, *, defaults: Mapping[str, Any] = (),
             provides: Tuple[str, ...] = ()) -> None:
  """Registers a stage under ``name`` (applied after those registered before it).

  Args:
    name: the config entry ``config.rl.stages.<name>``.
    factory: ``factory(settings, run) -> Stage``; ``settings`` are ``defaults`` updated with the
      config entry (``enabled`` removed), ``run`` a :class:`~.base.RunInfo`.
    defaults: the stage's config keys and their defaults (plain values).
    provides: input names the stage produces for objectives that read them; such a stage is on
      exactly when the objective reads one of them (no ``enabled`` key), otherwise it is on when
      its config entry says ``enabled=True``.
  """
  defaults = dict(defaults)
  if "enabled" in defaults:
    raise ValueError("'enabled' is added by the stage framework; do not put it in defaults.")
  _REGISTRY[name] = _Entry(factory, defaults, tuple(provides))


def names() -> List[str]:
  """Registered stage names, in the order they run."""
  return list(_REGISTRY)


def provided_inputs() -> FrozenSet[str]:
  """Every input name some registered stage provides (the group-reward hook's loss columns
  included: its functions decide, see :func:`from_config`)."""
  return frozenset([n for entry in _REGISTRY.values() for n in entry.provides]
                   + list(group_rewards.LOSS_COLUMNS))


def default_config() -> ml_collections.ConfigDict:
  """``config.rl.stages``: each registered stage's keys and defaults, off (``enabled=False``)
  unless it is an input provider (no ``enabled`` key: the objective decides)."""
  config = ml_collections.ConfigDict()
  for name, entry in _REGISTRY.items():
    config[name] = dict(entry.defaults) if entry.provides else dict(entry.defaults,
                                                                      enabled=False)
  return config


def from_config(config: ml_collections.ConfigDict, run: base.RunInfo, *,
                dynamic_sampling: bool = False) -> List[base.Stage]:
  """The run's stages, in order: those enabled in ``config`` (``config.rl.stages``) and the
  providers of inputs the objective reads.

  Raises:
    ValueError: an unknown stage name or key, or stages that cannot be combined (a stage's
      ``excludes`` names another enabled one).
  """
  config = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config)
  unknown = sorted(set(config) - set(_REGISTRY))
  if unknown:
    raise ValueError(f"config.rl.stages has unknown stages {unknown}; registered: {names()}.")
  reads = set(run.objective.advantage_reads) | set(run.objective.loss_reads)
  stages, enabled = [], {"dynamic_sampling"} if dynamic_sampling else set()
  for name, entry in _REGISTRY.items():
    given = dict(config.get(name, {}))
    on = bool(reads & set(entry.provides)) if entry.provides else given.pop("enabled", False)
    bad = sorted(set(given) - set(entry.defaults))
    if bad:
      raise ValueError(f"config.rl.stages.{name} has unknown keys {bad}; known: "
                       f"{sorted(entry.defaults)}.")
    if on:
      stage = entry.factory({**entry.defaults, **given}, run)
      stage.name = name
      stages.append(stage)
      enabled.add(name)
  hook = [s for s in stages if s.name == "group_rewards"]
  wanted = sorted(reads & set(group_rewards.LOSS_COLUMNS))
  if wanted and not (hook and hook[0].scores_all_positions):
    raise ValueError(f"Objective {run.objective.name!r} reads {wanted}: switch on "
                     "config.rl.stages.group_rewards with a function that provides them "
                     "(verifree with answer_term=True).")
  for stage in stages:
    clash = sorted(set(getattr(stage, "excludes", ())) & enabled)
    if clash:
      raise ValueError(f"Stage {stage.name!r} cannot be combined with {clash}.")
  return stages


register("dars", dars.Dars, defaults=dars.DEFAULTS)
register("scaf", scaf.Scaf, defaults=scaf.DEFAULTS)
register("visurf", visurf.Visurf, defaults=visurf.DEFAULTS)
register("overlong_filter", overlong.OverlongFilter, defaults=overlong.DEFAULTS)
register("remax", remax.GreedyRewards, defaults=remax.DEFAULTS, provides=("greedy_rewards",))
register("laser", laser.SelfRewards, defaults=laser.DEFAULTS, provides=laser.SelfRewards.provides)
register("agent_rlvr", agent_rlvr.AgentRLVR, defaults=agent_rlvr.DEFAULTS)
register("group_rewards", group_rewards.GroupRewards, defaults=group_rewards.DEFAULTS)
