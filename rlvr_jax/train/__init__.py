"""Training: the RL loop and the pieces it is made of.

Modules (imported on use, so ``import rlvr_jax.train`` stays cheap):

* :mod:`rlvr_jax.train.loop`: the RL loop behind ``experiments/train.py`` (about one screen).
* :mod:`rlvr_jax.train.stages`: data-stage methods and input providers, one module each.
* :mod:`rlvr_jax.train.batch`: group batch → advantage inputs and the update's batch.
* :mod:`rlvr_jax.train.builders`: tokenizer, model, task, sampler and scorer from a config.
* :mod:`rlvr_jax.train.config_lib`: the objective as config data; validation before any work.
* :mod:`rlvr_jax.train.prng`: the run's PRNG stream layout.
* :mod:`rlvr_jax.train.step`: the micro-batched, jit'd update step and the no-grad scorer.
* :mod:`rlvr_jax.train.step_metrics`, :mod:`rlvr_jax.train.guards`: per-step metrics; skipped
  non-finite updates.
* :mod:`rlvr_jax.train.sft`: supervised warm-up.
* :mod:`rlvr_jax.train.mesh`, :mod:`rlvr_jax.train.state`: the device mesh; ``TrainState``,
  optimizer and schedule.
* :mod:`rlvr_jax.train.rewards_host`: verifiers in worker processes with timeouts.
* :mod:`rlvr_jax.train.checkpoint`, :mod:`rlvr_jax.train.metrics_writer`,
  :mod:`rlvr_jax.train.plot`: checkpoints, metric files, curves.
"""
