"""Prompt templates: question text + an answer-format instruction that matches the verifier.

A verifier can only score what it can find, so every prompt built here ends with the instruction
registered for the example's verifier (``"math"`` asks for ``\\boxed{}``, ``"gsm8k"`` for a final
``#### n`` line, ...). Prompts are either plain text or chat messages; chat messages are rendered
to a string by the tokenizer's own ``apply_chat_template`` (Hugging Face tokenizers), so the
special tokens are exactly those the model was trained with.

Typical use::

  example = templates.with_answer_format(example)           # Example with the instruction added
  text = templates.render(example.prompt, tokenizer)        # str ready for tokenisation
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterator, Optional

from rlvr_jax.data import task as task_lib

# The instruction Qwen2.5-Math and most R1-style recipes append to math problems.
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
GSM8K_INSTRUCTION = (
    "Solve the problem step by step. On the last line, write the final numeric answer after "
    "'#### ', for example: #### 42")
ANSWER_TAG_INSTRUCTION = (
    "Think about the problem, then give only the final answer inside <answer> </answer> tags.")
EXACT_INSTRUCTION = "Reply with the final answer only."

_ANSWER_FORMATS: Dict[str, str] = {
    "math": MATH_INSTRUCTION,
    "boxed": MATH_INSTRUCTION,
    "gsm8k": GSM8K_INSTRUCTION,
    "gsm8k_flexible": GSM8K_INSTRUCTION,
    "answer_tag": ANSWER_TAG_INSTRUCTION,
    "reasoning_gym": ANSWER_TAG_INSTRUCTION,
    "exact": EXACT_INSTRUCTION,
}


def register_answer_format(verifier: str, instruction: str) -> None:
  """Sets the answer-format instruction used for examples scored by ``verifier``."""
  _ANSWER_FORMATS[verifier] = instruction


def answer_format(verifier: str) -> str:
  """The instruction for ``verifier``; a KeyError lists the verifiers that have one."""
  try:
    return _ANSWER_FORMATS[verifier]
  except KeyError:
    raise KeyError(f"No answer-format instruction for verifier {verifier!r}; known: "
                   f"{sorted(_ANSWER_FORMATS)}. Use register_answer_format.") from None


def build_prompt(question: str, verifier: str, *, chat: bool = True,
                 system: Optional[str] = None, separator: str = "\n\n") -> task_lib.Prompt:
  """The prompt for ``question``, ending with ``verifier``'s answer-format instruction.

  Args:
    question: the problem statement.
    verifier: registry name of the verifier that will score the completion.
    chat: True: chat messages (optional system message, then one user turn); False: plain text.
    system: optional system message (chat) or preamble (plain text).
    separator: between preamble, question and instruction in the text.

  Returns:
    ``[{"role": "system", ...}?, {"role": "user", "content": question + sep + instruction}]``
    or the same pieces joined by ``separator``.
  """
  user = f"{question}{separator}{answer_format(verifier)}"
  if not chat:
    return f"{system}{separator}{user}" if system else user
  messages = [{"role": "system", "content": system}] if system else []
  messages.append({"role": "user", "content": user})
  return messages


def with_answer_format(example: task_lib.Example, *, chat: bool = True,
                       system: Optional[str] = None) -> task_lib.Example:
  """``example`` with its prompt rebuilt by :func:`build_prompt` for its own verifier.

  The example's prompt must be plain text (the bare question); a chat prompt is assumed to be
  formatted already and raises ValueError, so an instruction is never added twice.
  """
  if not isinstance(example.prompt, str):
    raise ValueError("with_answer_format expects a plain-text question; got chat messages.")
  prompt = build_prompt(example.prompt, example.verifier, chat=chat, system=system)
  return dataclasses.replace(example, prompt=prompt)


def render(prompt: task_lib.Prompt, tokenizer: Any = None, *,
           add_generation_prompt: bool = True) -> str:
  """The string the model sees for ``prompt``.

  Args:
    prompt: plain text (returned unchanged) or chat messages.
    tokenizer: an object with ``apply_chat_template`` (a Hugging Face tokenizer); required for
      chat messages. A tokenizer without a chat template raises ValueError.
    add_generation_prompt: append the assistant-turn header so the model answers.

  Returns:
    The rendered prompt text (not yet tokenised).
  """
  if isinstance(prompt, str):
    return prompt
  _check_messages(prompt)
  if tokenizer is None or not hasattr(tokenizer, "apply_chat_template"):
    raise ValueError("Chat prompts need a tokenizer with apply_chat_template.")
  if getattr(tokenizer, "chat_template", "present") is None:
    raise ValueError("The tokenizer has no chat template; use plain-text prompts (chat=False) "
                     "or set tokenizer.chat_template.")
  return tokenizer.apply_chat_template(
      list(prompt), tokenize=False, add_generation_prompt=add_generation_prompt)


def _check_messages(messages: Any) -> None:
  for i, m in enumerate(messages):
    if not (isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)):
      raise ValueError(f"Chat message {i} must be a dict with str 'role' and 'content'; got {m!r}.")


def as_chat(prompt: task_lib.Prompt, system: Optional[str] = None) -> task_lib.Prompt:
  """A plain-text prompt as chat messages (``system`` first when given, then the text as the user
  turn); chat messages are returned unchanged."""
  if not isinstance(prompt, str):
    return prompt
  return ([{"role": "system", "content": system}] if system else []) + [
      {"role": "user", "content": prompt}]


@dataclasses.dataclass
class AsChat:
  """A task source whose plain-text prompts become chat messages (:func:`as_chat`), so that an
  HF tokenizer renders them with the model's chat template (procedural tasks, ``task.chat``)."""

  source: task_lib.TaskSource
  system: Optional[str] = None

  @property
  def name(self) -> str:
    """The wrapped source's name."""
    return self.source.name

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """The wrapped source's examples of ``split`` with chat-message prompts."""
    for example in self.source.examples(split, seed):
      yield dataclasses.replace(example, prompt=as_chat(example.prompt, self.system))


@dataclasses.dataclass
class WithAnswerFormat:
  """A task source whose examples get their verifier's answer-format instruction
  (:func:`with_answer_format`), as chat messages (``chat=True``) or plain text."""

  source: task_lib.TaskSource
  chat: bool = True
  system: Optional[str] = None

  @property
  def name(self) -> str:
    """The wrapped source's name."""
    return self.source.name

  def examples(self, split: str, seed: int = 0) -> Iterator[task_lib.Example]:
    """The wrapped source's examples of ``split``, each with the instruction added."""
    for example in self.source.examples(split, seed):
      yield with_answer_format(example, chat=self.chat, system=self.system)
