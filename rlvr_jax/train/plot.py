"""Draws a run's reward, accuracy and length curves to PNG.

Usage::

  python -m rlvr_jax.train.plot <run_dir> [--out curves.png] [--smooth 0.6]

Reads ``<run_dir>/metrics.jsonl`` (written by :class:`~rlvr_jax.train.metrics_writer.MetricsWriter`)
and draws one panel per group of metrics found there:

* **reward**: ``reward`` and every ``rewards/<name>/mean`` (TRL's names);
* **accuracy**: every key containing ``accuracy``, ``pass@``, ``maj@`` or ``mean@`` (e.g.
  ``eval/pass@1`` from periodic evaluation, logged only at eval steps);
* **length**: ``completions/mean_length``, shaded between ``completions/min_length`` and
  ``completions/max_length`` when present.

Metrics are plotted against ``step``, each from the records that contain it; non-finite values
are skipped. ``--smooth`` applies to the reward and length panels only. Panels with no data are left out; a run with none of them is an error. Needs
``matplotlib`` (the ``notebooks`` extra), imported when a plot is drawn.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rlvr_jax.train import metrics_writer

Series = Tuple[List[int], List[float]]

PANELS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("reward", ("reward", "rewards/*/mean")),
    ("accuracy", ("*accuracy*", "*pass@*", "*maj@*", "*mean@*")),
    ("length", ("completions/mean_length",)),
)


def series(records: Sequence[Mapping[str, Any]], key: str) -> Series:
  """``(steps, values)`` of ``key`` over the records that have a finite value for it."""
  steps, values = [], []
  for r in records:
    v = r.get(key)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
      steps.append(int(r["step"]))
      values.append(float(v))
  return steps, values


def select(records: Sequence[Mapping[str, Any]], patterns: Sequence[str]) -> Dict[str, Series]:
  """Every metric whose name matches one of the glob ``patterns``, in first-seen order."""
  names: List[str] = []
  for r in records:
    for k in r:
      if k not in ("step", "time") and k not in names and any(
          fnmatch.fnmatchcase(k, p) for p in patterns):
        names.append(k)
  out = {}
  for name in names:
    s = series(records, name)
    if s[0]:
      out[name] = s
  return out


def ema(values: Sequence[float], weight: float) -> List[float]:
  """TensorBoard-style exponential smoothing, debiased: ``weight = 0`` returns the input."""
  if not 0.0 <= weight < 1.0:
    raise ValueError(f"smoothing weight must be in [0, 1), got {weight}.")
  out, last, norm = [], 0.0, 0.0
  for v in values:
    last = weight * last + (1.0 - weight) * v
    norm = weight * norm + (1.0 - weight)
    out.append(last / norm)
  return out


def plot_run(run_dir: str, out: Optional[str] = None, *, smooth: float = 0.0) -> str:
  """Draws the run's curves into one PNG and returns its path (default ``<run_dir>/curves.png``).

  Raises:
    ValueError: the run has none of the reward/accuracy/length metrics.
    ImportError: matplotlib is not installed.
  """
  records = metrics_writer.read_metrics(run_dir)
  panels = [(title, select(records, patterns)) for title, patterns in PANELS]
  panels = [(t, s) for t, s in panels if s]
  if not panels:
    raise ValueError(f"{run_dir}: no reward, accuracy or length metrics to plot.")
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("Plotting needs matplotlib: pip install matplotlib "
                      "(or pip install -e '.[notebooks]').") from None
  matplotlib.use("Agg")  # files only; never needs a display
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
  for ax, (title, found) in zip(axes[0], panels):
    # Accuracy comes from sparse evaluations: smoothing would blend evaluations far apart.
    weight = 0.0 if title == "accuracy" else smooth
    for name, (steps, values) in found.items():
      ax.plot(steps, ema(values, weight), label=name, marker="o" if len(steps) < 20 else None)
    if title == "length":
      lo = dict(zip(*series(records, "completions/min_length")))
      hi = dict(zip(*series(records, "completions/max_length")))
      steps = [s for s in found["completions/mean_length"][0] if s in lo and s in hi]
      if steps:
        ax.fill_between(steps, [lo[s] for s in steps], [hi[s] for s in steps], alpha=0.2,
                        label="min–max")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  fig.tight_layout()
  out = out or os.path.join(run_dir, "curves.png")
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Command-line entry: parses ``argv`` and prints the written PNG's path."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("run_dir", help="directory holding metrics.jsonl")
  parser.add_argument("--out", default=None, help="PNG path (default <run_dir>/curves.png)")
  parser.add_argument("--smooth", type=float, default=0.0,
                      help="exponential smoothing weight in [0, 1), as TensorBoard's slider")
  args = parser.parse_args(argv)
  print(plot_run(args.run_dir, args.out, smooth=args.smooth))


if __name__ == "__main__":
  main(sys.argv[1:])
