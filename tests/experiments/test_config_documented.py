"""Every leaf field of the shipped experiment configs is documented in ``docs/config.md``."""

import importlib
import os
from typing import List

import ml_collections
import pytest

_DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "config.md")
_CONFIGS = ("base", "demo", "tiny", "tool_demo", "qwen2_5_gsm8k_grpo", "qwen2_5_gsm8k_dapo",
            "qwen2_5_gsm8k_grpo_lora", "smollm2_arithmetic")


def _leaf_paths(config: ml_collections.ConfigDict, prefix: str = "") -> List[str]:
  """Dotted paths of the non-dict values (an empty dict counts as a leaf)."""
  paths = []
  for key in config.keys():
    value, path = config[key], prefix + key
    if isinstance(value, ml_collections.ConfigDict) and value.keys():
      paths.extend(_leaf_paths(value, path + "."))
    else:
      paths.append(path)
  return paths


def test_leaf_paths_walks_nested_dicts():
  config = ml_collections.ConfigDict(dict(a=1, b=dict(c=2, d=dict(e=3)), f={}))
  assert sorted(_leaf_paths(config)) == ["a", "b.c", "b.d.e", "f"]


@pytest.mark.parametrize("name", _CONFIGS)
def test_every_leaf_field_is_in_docs_config_md(name):
  config = importlib.import_module(f"experiments.configs.{name}").get_config()
  with open(_DOC) as f:
    doc = f.read()
  paths = _leaf_paths(config)
  assert len(paths) > 20, paths
  # Each field appears with its full dotted path in code quotes, as in the tables.
  missing = [p for p in paths if f"`{p}`" not in doc]
  assert not missing, f"fields of {name}.py not documented in docs/config.md: {missing}"
