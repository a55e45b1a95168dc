"""Config-file paths that work from any directory once the package is installed.

The binaries' ``--config`` defaults to a file of the installed ``experiments/configs`` package,
and a relative ``--config`` path (``experiments/configs/tiny.py``, optionally with a ``:argument``
suffix) that does not exist under the current directory is looked up next to the installed
``experiments`` package, so ``python -m experiments.train --config=experiments/configs/demo.py``
means the same thing in the repository root and anywhere else.
"""

from __future__ import annotations

import os
from typing import List, Sequence

# The directory that holds the ``experiments`` package (the repository root, or site-packages).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_file(name: str) -> str:
  """The absolute path of ``experiments/configs/<name>`` in the installed package."""
  return os.path.join(PACKAGE_PARENT, "experiments", "configs", name)


def resolve_config_path(value: str) -> str:
  """``value`` (``path`` or ``path:argument``) with a relative path that is missing from the
  current directory but present next to the installed package made absolute; else unchanged."""
  path, sep, argument = value.partition(":")
  if not path or os.path.isabs(path) or os.path.exists(path):
    return value
  candidate = os.path.join(PACKAGE_PARENT, path)
  if os.path.exists(candidate):
    return candidate + sep + argument
  return value


def resolve_argv(argv: Sequence[str]) -> List[str]:
  """``argv`` with the value of ``--config=PATH`` / ``--config PATH`` passed through
  :func:`resolve_config_path` (``--config.<field>`` overrides are left alone)."""
  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      out[i] = "--config=" + resolve_config_path(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = resolve_config_path(out[i + 1])
  return out
