"""Failure guards of the training loop: what happens when the numbers stop being numbers.

The update step (:func:`rlvr_jax.train.step.make_update_fn`) skips, on the device, every update
whose loss, gradient or optimizer update is not finite, and reports ``update/skipped`` (1.0 or
0.0). This module holds the host-side pieces around it:

* :func:`mean_over_updates` averages a step's per-update metrics over the updates that were
  *applied*, so one skipped update's NaN loss does not turn the step's averages into NaN;
* :class:`SkipGuard` stops the run with :class:`TooManySkippedUpdates` after ``k`` consecutive
  skipped updates: a policy that only produces non-finite losses is not training, and since a
  skipped update leaves the state untouched (and :meth:`rlvr_jax.train.checkpoint.Checkpointer.save`
  refuses non-finite states), the last checkpoint is a good one to restart from;
* :func:`nonfinite_leaves` names the leaves of a pytree that hold NaN or infinity.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

SKIPPED = "update/skipped"


class TooManySkippedUpdates(RuntimeError):
  """Raised by :class:`SkipGuard` after ``max_consecutive`` skipped updates in a row."""


class SkipGuard:
  """Counts consecutive skipped optimizer updates and stops the run after ``max_consecutive``.

  Call :meth:`update` once per training step with the ``update/skipped`` values of the step's
  updates, in the order they ran (``num_iterations * num_mini_batches`` of them), *before* the
  step's checkpoint is written. The count runs across steps and resets at the first applied
  update.

  Args:
    max_consecutive: ``k >= 1``, the number of skipped updates in a row that stops the run.
  """

  def __init__(self, max_consecutive: int):
    if (isinstance(max_consecutive, bool) or not isinstance(max_consecutive, numbers.Integral)
        or max_consecutive < 1):
      raise ValueError(f"max_consecutive must be an integer >= 1, got {max_consecutive!r}.")
    self.max_consecutive = int(max_consecutive)
    self.consecutive = 0
    self.total = 0

  def update(self, step: int, skipped: Union[float, Sequence[float]], *,
             last_checkpoint: Optional[int] = None) -> None:
    """Records a step's updates; raises once ``max_consecutive`` in a row were skipped.

    Args:
      step: the training step, for the message.
      skipped: the ``update/skipped`` value of one update, or those of the step's updates.
      last_checkpoint: the step of the newest complete checkpoint (``Checkpointer.latest_step``),
        for the message; None when there is none.

    Raises:
      TooManySkippedUpdates: naming the step, ``k`` and the checkpoint to resume from.
    """
    for flag in np.atleast_1d(np.asarray(skipped, np.float64)):
      if flag > 0:
        self.consecutive += 1
        self.total += 1
      else:
        self.consecutive = 0
      if self.consecutive >= self.max_consecutive:
        where = ("no checkpoint was written yet" if last_checkpoint is None else
                 f"the last checkpoint at step {last_checkpoint} is intact (skipped updates "
                 "never change the state and non-finite states are never saved)")
        raise TooManySkippedUpdates(
            f"step {step}: {self.consecutive} consecutive optimizer updates were skipped because "
            f"the loss, the gradient or the update was not finite (NaN or infinity); stopping "
            f"after {self.max_consecutive} in a row; {where}. Look for the source of the "
            "non-finite values (rewards, log-probs of masked positions, learning rate) before "
            "resuming.")


def mean_over_updates(per_update: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
  """One step's metrics from its optimizer updates' metrics.

  Each metric is averaged over the updates that were applied (``update/skipped == 0``); names
  ending in ``min``/``max`` take the min/max instead. ``update/skipped`` becomes the *number* of
  skipped updates of the step. When every update was skipped, the metrics are combined over all
  of them as reported, so a NaN loss shows as NaN next to a non-zero ``update/skipped``, never as
  a made-up finite number. Metrics without an ``update/skipped`` entry count as applied.

  Args:
    per_update: the metrics of each update, as host scalars (after ``jax.device_get``).
  """
  if not per_update:
    raise ValueError("mean_over_updates needs the metrics of at least one update.")
  skipped = np.asarray([float(m.get(SKIPPED, 0.0)) for m in per_update]) > 0
  rows = [m for m, s in zip(per_update, skipped) if not s] or list(per_update)
  out = {}
  for name in per_update[0]:
    if name == SKIPPED:
      out[name] = float(skipped.sum())
      continue
    values = np.asarray([float(m[name]) for m in rows])
    if name.endswith("min"):
      out[name] = float(values.min())
    elif name.endswith("max"):
      out[name] = float(values.max())
    else:
      out[name] = float(values.mean())
  return out


@jax.jit
def _leaf_finite(leaves: List[jax.Array]) -> List[jax.Array]:
  return [jnp.isfinite(x).all() for x in leaves]


def nonfinite_leaves(tree: Any) -> List[str]:
  """Paths (``jax.tree_util.keystr``) of the floating-point leaves of ``tree`` that hold a NaN or
  an infinity; integer, boolean and PRNG-key leaves are not checked.

  Works on sharded arrays across hosts (one jitted reduction per leaf, replicated results), so
  every process must call it, like a checkpoint save.
  """
  finite: Dict[str, bool] = {}
  device_paths, device_leaves = [], []
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
      continue
    name = jax.tree_util.keystr(path)
    finite[name] = True  # placeholder that keeps the tree order
    if isinstance(leaf, jax.Array):
      device_paths.append(name)
      device_leaves.append(leaf)
    else:  # host arrays are checked where they are, not copied to a device
      finite[name] = bool(np.isfinite(leaf).all())
  if device_leaves:
    finite.update(zip(device_paths, jax.device_get(_leaf_finite(device_leaves))))
  return [name for name, ok in finite.items() if not ok]
