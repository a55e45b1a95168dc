"""plot: metric selection, smoothing, PNG output from a run directory and from the command line."""

import json
import subprocess
import sys

import pytest

from rlvr_jax.train import metrics_writer
from rlvr_jax.train import plot


def _run(tmp_path):
  with metrics_writer.MetricsWriter(str(tmp_path), tensorboard=False) as w:
    for step in range(1, 6):
      m = {"reward": step / 5, "rewards/math/mean": step / 10, "loss": 1.0,
           "completions/mean_length": 10.0 + step, "completions/min_length": 5.0,
           "completions/max_length": 20.0}
      if step % 2 == 0:
        m["eval/pass@1"] = step / 10
      w.write(step, m)
  return str(tmp_path)


def test_select_and_series(tmp_path):
  records = metrics_writer.read_metrics(_run(tmp_path))
  reward = plot.select(records, plot.PANELS[0][1])
  assert list(reward) == ["reward", "rewards/math/mean"]
  assert reward["reward"] == ([1, 2, 3, 4, 5], [0.2, 0.4, 0.6, 0.8, 1.0])
  acc = plot.select(records, plot.PANELS[1][1])
  assert acc == {"eval/pass@1": ([2, 4], [0.2, 0.4])}
  assert plot.series([{"step": 1, "x": float("nan")}, {"step": 2, "x": 3}], "x") == ([2], [3.0])


def test_ema():
  assert plot.ema([1.0, 2.0, 3.0], 0.0) == [1.0, 2.0, 3.0]
  # Debiased: the first value is kept; then (0.5*0.5*1 + 0.5*3) / (1 - 0.25) = 1.75/0.75.
  out = plot.ema([1.0, 3.0], 0.5)
  assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(1.75 / 0.75)
  with pytest.raises(ValueError):
    plot.ema([1.0], 1.0)


def test_plot_run_writes_png(tmp_path):
  pytest.importorskip("matplotlib")
  run = _run(tmp_path)
  path = plot.plot_run(run, smooth=0.3)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_no_metrics_is_an_error(tmp_path):
  (tmp_path / metrics_writer.METRICS_FILE).write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
  with pytest.raises(ValueError, match="no reward"):
    plot.plot_run(str(tmp_path))


def test_command_line(tmp_path):
  pytest.importorskip("matplotlib")
  run = _run(tmp_path)
  out = str(tmp_path / "c.png")
  proc = subprocess.run([sys.executable, "-m", "rlvr_jax.train.plot", run, "--out", out],
                        capture_output=True, text=True, check=True)
  assert proc.stdout.strip() == out
  with open(out, "rb") as f:
    assert f.read(4) == b"\x89PNG"
