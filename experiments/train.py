r"""Trains a policy with RL from verifiable rewards, as described by an ml_collections config.

  python -m experiments.train --workdir=/tmp/demo
  python -m experiments.train --config=experiments/configs/qwen2_5_gsm8k_grpo.py \
      --config.model.hf_dir=/models/Qwen2.5-0.5B-Instruct --workdir=/tmp/grpo

Overrides: ``--config.rl.num_steps=5``. The resolved config is written to
``<workdir>/config.json`` next to ``metrics.jsonl``, and the reward, accuracy and length curves to
``<workdir>/curves.png`` at the end; an existing checkpoint in the workdir is
resumed. With ``--multihost`` the process joins a multi-controller run
(``jax.distributed.initialize`` reads the cluster from the environment or the flags).
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import paths

_CONFIG = config_flags.DEFINE_config_file(
    "config", paths.config_file("demo.py"), "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (metrics, checkpoints).",
                               required=True)
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  if _MULTIHOST.value:
    if hasattr(jax.config, "jax_cpu_collectives_implementation"):
      # Collectives between processes' CPU devices (e.g. a multi-process run on one machine);
      # GPU and TPU devices use their own (NCCL, ICI) whatever this says.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS["verbosity"].present:
    # Orbax logs every checkpoint operation at INFO; the loop prints its own progress.
    logging.set_verbosity(logging.WARNING)
  summary = loop.train(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print(loop.format_summary(summary), flush=True)
    metrics = os.path.join(_WORKDIR.value, "metrics.jsonl")
    if os.path.exists(metrics) and os.path.getsize(metrics):
      from rlvr_jax.train import plot  # pylint: disable=g-import-not-at-top
      print(f"curves: {plot.plot_run(_WORKDIR.value)}", flush=True)
    else:  # e.g. --config.rl.num_steps=0: a warm-up and evaluation only
      print("curves: none (no RL step was logged)", flush=True)


if __name__ == "__main__":
  sys.argv = paths.resolve_argv(sys.argv)  # relative --config paths work from any directory
  app.run(main)
