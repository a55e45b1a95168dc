"""`ToolEnvironment`: answer with tool calls until a turn without one, then score the answer.

The general tool-use loop most tasks need, built from a parser (the model's tool-call format), a
list of tools and a reward function of the final turn:

* a turn with tool calls runs them (at most ``max_calls_per_turn``; the rest are reported as
  errors) and shows the results as ``tool`` messages; its reward part is 0;
* a turn without a call is the final answer: ``reward_fn(text, example)`` is its reward part and
  the episode ends.

A tool failure (unknown tool, bad arguments, exception, sandbox violation, timeout) is an error
observation the model can react to; it never raises. Subclass and override ``step`` for per-turn
rewards or other stopping rules.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from rlvr_jax.envs import parsers as parsers_lib
from rlvr_jax.envs import tools as tools_lib
from rlvr_jax.envs.base import Environment, Episode, Message, StepResult, ToolCall, ToolResult


def _invoke(fn: Callable[..., Any], arguments: Dict[str, Any]) -> str:
  """Runs a stateless tool function in a worker process (module level so it pickles)."""
  return tools_lib.format_value(fn(**arguments))


def default_messages(example: Any) -> List[Message]:
  """The initial messages of ``example``: its ``prompt`` attribute or ``"prompt"`` key (chat
  messages, or text as one user turn), or the example itself when it is a string or a list of
  messages (a `rlvr_jax.data.task.Example` works as is)."""
  if isinstance(example, dict):
    prompt = example["prompt"]
  else:
    prompt = getattr(example, "prompt", example)
  if isinstance(prompt, str):
    return [{"role": "user", "content": prompt}]
  return [dict(m) for m in prompt]


class ToolEnvironment(Environment):
  """Tool calls until a final answer; the final answer is scored by ``reward_fn``.

  Args:
    tools: `Tool` objects or names of registered tools (``"calculator"``, ``"python"``, ...).
    reward_fn: ``reward_fn(final_text, example) -> float``; an exception scores 0.
    tool_format: the parser's name in `rlvr_jax.envs.parsers.PARSERS`, or a parser callable.
    system_prompt: optional system message put first (e.g. how to call tools, for chat
      templates that do not render ``tools`` themselves).
    messages_fn: ``example -> initial messages``; default `default_messages`.
    max_calls_per_turn: calls beyond it in one turn are not run (each counts as an error).
    worker_pool: optional `rlvr_jax.rewards.workers.WorkerPool`; tools with ``isolate=True``
      that are stateless run in it, with its hard timeout.
    stop_strings: strings that end a turn; default: the format's `parsers.STOP_STRINGS`.
  """

  def __init__(self, tools: Sequence[Union[tools_lib.Tool, str]],
               reward_fn: Callable[[str, Any], float], *,
               tool_format: Union[str, parsers_lib.Parser] = "qwen",
               system_prompt: Optional[str] = None,
               messages_fn: Callable[[Any], List[Message]] = default_messages,
               max_calls_per_turn: int = 4, worker_pool: Any = None,
               stop_strings: Optional[Sequence[str]] = None):
    self.tools = {t.name: t for t in (tools_lib.get_tool(t) if isinstance(t, str) else t
                                      for t in tools)}
    self.reward_fn = reward_fn
    if isinstance(tool_format, str):
      self.parse = parsers_lib.get_parser(tool_format)
      default_stops = parsers_lib.STOP_STRINGS.get(tool_format, ())
    else:
      self.parse, default_stops = tool_format, ()
    self.stop_strings = tuple(default_stops if stop_strings is None else stop_strings)
    self.system_prompt = system_prompt
    self.messages_fn = messages_fn
    self.max_calls_per_turn = int(max_calls_per_turn)
    self.worker_pool = worker_pool

  def reset(self, example: Any) -> Episode:
    """The example's messages (after the system prompt) and the tools' schemas."""
    messages = self.messages_fn(example)
    if self.system_prompt is not None:
      messages = [{"role": "system", "content": self.system_prompt}] + messages
    return Episode(example=example, messages=messages,
                   tools=[t.schema for t in self.tools.values()])

  def run_call(self, call: ToolCall, episode: Episode) -> ToolResult:
    """Runs one parsed call; every failure is an error `ToolResult`."""
    if call.error is not None:
      return ToolResult(call.name or "invalid", f"error: {call.error}", error=True)
    tool = self.tools.get(call.name)
    if tool is None:
      return ToolResult(call.name, f"error: unknown tool {call.name!r}; available: "
                        f"{sorted(self.tools)}", error=True)
    if self.worker_pool is not None and tool.isolate and not tool.stateful:
      problem = tools_lib.check_arguments(tool.schema, call.arguments)
      if problem is not None:
        return ToolResult(tool.name, f"error: {problem}", error=True)
      outcome = self.worker_pool.map(_invoke, [(tool.fn, dict(call.arguments))])[0]
      if outcome.error is not None:
        return ToolResult(tool.name, f"error: {outcome.error}", error=True)
      return ToolResult(tool.name, outcome.value)
    return tool.run(dict(call.arguments), episode.state)

  def step(self, episode: Episode, text: str) -> StepResult:
    """Runs the turn's tool calls, or scores it as the final answer when it has none."""
    calls = self.parse(text)
    if not calls:
      try:
        reward = float(self.reward_fn(text, episode.example))
      except Exception as e:  # pylint: disable=broad-except
        return StepResult(reward=0.0, done=True, info={"reward_error": repr(e)})
      return StepResult(reward=reward, done=True)
    results = [self.run_call(c, episode) for c in calls[:self.max_calls_per_turn]]
    results += [ToolResult(c.name, "error: too many tool calls in one turn", error=True)
                for c in calls[self.max_calls_per_turn:]]
    observations = tuple({"role": "tool", "name": r.name, "content": r.content}
                         for r in results)
    return StepResult(observations=observations, reward=0.0, done=False,
                      tool_calls=len(calls), tool_errors=sum(r.error for r in results))
