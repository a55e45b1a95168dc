"""Converts the percent-format notebook sources ``notebooks/*.py`` into ``.ipynb`` files.

  python notebooks/build.py            # rebuild every notebook next to its source
  python notebooks/build.py --check    # exit 1 if a committed .ipynb differs from its source

The ``.py`` file is the source of truth (it diffs and reviews like code); the ``.ipynb`` is what
readers open, stored without outputs. A cell starts at a line ``# %%`` (code) or
``# %% [markdown]`` (markdown, whose lines drop their leading ``# ``); text before the first
marker (the module docstring that names the notebook) is not part of the notebook.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
from typing import List, Tuple

import nbformat

_MARKER = re.compile(r"^# %%(?:\s*\[(markdown)\])?\s*$")


def parse_cells(source: str) -> List[Tuple[str, str]]:
  """``[(kind, text)]`` with ``kind`` in ``{"code", "markdown"}``, from a percent-format source."""
  cells: List[Tuple[str, List[str]]] = []
  for line in source.splitlines():
    match = _MARKER.match(line)
    if match:
      cells.append(("markdown" if match.group(1) else "code", []))
    elif cells:
      kind, lines = cells[-1]
      if kind == "markdown":
        # "# text" -> "text"; a lone "#" is a blank markdown line.
        line = line[2:] if line.startswith("# ") else line.lstrip("#")
      lines.append(line)
  return [(kind, "\n".join(lines).strip("\n")) for kind, lines in cells]


def to_notebook(source: str) -> nbformat.NotebookNode:
  """A v4 notebook (no outputs, Python 3 kernel) from a percent-format source."""
  nb = nbformat.v4.new_notebook()
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                               "language": "python"}
  nb.metadata["language_info"] = {"name": "python"}
  for i, (kind, text) in enumerate(parse_cells(source)):
    cell = (nbformat.v4.new_markdown_cell(text) if kind == "markdown"
            else nbformat.v4.new_code_cell(text))
    cell["id"] = f"cell-{i:02d}"  # stable ids keep rebuilds byte-identical
    nb.cells.append(cell)
  nbformat.validate(nb)
  return nb


def render(source_path: pathlib.Path) -> str:
  """The ``.ipynb`` text for one source file."""
  return nbformat.writes(to_notebook(source_path.read_text())) + "\n"


def sources(folder: pathlib.Path) -> List[pathlib.Path]:
  """Every notebook source in ``folder``: the ``*.py`` files other than this script."""
  return sorted(p for p in folder.glob("*.py") if p.name != pathlib.Path(__file__).name)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="fail if a committed notebook is out of date")
  args = parser.parse_args(argv)
  here = pathlib.Path(__file__).resolve().parent
  stale = []
  for source in sources(here):
    target = source.with_suffix(".ipynb")
    text = render(source)
    if args.check:
      if not target.exists() or target.read_text() != text:
        stale.append(target.name)
    else:
      target.write_text(text)
  if stale:
    print(f"out of date (run python notebooks/build.py): {', '.join(stale)}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
