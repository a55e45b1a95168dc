"""Calculator, sandboxed stateful Python tool and user-registered tools."""

import pytest

from rlvr_jax.envs import tools


@pytest.mark.parametrize("expression, value", [
    ("(12 + 3) * 45", "675"), ("7 / 2", "3.5"), ("8 / 2", "4"), ("-2 ** 10", "-1024"),
    ("17 // 5 % 3", "0"), ("123456789 * 987654321", "121932631112635269"), ("1.5e3 + 1", "1501"),
])
def test_calculator_values(expression, value):
  assert tools.calculator.run({"expression": expression}, {}).content == value


@pytest.mark.parametrize("expression", [
    "__import__('os').system('true')", "x + 1", "(1).real", "9 ** 9 ** 9", "10.0 ** 400",
    "1 / 0", "[1] * 3", "1 if 1 else 2", "2 ** 20000", "1" * 300, "",
])
def test_calculator_rejects_everything_else(expression):
  result = tools.calculator.run({"expression": expression}, {})
  assert result.error and result.content.startswith("error:")


def test_calculator_argument_checks():
  assert "missing" in tools.calculator.run({}, {}).content
  assert "unknown" in tools.calculator.run({"expression": "1", "x": 2}, {}).content
  assert "type" in tools.calculator.run({"expression": 1}, {}).content


def test_register_tool_schema_and_errors():
  def add(a, b=0):
    return {"sum": a + b}

  tool = tools.register_tool(add, {
      "name": "test_add", "description": "adds",
      "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                      "b": {"type": "number"}},
                     "required": ["a"]}})
  assert tools.get_tool("test_add") is tool
  assert tool.schema["type"] == "function" and tool.schema["function"]["name"] == "test_add"
  assert tool.run({"a": 2, "b": 0.5}, {}).content == '{"sum": 2.5}'
  assert tool.run({"a": True}, {}).error  # a JSON boolean is not an integer
  with pytest.raises(ValueError, match="already registered"):
    tools.register_tool(add, {"name": "test_add"})
  broken = tools.register_tool(lambda: 1 / 0, {"name": "test_broken"})
  assert broken.run({}, {}).content == "error: ZeroDivisionError: division by zero"


def test_python_tool_keeps_state_across_calls():
  python = tools.get_tool("python")
  state = {}
  first = python.run({"code": "x = 40\nprint('set')"}, state)
  assert (first.content, first.error) == ("set\n", False)
  # Earlier cells are replayed silently; the final expression's value is echoed.
  assert python.run({"code": "x + 2"}, state).content == "42\n"
  failed = python.run({"code": "y = 1 / 0"}, state)
  assert failed.error and "ZeroDivisionError" in failed.content
  assert state["python_cells"] == ["x = 40\nprint('set')", "x + 2"]  # failed cells not replayed
  assert python.run({"code": "print(x * 2)"}, {}).error  # another episode has no x


def test_python_tool_hostile_code_does_not_reach_the_host(tmp_path):
  target = tmp_path / "owned"
  python = tools.get_tool("python")
  for code in (f"open({str(target)!r}, 'w').write('x')",
               f"import os; os.system('touch {target}')",
               "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"):
    result = python.run({"code": code}, {})
    assert result.error, code
  assert not target.exists()
