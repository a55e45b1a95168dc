"""Prompt templates: instruction matches the verifier; chat rendering via apply_chat_template."""

import dataclasses

import pytest

from rlvr_jax.data import task as task_lib
from rlvr_jax.data import templates


def test_build_prompt_chat_and_text():
  msgs = templates.build_prompt("What is 2+3?", "math", system="Be brief.")
  assert msgs[0] == {"role": "system", "content": "Be brief."}
  assert msgs[1]["role"] == "user"
  assert msgs[1]["content"].startswith("What is 2+3?")
  assert msgs[1]["content"].endswith("\\boxed{}.")
  text = templates.build_prompt("Q", "gsm8k", chat=False)
  assert text == "Q\n\n" + templates.GSM8K_INSTRUCTION
  assert "####" in text


def test_every_standard_verifier_has_a_format():
  for name in ("exact", "answer_tag", "boxed", "gsm8k", "gsm8k_flexible", "math"):
    assert templates.answer_format(name)
  with pytest.raises(KeyError, match="register_answer_format"):
    templates.answer_format("no-such-verifier")


def test_register_answer_format():
  templates.register_answer_format("test/custom", "Say it.")
  assert templates.build_prompt("Q", "test/custom", chat=False) == "Q\n\nSay it."


def test_with_answer_format():
  ex = task_lib.Example(prompt="Q?", answer="1", verifier="answer_tag")
  out = templates.with_answer_format(ex)
  assert out.prompt[-1]["content"] == "Q?\n\n" + templates.ANSWER_TAG_INSTRUCTION
  assert dataclasses.replace(out, prompt=ex.prompt) == ex
  with pytest.raises(ValueError):
    templates.with_answer_format(out)


class _FakeTokenizer:
  """Records the call; renders like a ChatML template."""
  chat_template = "chatml"

  def apply_chat_template(self, messages, tokenize, add_generation_prompt):
    assert tokenize is False
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def test_render():
  assert templates.render("plain") == "plain"
  msgs = [{"role": "user", "content": "hi"}]
  assert templates.render(msgs, _FakeTokenizer()) == (
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
  with pytest.raises(ValueError, match="tokenizer"):
    templates.render(msgs)
  with pytest.raises(ValueError, match="role"):
    templates.render([{"content": "x"}], _FakeTokenizer())
  no_template = _FakeTokenizer()
  no_template.chat_template = None
  with pytest.raises(ValueError, match="no chat template"):
    templates.render(msgs, no_template)


def test_render_with_hf_tokenizer():
  """A real transformers tokenizer built offline from a tiny vocabulary and a ChatML template."""
  tokenizers = pytest.importorskip("tokenizers")
  transformers = pytest.importorskip("transformers")
  vocab = {"[UNK]": 0, "hi": 1}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
  hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
  hf.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}<|assistant|>{% endif %}")
  msgs = templates.build_prompt("hi", "exact")
  assert templates.render(msgs, hf) == (
      "<|user|>hi\n\n" + templates.EXACT_INSTRUCTION + "\n<|assistant|>")
