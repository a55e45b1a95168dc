"""``docs/metrics.md`` lists exactly the metrics the RL loop logs (issue 10).

The page's section "Metrics of the RL loop" is a set of tables whose rows start with one or more
full metric names in backticks, then a *logged* cell from a fixed vocabulary:

* ``every step``: in every record of ``metrics.jsonl``;
* ``eval steps``: in the records of steps with a held-out evaluation (``config.eval.every``);
* ``grpo``: the objective's own metrics, for the ``grpo`` preset (the base config's), every step;
* ``stage <name>``: while data stage ``<name>`` is on (``dynamic_sampling``, ``multiturn``
  (multi-turn collection) or a registered name of :mod:`rlvr_jax.train.stages`); the names must be exactly the ``"<name>/..."`` string
  literals of the stage's module, where each stage builds its metrics dict.

One tiny GRPO run (2 steps, held-out evaluation after step 1, the overlong filter and dynamic
sampling switched on) then checks both directions: every name the page lists for such a run is
logged, and every metric the run logs is on the page.
"""

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

from rlvr_jax.rollout import multiturn as multiturn_rollout
from rlvr_jax.train import stages as stages_lib
from rlvr_jax.train.stages import dynamic_sampling

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "metrics.md"
SECTION = "## Metrics of the RL loop"
RECORD_FIELDS = {"step", "time"}  # every record's own fields, not metrics
ENABLED_STAGES = ("overlong_filter", "dynamic_sampling")


def documented() -> Dict[str, Set[str]]:
  """``logged`` cell -> metric names, from the tables of the page's RL-loop section."""
  text = PAGE.read_text()
  assert SECTION in text, f"{PAGE} lost its section {SECTION!r}"
  section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
  out: Dict[str, Set[str]] = {}
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
    if len(cells) < 3 or not cells[0].startswith("`"):
      continue  # not a table row, or a header / separator row
    names = re.findall(r"`([^`]+)`", cells[0])
    out.setdefault(cells[1], set()).update(names)
  return out


def stage_sources() -> Dict[str, Path]:
  """Stage name -> the file of its module (registered stages, and the collector)."""
  paths = {"dynamic_sampling": Path(inspect.getsourcefile(dynamic_sampling)),
           # Multi-turn collection logs the episode metrics of the rollout module.
           "multiturn": Path(inspect.getsourcefile(multiturn_rollout))}
  for name in stages_lib.names():
    factory = stages_lib._REGISTRY[name].factory  # pylint: disable=protected-access
    paths[name] = Path(inspect.getsourcefile(factory))
  return paths


def source_metrics(name: str, path: Path) -> Set[str]:
  """The ``"<name>/..."`` string literals of a stage's module: the metric names it logs."""
  return set(re.findall(r"[\"'](" + re.escape(name) + r"/[\w@./-]+)[\"']", path.read_text()))


def test_page_uses_only_known_logged_values():
  allowed = {"every step", "eval steps", "grpo"} | {f"stage {n}" for n in stage_sources()}
  unknown = sorted(set(documented()) - allowed)
  assert not unknown, f"docs/metrics.md: unknown 'logged' values {unknown}; use {sorted(allowed)}"


def test_stage_metrics_match_the_stage_modules():
  """Each stage's rows name exactly the metrics its module builds (every stage, on or off)."""
  doc = documented()
  problems = []
  for name, path in stage_sources().items():
    in_source, on_page = source_metrics(name, path), doc.get(f"stage {name}", set())
    if in_source != on_page:
      problems.append(f"stage {name} ({path.name}): undocumented {sorted(in_source - on_page)}, "
                      f"not in the code {sorted(on_page - in_source)}")
  assert not problems, "docs/metrics.md vs the stage modules:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> List[dict]:
  """The metric records of a tiny 2-step GRPO run with evaluation and two stages on."""
  sys.path.insert(0, str(ROOT))  # the experiments package lives at the repository root
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from rlvr_jax.train import loop  # pylint: disable=g-import-not-at-top

  config = tiny.tiny_config("grpo", num_steps=2, sft_steps=0)
  # Evaluation after step 1 (not after the last step: that is the summary's `after`), with the
  # update's row count (4 prompts x 4 samples) so the sampler's programs are shared.
  config.eval.update(dict(every=1, num_prompts=4, num_samples=4, batch_size=4))
  # One prompt width: dynamic sampling pads prompts to the largest bucket, evaluation would pad
  # them to the smallest that fits; with one bucket both share the sampler's compiled program.
  config.data.prompt_buckets = (16,)
  config.rl.stages.overlong_filter.enabled = True
  config.rl.dynamic_sampling.update(dict(enabled=True, max_rounds=1))
  workdir = tmp_path_factory.mktemp("metrics_doc_run")
  loop.train(config, str(workdir))
  with open(workdir / "metrics.jsonl") as f:
    out = [json.loads(line) for line in f if line.strip()]
  assert [r["step"] for r in out] == [1, 2]
  return out


def test_every_logged_metric_is_documented(records):
  logged = set().union(*records) - RECORD_FIELDS
  on_page = set().union(*documented().values())
  missing = sorted(logged - on_page)
  assert not missing, f"metrics a tiny run logs that docs/metrics.md does not list: {missing}"


def test_every_documented_metric_is_logged(records):
  doc = documented()
  every = set(doc.get("every step", ())) | set(doc.get("grpo", ()))
  for name in ENABLED_STAGES:
    every |= doc.get(f"stage {name}", set())
  problems = [f"step {r['step']}: {sorted(every - set(r))}" for r in records if every - set(r)]
  eval_names = doc.get("eval steps", set())
  assert eval_names, "docs/metrics.md lists no held-out evaluation metrics"
  if eval_names - set(records[0]):
    problems.append(f"eval step 1: {sorted(eval_names - set(records[0]))}")
  if eval_names & set(records[-1]):  # the last step's evaluation is the summary's `after/...`
    problems.append(f"step 2 logged {sorted(eval_names & set(records[-1]))}")
  assert not problems, ("metrics docs/metrics.md lists that a tiny run did not log:\n"
                        + "\n".join(problems))
