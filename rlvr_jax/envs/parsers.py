"""Tool-call parsers for the formats models are trained to emit, plus a plain fenced-code form.

Each parser maps an assistant turn's text (decoded with special tokens kept) to a list of
`ToolCall`; a turn without a call parses to ``[]`` (the final answer). A call that is recognisably
a call but malformed (bad JSON, no name) comes back with ``error`` set, so the environment can
count it as a tool error and tell the model what went wrong.

* ``"qwen"`` (alias ``"hermes"``): Qwen2.5 / Qwen3 chat templates, one JSON object per
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block, any number per turn.
* ``"llama3"``: Llama 3.1 / 3.2 / 3.3 templates. A custom-tool call is the whole message as
  ``{"name": ..., "parameters": {...}}`` (``"arguments"`` also accepted), optionally after
  ``<|python_tag|>``, several separated by ``;``; ``<|python_tag|>`` followed by anything that is
  not such JSON is code for the built-in code interpreter, reported as a call of ``python``
  with ``{"code": ...}``.
* ``"python_fence"``: for models without a tool format, each ```` ```python ```` (or ``py``)
  fenced block is a call of ``python`` with ``{"code": ...}``. A block that is never closed (a
  turn cut by its token budget) is not run.
"""

from __future__ import annotations

import json
import re
from typing import Callable, Dict, List, Tuple

from rlvr_jax.envs.base import ToolCall

Parser = Callable[[str], List[ToolCall]]

_QWEN_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_FENCE = re.compile(r"```(?:python|py)[ \t]*\n(.*?)```", re.DOTALL)
_LLAMA_END_TOKENS = ("<|eom_id|>", "<|eot_id|>", "<|end_of_text|>")
PYTHON_TAG = "<|python_tag|>"


def _from_json(payload: str, argument_keys: Tuple[str, ...]) -> ToolCall:
  """A ToolCall from ``{"name": ..., <argument key>: {...}}``; malformed input sets ``error``."""
  try:
    obj = json.loads(payload)
  except json.JSONDecodeError as e:
    return ToolCall("", {}, error=f"tool call is not valid JSON: {e}")
  if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
    return ToolCall("", {}, error="tool call must be a JSON object with a string 'name'")
  arguments = {}
  for key in argument_keys:
    if key in obj:
      arguments = obj[key]
      break
  if isinstance(arguments, str):
    # Some models emit the arguments as a JSON string; accept it when it decodes to an object.
    try:
      arguments = json.loads(arguments)
    except json.JSONDecodeError:
      pass
  if not isinstance(arguments, dict):
    return ToolCall(obj["name"], {}, error="tool call arguments must be a JSON object")
  return ToolCall(obj["name"], arguments)


def parse_qwen(text: str) -> List[ToolCall]:
  """Calls in Qwen2.5/Qwen3 (Hermes) form: ``<tool_call>{"name", "arguments"}</tool_call>``."""
  return [_from_json(m.group(1).strip(), ("arguments", "parameters"))
          for m in _QWEN_BLOCK.finditer(text)]


def parse_llama3(text: str) -> List[ToolCall]:
  """Calls in Llama 3.x form: a JSON message ``{"name", "parameters"}`` or ``<|python_tag|>``."""
  body = text.strip()
  for end in _LLAMA_END_TOKENS:
    if body.endswith(end):
      body = body[:-len(end)].rstrip()
  tagged = PYTHON_TAG in body
  if tagged:
    body = body.split(PYTHON_TAG, 1)[1].strip()
  if body.startswith("{"):
    calls = [_from_json(part.strip(), ("parameters", "arguments"))
             for part in _split_json_objects(body)]
    if all(c.error is None for c in calls) or not tagged:
      return calls
  if tagged and body:
    return [ToolCall("python", {"code": body})]
  return []


def _split_json_objects(body: str) -> List[str]:
  """Splits ``{...}; {...}`` into its objects (``;`` inside strings does not split)."""
  decoder = json.JSONDecoder()
  parts, index = [], 0
  while index < len(body):
    try:
      _, end = decoder.raw_decode(body, index)
    except json.JSONDecodeError:
      parts.append(body[index:])  # the malformed rest, reported as one bad call
      break
    parts.append(body[index:end])
    index = end
    while index < len(body) and body[index] in " \t\n;":
      index += 1
  return parts


def parse_python_fence(text: str) -> List[ToolCall]:
  """Each closed ```` ```python ```` block is a call of ``python`` with ``{"code": block}``."""
  return [ToolCall("python", {"code": m.group(1)}) for m in _FENCE.finditer(text)]


PARSERS: Dict[str, Parser] = {
    "qwen": parse_qwen,
    "hermes": parse_qwen,
    "llama3": parse_llama3,
    "python_fence": parse_python_fence,
}

# Strings that should end a turn so the call runs at once. Qwen and Llama end a calling turn
# with their end-of-turn token (<|im_end|>, <|eom_id|>/<|eot_id|>), which the rollout stops on
# anyway; a fenced block ends at the closing fence.
STOP_STRINGS: Dict[str, Tuple[str, ...]] = {
    "qwen": (),
    "hermes": (),
    "llama3": (),
    "python_fence": ("\n```\n",),
}


def get_parser(name: str) -> Parser:
  """The parser registered as ``name`` (``qwen``, ``hermes``, ``llama3``, ``python_fence``)."""
  try:
    return PARSERS[name]
  except KeyError:
    raise KeyError(f"unknown tool-call format {name!r}; known: {sorted(PARSERS)}") from None
