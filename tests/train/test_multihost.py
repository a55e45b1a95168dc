"""Two processes on localhost (jax.distributed + gloo CPU collectives) end a step identically.

Each process owns one CPU device and feeds its half of the batch through
``host_local_to_global``; after two updates both must hold bit-identical params (and loss), which
moved away from the initial ones.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_end_with_identical_params(tmp_path):
  import jax
  if not hasattr(jax.config, "jax_cpu_collectives_implementation"):
    pytest.skip("this JAX has no multi-process CPU collectives")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  port = str(_free_port())
  outs = [str(tmp_path / f"p{i}.npz") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "multihost_worker.py"), str(i),
                             port, outs[i]], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  a, b = np.load(outs[0]), np.load(outs[1])
  for key in ("embed", "out", "loss"):
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.allclose(a["embed"], np.random.default_rng(0).normal(size=(12, 8)))
