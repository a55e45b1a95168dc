"""Fixtures of the data tests."""

import builtins
import sys

import pytest


@pytest.fixture
def block_import(monkeypatch):
  """``block_import(package)``: importing ``package`` (or a submodule) raises ``ImportError``,
  as on a machine without it; the optional-dependency paths then show their install hint."""

  def block(package: str) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
      if name == package or name.startswith(package + "."):
        raise ImportError(f"no module named {name!r}")
      return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
      monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", fake_import)

  return block
