"""Tools an environment can offer: a calculator, a stateful sandboxed Python, user functions.

A `Tool` has a name, a JSON-schema description in the OpenAI/Hugging Face function format
(``{"type": "function", "function": {"name", "description", "parameters"}}``, which
``tokenizer.apply_chat_template(..., tools=[...])`` renders into the model's own tool prompt)
and a ``run(arguments, state)`` that returns a `ToolResult` and never raises: bad arguments,
exceptions and timeouts become error results that the model sees.

* `calculator`: arithmetic on numbers (``+ - * / // % **``, unary signs, parentheses) by walking
  the parsed expression tree; names, calls, attributes and huge powers are rejected, nothing is
  ever ``eval``'d.
* `PythonTool`: runs code with `rlvr_jax.rewards.sandbox.run_python` (a fresh, resource-limited,
  namespaced process per call). It is stateful across the turns of an episode by *replay*: the
  episode keeps the cells that ran without error, and each call runs them again (their output
  suppressed) before the new cell, in one sandboxed process. Costs: the n-th call re-executes
  n-1 earlier cells (quadratic work over an episode; a slow cell slows every later call and
  counts against the one timeout), and replay repeats side effects and re-draws random numbers,
  so state that depends on them can differ from the first run. What it buys: no long-lived
  process per episode to keep alive, isolate and clean up, and a host that holds only text. As
  in a notebook, the value of a final expression is printed.
* `register_tool(fn, schema)`: any Python function; its arguments are checked against the
  schema's ``required`` list and basic JSON types before the call. By default it runs in the
  calling thread (no hard timeout); give the environment a `rlvr_jax.rewards.workers.WorkerPool`
  to run it in a worker process that is killed at its timeout (``fn`` must then be a
  module-level function).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import operator
from typing import Any, Callable, Dict, Optional

from rlvr_jax.envs.base import ToolResult
from rlvr_jax.rewards import sandbox

Schema = Dict[str, Any]

_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def normalize_schema(schema: Schema) -> Schema:
  """``schema`` in the ``{"type": "function", "function": {...}}`` form with a name and
  ``parameters`` (an object schema; ``{}`` properties when missing)."""
  function = schema["function"] if schema.get("type") == "function" else schema
  if not isinstance(function.get("name"), str) or not function["name"]:
    raise ValueError(f"a tool schema needs a non-empty 'name', got {schema!r}")
  parameters = dict(function.get("parameters") or {"type": "object", "properties": {}})
  parameters.setdefault("type", "object")
  parameters.setdefault("properties", {})
  function = dict(function, parameters=parameters)
  function.setdefault("description", "")
  return {"type": "function", "function": function}


def check_arguments(schema: Schema, arguments: Dict[str, Any]) -> Optional[str]:
  """Why ``arguments`` do not fit the schema (missing/unknown names, wrong JSON types), or None.

  A subset of JSON Schema: ``required``, the property names and each property's ``type``;
  enough to catch the mistakes a model makes, without a validation library. Unlike JSON Schema's
  default, names not in ``properties`` are rejected unless ``additionalProperties`` is true (a
  misspelt argument should reach the model as an error, not vanish into ``**kwargs``).
  """
  parameters = normalize_schema(schema)["function"]["parameters"]
  properties = parameters["properties"]
  missing = [k for k in parameters.get("required", ()) if k not in arguments]
  if missing:
    return f"missing required argument(s) {missing}"
  unknown = [k for k in arguments if k not in properties]
  if unknown and parameters.get("additionalProperties", False) is False:
    return f"unknown argument(s) {unknown}; expected {sorted(properties)}"
  for key, value in arguments.items():
    expected = properties.get(key, {}).get("type")
    if expected is None:
      continue
    names = expected if isinstance(expected, list) else [expected]
    types = tuple(t for n in names for t in _JSON_TYPES.get(n, (object,)))
    # JSON booleans are not numbers, although Python's bool is an int.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
      return f"argument {key!r} must be of type {expected}, got {type(value).__name__}"
  return None


def format_value(value: Any) -> str:
  """A tool's return value as text: strings as they are, JSON for containers, else ``repr``."""
  if isinstance(value, str):
    return value
  if isinstance(value, (dict, list, tuple)):
    try:
      return json.dumps(value)
    except (TypeError, ValueError):
      pass
  return repr(value)


@dataclasses.dataclass(frozen=True)
class Tool:
  """A named tool: its JSON schema and the function that runs it.

  Attributes:
    schema: ``{"type": "function", "function": {"name", "description", "parameters"}}``.
    fn: ``fn(**arguments)`` for stateless tools, ``fn(arguments, state)`` when ``stateful``.
    stateful: ``fn`` receives the episode's state dict and may keep per-episode data in it.
    isolate: the environment may run ``fn`` in its worker pool (module-level functions only).
  """

  schema: Schema
  fn: Callable[..., Any]
  stateful: bool = False
  isolate: bool = True

  @property
  def name(self) -> str:
    """The name the model calls the tool by."""
    return self.schema["function"]["name"]

  def run(self, arguments: Dict[str, Any], state: Dict[str, Any]) -> ToolResult:
    """Checks ``arguments``, calls ``fn`` and returns its text; failures are error results."""
    problem = check_arguments(self.schema, arguments)
    if problem is not None:
      return ToolResult(self.name, f"error: {problem}", error=True)
    try:
      if self.stateful:
        result = self.fn(arguments, state)
      else:
        result = self.fn(**arguments)
    except Exception as e:  # pylint: disable=broad-except
      return ToolResult(self.name, f"error: {type(e).__name__}: {e}", error=True)
    if isinstance(result, ToolResult):
      return result
    return ToolResult(self.name, format_value(result))


_REGISTRY: Dict[str, Tool] = {}


def register_tool(fn: Callable[..., Any], schema: Schema, *, overwrite: bool = False) -> Tool:
  """Registers ``fn`` as a tool described by ``schema``; environments can then name it.

  Args:
    fn: called as ``fn(**arguments)``; its return value is shown to the model (strings as is,
      containers as JSON, anything else by ``repr``). Exceptions become error results.
    schema: the function's JSON schema, either ``{"name", "description", "parameters"}`` or the
      same wrapped as ``{"type": "function", "function": {...}}``; it is what the chat template
      shows the model, so describe the arguments well.
    overwrite: replace a tool already registered under the same name.

  Returns:
    The `Tool` (also usable directly, without the registry).
  """
  tool = Tool(normalize_schema(schema), fn)
  if tool.name in _REGISTRY and not overwrite:
    raise ValueError(f"a tool named {tool.name!r} is already registered; pass overwrite=True")
  _REGISTRY[tool.name] = tool
  return tool


def get_tool(name: str) -> Tool:
  """The registered tool called ``name`` (``calculator`` and ``python`` are built in)."""
  try:
    return _REGISTRY[name]
  except KeyError:
    raise KeyError(f"no tool named {name!r}; registered: {sorted(_REGISTRY)}") from None


# ---------------------------------------------------------------------------------------------
# Calculator.

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_MAX_EXPRESSION_CHARS = 256
_MAX_INT_BITS = 4096  # ~1233 decimal digits: plenty for arithmetic, cheap to compute.
_MAX_EXPONENT = 4096


def _arith(node: ast.AST) -> Any:
  if isinstance(node, ast.Constant) and type(node.value) in (int, float):
    return node.value
  if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
    return _UNARY[type(node.op)](_arith(node.operand))
  if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
    left, right = _arith(node.left), _arith(node.right)
    if isinstance(node.op, ast.Pow):
      # Bound the result before computing it: 9**9**9 would take the host down.
      if abs(right) > _MAX_EXPONENT or (
          isinstance(left, int) and isinstance(right, int) and right > 0 and
          abs(left) > 1 and right * math.log2(abs(left)) > _MAX_INT_BITS):
        raise ValueError("power too large")
    if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
      if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
        raise ValueError("product too large")
    value = _BINARY[type(node.op)](left, right)
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
      raise ValueError("result is not a finite real number")
    return value
  raise ValueError(f"unsupported element {type(node).__name__}: only numbers and + - * / // % ** "
                   "( ) are allowed")


def evaluate_arithmetic(expression: str) -> Any:
  """The value of an arithmetic expression, computed without ``eval``.

  Raises:
    ValueError: anything beyond numbers, ``+ - * / // % **``, unary signs and parentheses;
      expressions over 256 characters; results too large; division by zero.
  """
  if len(expression) > _MAX_EXPRESSION_CHARS:
    raise ValueError(f"expression longer than {_MAX_EXPRESSION_CHARS} characters")
  try:
    tree = ast.parse(expression.strip(), mode="eval")
  except SyntaxError as e:
    raise ValueError(f"not an arithmetic expression: {e.msg}") from None
  try:
    return _arith(tree.body)
  except ZeroDivisionError:
    raise ValueError("division by zero") from None
  except OverflowError:
    raise ValueError("result too large") from None


def _calculator(expression: str) -> str:
  value = evaluate_arithmetic(expression)
  if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
    value = int(value)
  return str(value)


# Pure and bounded: it runs in the calling thread even when the environment has a worker pool.
calculator = Tool(normalize_schema({
    "name": "calculator",
    "description": "Evaluates an arithmetic expression with + - * / // % ** and parentheses, "
                   "e.g. '(12 + 3) * 45'. Returns the number.",
    "parameters": {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "the expression"}},
        "required": ["expression"],
    },
}), _calculator, isolate=False)
_REGISTRY["calculator"] = calculator


# ---------------------------------------------------------------------------------------------
# Python on the sandbox, stateful by replay.

# Runs the episode's earlier cells silently, then the new one; echoes a final expression's value.
_REPLAY_PROGRAM = r'''
import ast as _ast, contextlib as _contextlib, io as _io
_cells = {cells!r}
_ns = {{"__name__": "__main__"}}
for _cell in _cells[:-1]:
  with _contextlib.redirect_stdout(_io.StringIO()), _contextlib.redirect_stderr(_io.StringIO()):
    try:
      exec(compile(_cell, "<cell>", "exec"), _ns)
    except BaseException:
      pass
_tree = _ast.parse(_cells[-1])
_last = _tree.body.pop() if _tree.body and isinstance(_tree.body[-1], _ast.Expr) else None
exec(compile(_tree, "<cell>", "exec"), _ns)
if _last is not None:
  _value = eval(compile(_ast.Expression(_last.value), "<cell>", "eval"), _ns)
  if _value is not None:
    print(repr(_value))
'''


@dataclasses.dataclass(frozen=True)
class PythonTool:
  """Sandboxed Python, stateful across an episode's turns by replaying its earlier cells.

  Attributes:
    config: the sandbox limits of one call (the replayed cells count against them too).
    max_output_chars: the result text is cut to this many characters (stdout, then the error).
    stateful: replay earlier cells; False runs each cell in a fresh interpreter.
  """

  config: sandbox.SandboxConfig = sandbox.SandboxConfig(timeout_s=5.0)
  max_output_chars: int = 2000
  stateful: bool = True

  def __call__(self, arguments: Dict[str, Any], state: Dict[str, Any]) -> ToolResult:
    """Runs ``arguments["code"]`` after the episode's earlier successful cells."""
    code = arguments["code"]
    history = list(state.get("python_cells", ())) if self.stateful else []
    cells = history + [code]
    result = sandbox.run_python(_REPLAY_PROGRAM.format(cells=cells), config=self.config)
    ok = result.status == "ok"
    if ok and self.stateful:
      state["python_cells"] = cells
    text = result.stdout
    if not ok:
      if text and not text.endswith("\n"):
        text += "\n"
      detail = result.stderr.strip().splitlines()[-3:] if result.stderr.strip() else []
      text += f"{result.status}" + (": " + "\n".join(detail) if detail else "")
    if len(text) > self.max_output_chars:
      text = text[:self.max_output_chars] + "...[truncated]"
    return ToolResult("python", text, error=not ok)


PYTHON_SCHEMA = normalize_schema({
    "name": "python",
    "description": "Runs Python 3 code in a sandbox and returns what it prints (and the value of "
                   "a final expression). Variables persist across calls within the conversation.",
    "parameters": {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python source to run"}},
        "required": ["code"],
    },
})


def python_tool(config: sandbox.SandboxConfig = sandbox.SandboxConfig(timeout_s=5.0), *,
                max_output_chars: int = 2000, stateful: bool = True) -> Tool:
  """The sandboxed Python tool (name ``python``); see `PythonTool` for the replay design.

  It already isolates each call in its own process, so environments run it in a thread rather
  than a worker pool (``isolate=False``).
  """
  runner = PythonTool(config, max_output_chars, stateful)
  return Tool(PYTHON_SCHEMA, runner, stateful=True, isolate=False)


_REGISTRY["python"] = python_tool()
