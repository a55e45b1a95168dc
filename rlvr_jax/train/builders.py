"""Building a run's pieces from its config: tokenizer, model, task, sampler, scorer.

The training loop, ``experiments/evaluate.py`` and the notebooks build through these functions,
so a config means the same thing to each of them. Heavy modules (transformers, the HF importer)
are imported only by the branches that need them.
"""

from __future__ import annotations

from typing import Any, Tuple

import jax
import ml_collections

from rlvr_jax.data import task as task_lib
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import rewards_host

# The policy after the supervised warm-up, written to the workdir (``config.sft.init_from`` of
# another run can start from it).
WARMUP_PARAMS_FILE = "warmup_params.msgpack"

REMAT_MODES = ("none", "full", "dots")


def build_tokenizer(config: ml_collections.ConfigDict):
  """``config.tokenizer.kind``: ``"char"`` (built in code) or ``"hf"`` (``config.model.hf_dir``,
  a directory or a ``.gguf`` file)."""
  kind = config.tokenizer.kind
  if kind == "char":
    from rlvr_jax.data import char_tokenizer  # pylint: disable=g-import-not-at-top
    return char_tokenizer.build()
  if kind == "hf":
    from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
    return hf.load_tokenizer(config.model.hf_dir)
  raise ValueError(f"Unknown tokenizer kind {kind!r}.")


def model_options(config: ml_collections.ConfigDict) -> dict:
  """The dtype, attention-kernel and rematerialisation options of ``config.model``/``config.remat``
  (``"full"``, or ``"dots"`` to keep matmul outputs, rematerialise each decoder block)."""
  if config.remat not in REMAT_MODES:
    raise ValueError(f"config.remat must be one of {REMAT_MODES}, got {config.remat!r}")
  return dict(dtype=config.model.dtype, param_dtype=config.model.param_dtype,
              remat=config.remat != "none",
              remat_policy="dots" if config.remat == "dots" else "nothing",
              attention=config.model.attention)


def build_model_config(config: ml_collections.ConfigDict, tokenizer):
  """The model's config alone (no weights): from ``config.model.hf_dir``'s ``config.json`` (or
  the metadata of a ``.gguf`` file there), else
  the random preset ``config.model.preset`` with ``config.model.overrides`` and a vocabulary
  sized to the tokenizer (rounded up to a multiple of 8)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  options = model_options(config)
  if config.model.hf_dir:
    from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
    model_config = hf.config_from_hf(hf.read_config(config.model.hf_dir),
                                     dtype=options["dtype"], param_dtype=options["param_dtype"],
                                     remat=options["remat"])
    return dataclasses.replace(model_config, remat_policy=options["remat_policy"],
                               attention=options["attention"])
  if not config.model.preset:
    raise ValueError("Set --config.model.hf_dir to a local Hugging Face model directory, or "
                     "config.model.preset to a random preset.")
  from rlvr_jax.models import config as model_config_lib  # pylint: disable=g-import-not-at-top
  overrides = {**options, **dict(config.model.overrides)}
  overrides.setdefault("vocab_size", -(-len(tokenizer) // 8) * 8)
  return model_config_lib.preset(config.model.preset, **overrides)


def build_model(config: ml_collections.ConfigDict, tokenizer, rng: jax.Array
                ) -> Tuple[Any, Any]:
  """``(model_config, params)``: the weights of ``config.model.hf_dir`` if set, else a random
  initialisation (``rng``) of :func:`build_model_config`'s preset."""
  if config.model.hf_dir:
    from rlvr_jax.models import hf  # pylint: disable=g-import-not-at-top
    return hf.load_hf(config.model.hf_dir, **model_options(config))
  from rlvr_jax.models import transformer  # pylint: disable=g-import-not-at-top
  model_config = build_model_config(config, tokenizer)
  return model_config, transformer.init_params(model_config, rng)


def build_task(config: ml_collections.ConfigDict) -> task_lib.TaskSource:
  """The task source of ``config.task``.

  ``kind="procedural"``: ``name`` and ``kwargs`` of :func:`rlvr_jax.data.procedural.get`; with
  ``chat``, prompts become chat messages (``system`` first when set) for the model's chat template
  (:class:`rlvr_jax.data.templates.AsChat`).
  ``kind="gym"``: reasoning-gym generator ``name`` (``"basic_arithmetic"``, ``"gsm_symbolic"``,
  ...) with ``kwargs`` for :class:`rlvr_jax.data.gym.ReasoningGymSource` (``size``, generator
  ``config``, ``system_prompt``, ``chat``); verifier ``"reasoning_gym"``.
  ``kind="files"``: ``files`` (split → JSONL/Parquet path), optional ``field_map`` and
  ``default_verifier`` (see :mod:`rlvr_jax.data.jsonl`), and ``answer_format`` (``"chat"`` or
  ``"text"``: append the verifier's answer-format instruction; ``""``: prompts as stored) with an
  optional ``system`` message.
  """
  kind = config.task.kind
  if kind == "procedural":
    from rlvr_jax.data import procedural  # pylint: disable=g-import-not-at-top
    kwargs = dict(config.task.get("kwargs", {}))
    if "ops" in kwargs:
      kwargs["ops"] = tuple(kwargs["ops"])
    source = procedural.get(config.task.name, **kwargs)
    if config.task.get("chat"):
      from rlvr_jax.data import templates  # pylint: disable=g-import-not-at-top
      return templates.AsChat(source, system=config.task.get("system") or None)
    return source
  if kind == "gym":
    from rlvr_jax.data import gym  # pylint: disable=g-import-not-at-top
    return gym.ReasoningGymSource(config.task.name, **dict(config.task.get("kwargs", {})))
  if kind == "files":
    from rlvr_jax.data import jsonl  # pylint: disable=g-import-not-at-top
    from rlvr_jax.data import templates  # pylint: disable=g-import-not-at-top
    source = jsonl.FileTaskSource(
        dict(config.task.files), name=config.task.get("name", "file"),
        field_map=dict(config.task.get("field_map", {})) or None,
        default_verifier=config.task.get("default_verifier") or None)
    if config.task.get("answer_format"):
      return templates.WithAnswerFormat(source, chat=config.task.answer_format == "chat",
                                        system=config.task.get("system") or None)
    return source
  raise ValueError(f"Unknown task kind {kind!r}.")


def build_sampler(config: ml_collections.ConfigDict, model_config, tokenizer, mesh: Any = None
                  ) -> text_sampler.TextSampler:
  """The run's :class:`~rlvr_jax.rollout.text_sampler.TextSampler` (``config.data`` buckets and
  BOS, ``config.rl`` completion budget and sampling settings, ``config.rollout`` engine),
  generating on ``mesh`` if given (the training mesh: prompts and samples over its batch axes)."""
  rl = config.rl
  return text_sampler.TextSampler(
      model_config, tokenizer, tuple(config.data.prompt_buckets), rl.max_new_tokens,
      add_bos=config.data.add_bos, temperature=rl.temperature, top_p=rl.top_p, top_k=rl.top_k,
      mesh=mesh, engine=config.rollout.engine, num_slots=config.rollout.num_slots)


def build_scorer(config: ml_collections.ConfigDict) -> rewards_host.RewardScorer:
  """The worker-pool verifier scorer of ``config.reward``."""
  reward = config.reward
  return rewards_host.RewardScorer(reward.num_workers, reward.timeout_s, reward.failure_reward,
                                   tuple(reward.verifier_modules))


def build_lora_config(config: ml_collections.ConfigDict):
  """``config.lora`` as a :class:`rlvr_jax.models.lora.LoraConfig`, or None (``rank=0``: full
  fine-tuning)."""
  if not config.lora.rank:
    return None
  from rlvr_jax.models import lora  # pylint: disable=g-import-not-at-top
  return lora.LoraConfig(**config.lora.to_dict())


def split_trainable(params: Any, model_config: Any, lora_config: Any, rng: jax.Array
                    ) -> Tuple[Any, Any]:
  """``(trained params, frozen base)``: ``(params, None)`` for full fine-tuning; with LoRA, fresh
  adapters (``B = 0``, so the policy starts equal to ``params``) and ``params`` as the frozen base,
  quantised as ``lora_config.base_quantization`` says."""
  if lora_config is None:
    return params, None
  from rlvr_jax.models import lora  # pylint: disable=g-import-not-at-top
  return (lora.init_adapters(model_config, lora_config, rng),
          lora.prepare_base(params, lora_config))


def policy_params(params: Any, frozen: Any, lora_config: Any) -> Any:
  """The model params of the policy: ``params``, or the frozen base with the adapters attached
  (no merged copy of the weights: ``rlvr_jax.models.lora.attach``)."""
  if lora_config is None:
    return params
  from rlvr_jax.models import lora  # pylint: disable=g-import-not-at-top
  return lora.attach(frozen, params, lora_config)


def lora_policy_fn(lora_config: Any, dropout_key: jax.Array):
  """The update step's ``policy_fn(adapters, base, step)`` (None without LoRA): the base with the
  adapters attached, adapter dropout keyed by ``fold_in(dropout_key, step)``."""
  if lora_config is None:
    return None
  from rlvr_jax.models import lora  # pylint: disable=g-import-not-at-top
  return lambda params, frozen, step: lora.attach(
      frozen, params, lora_config, dropout_rng=jax.random.fold_in(dropout_key, step))


def fingerprint(tree: Any) -> str:
  """A SHA-256 of a pytree's leaves (shapes, dtypes and bytes), e.g. to tie adapters saved in a
  checkpoint to the base they were trained on."""
  import hashlib  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    value = np.asarray(jax.device_get(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}:{value.shape}:{value.dtype}".encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.hexdigest()
