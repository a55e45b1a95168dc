"""Tool-call parsers, from examples in each model family's documented format."""

from rlvr_jax.envs import parsers
from rlvr_jax.envs.base import ToolCall


def test_qwen_hermes_blocks():
  text = ('Let me compute.\n<tool_call>\n{"name": "calculator", "arguments": {"expression": '
          '"12*34"}}\n</tool_call>\n<tool_call>\n{"name": "python", "arguments": {"code": '
          '"print(1)"}}\n</tool_call><|im_end|>')
  assert parsers.parse_qwen(text) == [
      ToolCall("calculator", {"expression": "12*34"}), ToolCall("python", {"code": "print(1)"})]
  assert parsers.get_parser("hermes") is parsers.parse_qwen
  assert parsers.parse_qwen("The answer is 408.") == []


def test_qwen_malformed_calls_are_reported_as_errors():
  bad_json, no_name, bad_args, string_args = parsers.parse_qwen(
      '<tool_call>{"name": "f", "arguments": {</tool_call>'
      '<tool_call>{"arguments": {}}</tool_call>'
      '<tool_call>{"name": "f", "arguments": [1]}</tool_call>'
      '<tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call>')
  assert bad_json.error and "JSON" in bad_json.error
  assert no_name.error and "name" in no_name.error
  assert bad_args.name == "f" and bad_args.error
  assert string_args == ToolCall("f", {"x": 1})  # arguments as a JSON string are accepted


def test_llama3_json_and_python_tag():
  assert parsers.parse_llama3('{"name": "get_weather", "parameters": {"city": "Paris"}}'
                              "<|eot_id|>") == [ToolCall("get_weather", {"city": "Paris"})]
  assert parsers.parse_llama3('<|python_tag|>{"name": "a", "parameters": {}}; '
                              '{"name": "b", "parameters": {"s": "x;y"}}<|eom_id|>') == [
                                  ToolCall("a", {}), ToolCall("b", {"s": "x;y"})]
  # <|python_tag|> with code: the built-in code interpreter.
  assert parsers.parse_llama3("<|python_tag|>import math\nprint(math.pi)<|eom_id|>") == [
      ToolCall("python", {"code": "import math\nprint(math.pi)"})]
  assert parsers.parse_llama3("The capital of France is Paris.<|eot_id|>") == []
  (bad,) = parsers.parse_llama3('{"name": "f", "parameters": {')
  assert bad.error


def test_python_fence():
  text = "First:\n```python\nx = 2\nprint(x)\n```\nthen\n```py\ny = 3\n```\n```python\nopen"
  assert parsers.parse_python_fence(text) == [
      ToolCall("python", {"code": "x = 2\nprint(x)\n"}), ToolCall("python", {"code": "y = 3\n"})]
  assert parsers.parse_python_fence("no code, the answer is 4") == []
  assert parsers.STOP_STRINGS["python_fence"] == ("\n```\n",)
