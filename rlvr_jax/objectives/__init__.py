"""Policy objectives for RLVR as composable, pure stages (see ``docs/objectives.md``).

Modules: ``surrogates`` (S), ``weighting`` (W), ``regularizers`` (X), ``aggregation`` (N),
``reward_transforms`` (R), ``compose`` (the combinator and the ``Objective`` contract) and
``presets`` (named methods). Advantage estimators (A) live in ``rlvr_jax.advantages``.
Importing this package pulls in jax and numpy only.
"""

from rlvr_jax.objectives import aggregation
from rlvr_jax.objectives import compose
from rlvr_jax.objectives import presets
from rlvr_jax.objectives import regularizers
from rlvr_jax.objectives import reward_transforms
from rlvr_jax.objectives import surrogates
from rlvr_jax.objectives import weighting
from rlvr_jax.objectives.compose import Objective
from rlvr_jax.objectives.compose import make_objective

__all__ = [
    "Objective",
    "aggregation",
    "compose",
    "make_objective",
    "presets",
    "regularizers",
    "reward_transforms",
    "surrogates",
    "weighting",
]
