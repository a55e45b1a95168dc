"""Docs examples are code: the ```python blocks of the docs run here, in order, in one namespace.

Covered: every block of ``docs/add_your_own_method.md`` (including its 2-step training run) and
the block of ``README.md``'s "Use one piece in your own JAX code" section. A failing block fails
with its page and index in the message.
"""

import pathlib
import re

import pytest

from rlvr_jax.objectives import presets

ROOT = pathlib.Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(markdown: str) -> list:
  """The bodies of the ```python fenced blocks of ``markdown``, in order."""
  return _BLOCK.findall(markdown)


def section(markdown: str, heading: str) -> str:
  """The text under the ``## heading`` line, up to the next ``## `` heading."""
  match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown,
                    re.DOTALL | re.MULTILINE)
  if match is None:
    raise AssertionError(f"no '## {heading}' section")
  return match.group(1)


def run_blocks(blocks: list, page: str) -> dict:
  namespace = {"__name__": f"docs_{page}"}
  for index, code in enumerate(blocks):
    try:
      exec(compile(code, f"{page}[block {index}]", "exec"), namespace)  # pylint: disable=exec-used
    except Exception as error:
      raise AssertionError(f"{page}, python block {index} failed: {error!r}") from error
  return namespace


def test_block_extraction():
  text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n"
  assert python_blocks(text) == ["x = 1\n", "y = 2\n"]
  assert section("## A\none\n## B\ntwo\n", "A") == "one\n"


@pytest.fixture
def restore_presets():
  before = dict(presets._PRESETS)  # pylint: disable=protected-access
  yield
  presets._PRESETS.clear()  # pylint: disable=protected-access
  presets._PRESETS.update(before)  # pylint: disable=protected-access


def test_add_your_own_method_page_runs(restore_presets):
  del restore_presets
  blocks = python_blocks((ROOT / "docs" / "add_your_own_method.md").read_text())
  assert len(blocks) == 5
  namespace = run_blocks(blocks, "add_your_own_method.md")
  # The page registered its objective and trained with it (its own asserts check the run).
  assert presets.get("mad_tanh").name == "mad_tanh"
  assert [r["step"] for r in namespace["rl_steps"]] == [1, 2]


def test_readme_use_one_piece_runs():
  readme = (ROOT / "README.md").read_text()
  blocks = python_blocks(section(readme, "Use one piece in your own JAX code"))
  assert len(blocks) == 1
  run_blocks(blocks, "README.md")
