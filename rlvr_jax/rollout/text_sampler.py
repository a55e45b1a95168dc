"""Text in, text out: prompt encoding, stop tokens, generation and decoding, in one place.

The RL loop, the supervised warm-up, the evaluation driver, ``experiments/evaluate.py`` and the
notebooks all sample through :class:`TextSampler`, so a prompt is rendered, tokenised, padded and
decoded the same way everywhere:

* a prompt (plain text, or chat messages rendered with the tokenizer's chat template by
  :func:`rlvr_jax.data.templates.render`) is tokenised without special tokens, plus BOS when
  ``add_bos`` (:func:`prompt_token_ids`);
* prompts are left-padded to the smallest bucket that fits (one compilation per bucket);
* generation stops at the tokenizer's end ids (:func:`stop_token_ids`);
* a completion is decoded up to its length with special tokens dropped
  (:func:`decode_completions`).

With a ``mesh`` the sampler generates on it (:mod:`rlvr_jax.rollout.sharding`: prompts and samples
over ``("data", "fsdp")``, params by the training partition rules); every process encodes the
same prompts and uploads only its own devices' rows. The rollout stays on the devices; the host
receives only what decoding and scoring read (:meth:`TextSampler.sample`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, List, Optional, Sequence, Tuple

import jax
from jax.sharding import Mesh
import numpy as np

from rlvr_jax import types
from rlvr_jax.data import templates
from rlvr_jax.rollout import continuous
# The module path, not the package attribute: rlvr_jax.rollout exports a function named generate.
from rlvr_jax.rollout.generate import generate as generate_fn
from rlvr_jax.rollout.generate import pad_prompts

# End-of-turn tokens of the chat templates we support (Qwen, Llama 3), besides ``eos_token``.
_CHAT_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>")


def prompt_token_ids(tokenizer, prompt, *, add_bos: bool) -> List[int]:
  """Token ids of a prompt (text, or chat messages through the tokenizer's chat template)."""
  text = templates.render(prompt, tokenizer)
  ids = tokenizer(text, add_special_tokens=False)["input_ids"]
  if add_bos and tokenizer.bos_token_id is not None:
    ids = [tokenizer.bos_token_id] + ids
  return ids


def stop_token_ids(tokenizer) -> Tuple[int, ...]:
  """End-of-sequence ids: ``eos_token_id`` plus the chat end tokens the vocabulary has."""
  ids = {tokenizer.eos_token_id}
  vocab = tokenizer.get_vocab()
  ids.update(vocab[token] for token in _CHAT_END_TOKENS if token in vocab)
  return tuple(sorted(i for i in ids if i is not None))


def pad_token_id(tokenizer) -> int:
  """The padding id: ``pad_token_id``, else ``eos_token_id`` (padding is always masked)."""
  return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def decode_completions(tokenizer, tokens: np.ndarray, lengths: np.ndarray) -> List[str]:
  """Completion texts: the first ``lengths[b]`` tokens, special tokens (the stop token) dropped."""
  return tokenizer.batch_decode([row[:n].tolist() for row, n in zip(tokens, lengths)],
                                skip_special_tokens=True)


def fetch_global(x: Any) -> Any:
  """A (possibly multi-host sharded) array, or a pytree of them, as full host numpy arrays (one
  transfer for the whole tree)."""
  if jax.process_count() > 1 and any(isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
                                     for leaf in jax.tree.leaves(x)):
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(np.asarray, jax.device_get(x))


def pad_by_repetition(items: Sequence[Any], size: int) -> Tuple[List[Any], int]:
  """``(items padded to size by repeating the last one, number of real items)``: fixed batch
  shapes, so a jit-compiled sampler compiles once; callers drop the padding's outputs."""
  items = list(items)
  if not items or len(items) > size:
    raise ValueError(f"need 1..{size} items, got {len(items)}.")
  return items + [items[-1]] * (size - len(items)), len(items)


@dataclasses.dataclass
class TextSampler:
  """Prompt encoding + ``generate`` + decoding with a run's sampling settings.

  Attributes:
    model_config: the model's :class:`~rlvr_jax.models.config.ModelConfig`.
    tokenizer: a Hugging Face-style tokenizer (``rlvr_jax.data.char_tokenizer`` fits).
    prompt_buckets: prompt lengths to left-pad to (the smallest that fits).
    max_new_tokens: completion budget.
    add_bos: prepend the BOS token to every prompt.
    temperature, top_p, top_k: the default sampling settings (``temperature=0``: greedy).
    mesh: the device mesh to generate on (``None``: where the params are, prompts unsharded).
    engine: ``"static"`` (`rlvr_jax.rollout.generate`) or ``"continuous"``
      (`rlvr_jax.rollout.continuous`: continuous batching over ``num_slots`` decode slots).
    num_slots: the continuous engine's slots (``0``: one per sampled row).
  """

  model_config: Any
  tokenizer: Any
  prompt_buckets: Sequence[int]
  max_new_tokens: int
  add_bos: bool = False
  temperature: float = 1.0
  top_p: Optional[float] = None
  top_k: Optional[int] = None
  mesh: Optional[Mesh] = None
  engine: str = "static"
  num_slots: int = 0

  def __post_init__(self):
    if self.engine not in ("static", "continuous"):
      raise ValueError(f"engine must be 'static' or 'continuous', got {self.engine!r}")
    if self.num_slots < 0:
      raise ValueError(f"num_slots must be >= 0, got {self.num_slots}")
    self.stop_ids = stop_token_ids(self.tokenizer)
    self.pad_id = pad_token_id(self.tokenizer)

  def encode(self, examples: Sequence[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """Left-padded ``(prompt_tokens [N, bucket], prompt_mask [N, bucket])`` of the examples'
    prompts (objects with a ``prompt`` attribute)."""
    ids = [prompt_token_ids(self.tokenizer, e.prompt, add_bos=self.add_bos) for e in examples]
    return pad_prompts(ids, self.prompt_buckets, self.pad_id)

  def prompt_length(self, prompt) -> int:
    """Tokens of one prompt, BOS included (to check it fits a bucket)."""
    return len(prompt_token_ids(self.tokenizer, prompt, add_bos=self.add_bos))

  def sample(self, params, examples: Sequence[Any], rng: jax.Array, *, num_samples: int,
             temperature: Optional[float] = None, return_entropy: bool = False,
             on_host: bool = False) -> Tuple[types.Rollout, List[str]]:
    """``num_samples`` completions per example: ``(rollout, texts)``, prompt-major.

    The texts need ``tokens`` and ``lengths`` on the host: they are fetched in one transfer.
    With ``on_host`` the returned rollout is host numpy arrays: the sampled arrays (tokens,
    log-probs, lengths, truncation, entropy) fetched in that same transfer, the prompts repeated
    from the host's own copy; otherwise it stays on the devices (sharded with a mesh).
    """
    prompt_tokens, prompt_mask = self.encode(examples)
    engine = generate_fn if self.engine == "static" else functools.partial(
        continuous.generate, num_slots=self.num_slots or None)
    rollout = engine(
        params, self.model_config, prompt_tokens, prompt_mask, rng,
        num_samples=num_samples, max_new_tokens=self.max_new_tokens,
        temperature=self.temperature if temperature is None else temperature,
        top_k=self.top_k, top_p=self.top_p, stop_token_ids=self.stop_ids,
        pad_token_id=self.pad_id, return_entropy=return_entropy, mesh=self.mesh)
    if on_host:
      sampled = fetch_global(dataclasses.replace(rollout, prompt_tokens=None, prompt_mask=None))
      rollout = dataclasses.replace(sampled, prompt_tokens=np.repeat(prompt_tokens, num_samples, 0),
                                    prompt_mask=np.repeat(prompt_mask, num_samples, 0))
      tokens, lengths = rollout.tokens, rollout.lengths
    else:
      tokens, lengths = fetch_global((rollout.tokens, rollout.lengths))
    return rollout, decode_completions(self.tokenizer, tokens, lengths)

  def sample_fn(self, params, *, temperature: Optional[float] = None):
    """The evaluation driver's ``sample_fn(examples, rng, n) -> texts`` for these params."""

    def sample(examples, rng, n):
      return self.sample(params, examples, rng, num_samples=n, temperature=temperature)[1]

    return sample
