"""Chat rendering: prompt ids, and observations appended as ids equal the full re-rendering."""

import string

import pytest

from rlvr_jax.data import char_tokenizer
from rlvr_jax.envs import chat

# A Qwen2.5-style template (tool results in one user turn as <tool_response> blocks; tools
# listed in the system turn), over a character tokenizer with <|im_start|>/<|im_end|> tokens.
QWEN_LIKE = (
    "{% if tools %}<|im_start|>system\ntools:{% for t in tools %} {{ t.function.name }}"
    "{% endfor %}{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'tool' %}"
    "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
    "{{ '\\n<tool_response>\\n' + m.content + '\\n</tool_response>' }}"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{ '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.fixture(scope="module")
def qwen_like():
  alphabet = string.ascii_letters + string.digits + " \n<>/_|:*+=.,?'\"{}()[]-"
  tok = char_tokenizer.build(alphabet)
  tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
  tok.chat_template = QWEN_LIKE
  tok.eos_token = "<|im_end|>"
  return tok


TOOLS = [{"type": "function", "function": {"name": "calculator", "parameters": {}}}]


@pytest.mark.parametrize("stopped", [True, False])
def test_appended_ids_equal_full_rendering(qwen_like, stopped):
  tok = qwen_like
  messages = [{"role": "user", "content": "What is 12*34?"}]
  prompt = chat.prompt_ids(tok, messages, TOOLS)
  assert tok.decode(prompt).startswith("<|im_start|>system\ntools: calculator")
  turn_text = '<tool_call>{"name": "calculator"}</tool_call>'
  turn = chat.encode(tok, turn_text) + ([tok.eos_token_id] if stopped else [])
  observations = [{"role": "tool", "content": "408"}, {"role": "tool", "content": "ok"}]
  obs = chat.observation_ids(tok, turn, observations)
  # Whether or not the model generated <|im_end|>, the conversation is closed exactly once.
  expected_obs = ("" if stopped else "<|im_end|>") + (
      "\n<|im_start|>user\n<tool_response>\n408\n</tool_response>\n<tool_response>\nok\n"
      "</tool_response><|im_end|>\n<|im_start|>assistant\n")
  assert tok.decode(obs) == expected_obs
  full = messages + [{"role": "assistant", "content": turn_text}] + observations
  # prompt + generated turn + observation is the id sequence of the re-rendered conversation.
  assert prompt + turn + obs == chat.prompt_ids(tok, full, TOOLS)


def test_char_template_observation(qwen_like):
  tok = char_tokenizer.build()
  # The demo template renders a tool message as its content and closes a turn with <eos>.
  assert chat.observation_ids(tok, chat.encode(tok, "2+2"), [{"role": "tool", "content": "4"}]) \
      == chat.encode(tok, "<eos>4")
  assert chat.observation_ids(tok, [tok.eos_token_id], [{"role": "tool", "content": "4"}]) \
      == chat.encode(tok, "4")


def test_long_observations_are_cut_inside_the_content(qwen_like):
  tok = qwen_like
  turn = chat.encode(tok, "call") + [tok.eos_token_id]
  observations = [{"role": "tool", "content": "x" * 300}, {"role": "tool", "content": "short"}]
  full = chat.observation_ids(tok, turn, observations)
  cut = chat.observation_ids(tok, turn, observations, max_tokens=120)
  assert len(full) > 300 and len(cut) <= 120
  text = tok.decode(cut)
  # The framing and the next assistant header are whole; the long content is cut and marked.
  assert text.startswith("\n<|im_start|>user\n<tool_response>\nxxx")
  assert text.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
  assert "x" * 200 not in text and text.count("[truncated]") == 1 and "short" in text
  # Too small for even the framing: the untruncated ids come back for the caller to decide.
  assert chat.observation_ids(tok, turn, observations, max_tokens=10) == full


def test_non_append_only_template_is_rejected(qwen_like):
  tok = char_tokenizer.build()
  tok.chat_template = ("{% for m in messages %}{% if loop.last %}last:{% endif %}{{ m.content }}"
                       "{% endfor %}")
  with pytest.raises(ValueError, match="append-only"):
    chat.observation_ids(tok, [5], [{"role": "tool", "content": "x"}])
