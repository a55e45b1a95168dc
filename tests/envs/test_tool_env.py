"""ToolEnvironment: tool turns, final answers, failures as observations, parallel stepping."""

import json
import textwrap
import threading
import time

from rlvr_jax.envs import base, tools
from rlvr_jax.envs.tool_env import ToolEnvironment
from rlvr_jax.rewards.workers import WorkerPool


def _exact(text, example):
  return float(text.strip().endswith(example["answer"]))


def _call(name, **arguments):
  return f'<tool_call>{json.dumps({"name": name, "arguments": arguments})}</tool_call>'


def test_tool_turn_then_final_answer():
  env = ToolEnvironment(["calculator"], _exact, system_prompt="Use tools.")
  episode = env.reset({"prompt": "What is 12*34?", "answer": "408"})
  assert episode.messages == [{"role": "system", "content": "Use tools."},
                              {"role": "user", "content": "What is 12*34?"}]
  assert episode.tools == [tools.calculator.schema]
  step = env.step(episode, "I will compute. " + _call("calculator", expression="12*34"))
  assert step.observations == ({"role": "tool", "name": "calculator", "content": "408"},)
  assert (step.reward, step.done, step.tool_calls, step.tool_errors) == (0.0, False, 1, 0)
  final = env.step(episode, "The answer is 408")
  assert (final.reward, final.done, final.observations) == (1.0, True, ())


def test_failures_are_observations():
  env = ToolEnvironment(["calculator"], _exact, max_calls_per_turn=2,
                        messages_fn=lambda ex: [{"role": "user", "content": ex.upper()}])
  episode = env.reset("q")
  assert episode.messages == [{"role": "user", "content": "Q"}]
  step = env.step(episode, _call("nope", x=1) + "<tool_call>{oops</tool_call>"
                  + _call("calculator", expression="1+1"))
  assert (step.tool_calls, step.tool_errors, step.done) == (3, 3, False)
  contents = [o["content"] for o in step.observations]
  assert "unknown tool" in contents[0] and "JSON" in contents[1] and "too many" in contents[2]
  broken = ToolEnvironment([], lambda text, ex: 1 / 0)
  assert broken.step(broken.reset("q"), "final").reward == 0.0


def test_hostile_python_call_scores_zero_and_host_is_untouched(tmp_path):
  target = tmp_path / "owned"
  env = ToolEnvironment(["python"], lambda text, ex: float("42" in text),
                        tool_format="python_fence")
  assert env.stop_strings == ("\n```\n",)
  episode = env.reset("q")
  hostile = f"```python\nimport shutil, os\nos.system('touch {target}')\n```\n"
  step = env.step(episode, hostile)
  assert (step.tool_calls, step.tool_errors, step.reward) == (1, 1, 0.0)
  assert "violation" in step.observations[0]["content"]
  assert not target.exists()
  assert env.step(episode, "I could not run it.").reward == 0.0


def test_user_tool_in_worker_pool():
  shorten = tools.Tool(tools.normalize_schema({
      "name": "shorten", "parameters": {
          "type": "object", "properties": {"text": {"type": "string"},
                                           "width": {"type": "integer"}},
          "required": ["text", "width"]}}), textwrap.shorten)
  with WorkerPool(num_workers=1, timeout_s=20.0) as pool:
    env = ToolEnvironment([shorten], _exact, worker_pool=pool)
    step = env.step(env.reset("q"), _call("shorten", text="hello big world", width=12))
    assert step.observations[0]["content"] == "hello [...]"
    bad = env.step(env.reset("q"), _call("shorten", text="x"))
    assert bad.tool_errors == 1 and "missing" in bad.observations[0]["content"]


class _SlowEnv(base.Environment):
  """Each step sleeps; counts how many steps overlap."""

  def __init__(self):
    self.lock, self.active, self.peak = threading.Lock(), 0, 0

  def reset(self, example):
    return base.Episode(example=example, messages=[])

  def step(self, episode, text):
    if text == "boom":
      raise RuntimeError("environment bug")
    with self.lock:
      self.active += 1
      self.peak = max(self.peak, self.active)
    time.sleep(0.2)
    with self.lock:
      self.active -= 1
    return base.StepResult(reward=float(episode.example), done=True)


def test_step_episodes_runs_in_parallel_and_contains_errors():
  env = _SlowEnv()
  episodes = [env.reset(i) for i in range(4)]
  results = base.step_episodes(env, episodes, ["a", "b", "boom", "c"], max_workers=4)
  assert [r.reward for r in results] == [0.0, 1.0, 0.0, 3.0]
  assert results[2].done and "environment bug" in results[2].info["error"]
  assert env.peak >= 2
