"""rlvr_jax: reinforcement learning with verifiable rewards (GRPO and family) in JAX/Flax.

Subpackages are imported on demand so that, for example, ``import rlvr_jax.objectives`` does not
pull in transformers, torch, orbax or TFDS.
"""

__version__ = "0.1.0"
