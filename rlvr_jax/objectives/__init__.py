"""Policy objectives for RLVR as composable, pure stages (see ``docs/objectives.md``).

Building blocks (pure functions of arrays): ``surrogates`` (S), ``weighting`` (W),
``regularizers`` (X; also the KL estimator ``kl_penalty`` and the loss terms ``kl_loss``,
``entropy_bonus``, ``laser_self_reward_loss``), ``aggregation`` (N), ``reward_transforms`` (R).
Advantage estimators (A) live in ``rlvr_jax.advantages``.

Composition: ``binding`` (a function, its hyperparameters and the arrays it reads by name: the
``Stage`` type), ``advantage_stages`` (R and A stages), ``loss_stages`` (W and S stages and the
per-micro-batch ``Loss``), ``metrics`` (``summarize``, ``combine_metrics``), ``compose``
(``Objective``, ``make_objective``, and every stage constructor re-exported) and ``presets``
(named methods). Importing this package pulls in jax and numpy only.
"""

from rlvr_jax.objectives import advantage_stages
from rlvr_jax.objectives import aggregation
from rlvr_jax.objectives import binding
from rlvr_jax.objectives import compose
from rlvr_jax.objectives import loss_stages
from rlvr_jax.objectives import metrics
from rlvr_jax.objectives import presets
from rlvr_jax.objectives import regularizers
from rlvr_jax.objectives import reward_transforms
from rlvr_jax.objectives import surrogates
from rlvr_jax.objectives import weighting
from rlvr_jax.objectives.compose import Objective
from rlvr_jax.objectives.compose import make_objective

__all__ = [
    "Objective",
    "advantage_stages",
    "aggregation",
    "binding",
    "compose",
    "loss_stages",
    "make_objective",
    "metrics",
    "presets",
    "regularizers",
    "reward_transforms",
    "surrogates",
    "weighting",
]
