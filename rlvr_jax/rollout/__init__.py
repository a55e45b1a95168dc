"""Rollout: pure sampling processors, the jit-compiled generate loop, teacher-forced scoring."""

from rlvr_jax.rollout import processors
