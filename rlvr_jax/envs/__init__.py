"""Multi-turn environments and tools (host side; no JAX, no training code).

* `base`: the `Environment` protocol (``reset(example) -> Episode``, ``step(episode, text) ->
  StepResult``), `ToolCall`/`ToolResult`, and `step_episodes` (parallel stepping in threads).
* `parsers`: tool-call parsers for Qwen2.5/Qwen3 (``<tool_call>``), Llama 3.x (JSON,
  ``<|python_tag|>``) and fenced ```` ```python ```` blocks.
* `tools`: the calculator, the sandboxed stateful Python tool, `register_tool(fn, schema)`.
* `tool_env`: `ToolEnvironment`, tool calls until a final answer scored by a reward function.
* `chat`: chat-template rendering of prompts and of observations as appended token ids.

The rollout that drives them is `rlvr_jax.rollout.multiturn`; docs/environments.md shows how to
write an environment.
"""

from rlvr_jax.envs import base
from rlvr_jax.envs import chat
from rlvr_jax.envs import parsers
from rlvr_jax.envs import tool_env
from rlvr_jax.envs import tools
from rlvr_jax.envs.base import Environment, Episode, StepResult, ToolCall, ToolResult
from rlvr_jax.envs.base import step_episodes
from rlvr_jax.envs.tool_env import ToolEnvironment
from rlvr_jax.envs.tools import Tool, calculator, get_tool, python_tool, register_tool

__all__ = [
    "Environment", "Episode", "StepResult", "Tool", "ToolCall", "ToolEnvironment", "ToolResult",
    "base", "calculator", "chat", "get_tool", "parsers", "python_tool", "register_tool",
    "step_episodes", "tool_env", "tools",
]
