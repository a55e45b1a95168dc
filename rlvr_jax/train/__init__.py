"""Training: mesh, train state, the jit'd update step, the RL loop, SFT warm-up, checkpoints, metrics.

Modules (imported on use, so ``import rlvr_jax.train`` stays cheap):

* :mod:`rlvr_jax.train.mesh`: the ``(data, fsdp, tensor)`` device mesh and batch placement.
* :mod:`rlvr_jax.train.state`: ``TrainState``, optimizer and schedule from config, sharded init.
* :mod:`rlvr_jax.train.step`: the micro-batched, jit'd update step and the no-grad scorer.
* :mod:`rlvr_jax.train.loop`: the RL loop behind ``experiments/train.py``.
* :mod:`rlvr_jax.train.sft`: supervised warm-up.
* :mod:`rlvr_jax.train.rewards_host`: verifiers in worker processes with timeouts.
* :mod:`rlvr_jax.train.checkpoint`, :mod:`rlvr_jax.train.metrics_writer`,
  :mod:`rlvr_jax.train.plot`, :mod:`rlvr_jax.train.data_stages`: checkpoints, metric files,
  curves, host-side data stages.
"""
