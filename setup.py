"""rlvr_jax: reinforcement learning with verifiable rewards for language models, in JAX."""

import setuptools

CORE = [
    "jax>=0.6",
    "flax>=0.10",
    "optax",
    "orbax-checkpoint",
    "transformers>=4.51",  # tokenizers, chat templates, HF configs; Qwen3 needs >= 4.51
    "safetensors",
    "sympy",
    "numpy",
    "absl-py",
    "ml-collections",
]

EXTRAS = {
    # CPU torch only: parity tests against transformers. Pinned because an unpinned torch pulls a
    # multi-GB CUDA build.
    "test": ["pytest", "torch==2.13.0"],
    "tfds": ["tensorflow-datasets"],
    "gym": ["reasoning-gym"],
    "notebooks": ["jupyter", "nbclient", "matplotlib"],
}

setuptools.setup(
    name="rlvr_jax",
    version="0.1.0",
    description="Reinforcement learning with verifiable rewards (GRPO and family) in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["rlvr_jax", "rlvr_jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
)
