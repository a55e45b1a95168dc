"""A character-level tokenizer built in code, as a real ``transformers.PreTrainedTokenizerFast``.

The CPU demo needs a tokenizer without a download. Building it from a ``tokenizers`` WordLevel
model with one token per character means the demo goes through exactly the code path of a real HF
model: ``tokenizer(text)``, ``apply_chat_template``, ``decode``, ``save_pretrained``.

Ids: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, then the characters of ``alphabet`` in
order. A minimal chat template renders ``"{content}"`` of user turns followed by the assistant's
content (or nothing when ``add_generation_prompt``), so chat-style prompts also work.
"""

from __future__ import annotations

import string

import tokenizers
from tokenizers import decoders, models, pre_tokenizers
import transformers

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
DEFAULT_ALPHABET = string.digits + "+-*/()=,:>?# \n" + string.ascii_lowercase

# User turns are concatenated; an assistant turn is its content followed by the end token.
_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
    "{% else %}{{ m['content'] }}{% endif %}{% endfor %}"
)


def build(alphabet: str = DEFAULT_ALPHABET) -> transformers.PreTrainedTokenizerFast:
  """A character tokenizer over ``alphabet`` (characters must be distinct)."""
  if len(set(alphabet)) != len(alphabet):
    raise ValueError("alphabet has repeated characters.")
  vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
  for ch in alphabet:
    vocab[ch] = len(vocab)
  backend = tokenizers.Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
  # Every character is its own pre-token; [\s\S] also matches newlines.
  backend.pre_tokenizer = pre_tokenizers.Split(
      tokenizers.Regex(r"[\s\S]"), behavior="isolated")
  backend.decoder = decoders.Fuse()
  backend.add_special_tokens(list(SPECIAL_TOKENS))
  tokenizer = transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend,
      pad_token="<pad>",
      bos_token="<bos>",
      eos_token="<eos>",
      unk_token="<unk>",
  )
  tokenizer.chat_template = _CHAT_TEMPLATE
  return tokenizer
