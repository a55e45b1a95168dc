"""``task.chat`` for procedural tasks: prompts as chat messages, rendered by the chat template."""

import pytest

from experiments.configs import base
from rlvr_jax.data import task as task_lib
from rlvr_jax.rollout import text_sampler
from rlvr_jax.train import builders


def _hf_tokenizer():
  """A transformers tokenizer built offline: one token per character, a ChatML-like template."""
  tokenizers = pytest.importorskip("tokenizers")
  transformers = pytest.importorskip("transformers")
  chars = sorted(set("0123456789+-*=<|>abcdefghijklmnopqrstuvwxyz \n"))
  vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate(chars)}}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
  hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
  hf.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|>{% endif %}")
  return hf


def test_procedural_prompts_become_chat_messages_for_the_chat_template():
  config = base.get_config()
  config.task.kwargs = dict(min_value=0, max_value=9, ops="+")
  raw = next(task_lib.training_stream(builders.build_task(config), seed=0))
  assert isinstance(raw.prompt, str)  # the default: raw text, as a char tokenizer wants

  config.task.chat = True
  config.task.system = "be brief"
  source = builders.build_task(config)
  example = next(task_lib.training_stream(source, seed=0))
  assert source.name == "arithmetic"
  assert example.prompt == [{"role": "system", "content": "be brief"},
                            {"role": "user", "content": raw.prompt}]
  assert (example.answer, example.verifier) == (raw.answer, raw.verifier)
  tokenizer = _hf_tokenizer()
  ids = text_sampler.prompt_token_ids(tokenizer, example.prompt, add_bos=False)
  assert tokenizer.decode(ids).replace(" ", "") == (
      f"<|system|>bebrief\n<|user|>{raw.prompt}\n<|assistant|>")

  config.task.system = ""
  example = next(task_lib.training_stream(builders.build_task(config), seed=0))
  assert example.prompt == [{"role": "user", "content": raw.prompt}]
