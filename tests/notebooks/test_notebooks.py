"""Executes every notebook top to bottom on the CPU; a failing cell fails the test.

Each notebook runs in a fresh Python kernel with the repository's ``notebooks/`` folder as working
directory, under a wall-clock limit per notebook (a hung cell fails instead of stalling CI); two
kernels run at a time. The
kernel sees one CPU device, as on a laptop: the suite-wide ``XLA_FLAGS`` that simulates eight
devices is removed from its environment. Executed outputs are discarded; the committed ``.ipynb``
files must carry none, and must match their ``.py`` sources (``python notebooks/build.py``).
"""

import asyncio
import importlib.util
import os
import pathlib

import nbclient
import nbformat
import pytest

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parents[2] / "notebooks"

# Upper bounds on a whole notebook's wall time: far above the expected run time on a 2-core CPU,
# so that only a hang or a pathological slow-down trips them.
TIMEOUT_S = {
    "objectives_tour": 300,
    "verifiers": 240,
    "tiny_grpo": 900,
    "bring_your_own_model": 300,
    "agent_episodes": 300,
}


MAX_CONCURRENT = 2


def _kernel_env() -> dict:
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env["JAX_PLATFORMS"] = "cpu"
  env["HF_HUB_OFFLINE"] = "1"
  env["TRANSFORMERS_OFFLINE"] = "1"
  return env


def _load_builder():
  # By path: a module named "build" could collide with the PyPI package of that name.
  spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS_DIR / "build.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_notebook_has_a_timeout():
  names = {p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")}
  assert names == set(TIMEOUT_S)


def test_committed_notebooks_match_sources_and_have_no_outputs():
  build = _load_builder()
  assert build.main(["--check"]) == 0
  for path in NOTEBOOKS_DIR.glob("*.ipynb"):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
      if cell.cell_type == "code":
        assert cell.outputs == [] and cell.execution_count is None, path.name


def test_builder_parses_percent_cells():
  build = _load_builder()
  source = '"""doc"""\n# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n# %%\nprint(x)\n'
  assert build.parse_cells(source) == [("markdown", "# Title\n\ntext"), ("code", "x = 1"),
                                       ("code", "print(x)")]


async def _execute(name: str, slots: asyncio.Semaphore):
  """Runs one notebook; returns (executed notebook, exception or None)."""
  async with slots:
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT_S[name], kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    try:
      await asyncio.wait_for(client.async_execute(env=_kernel_env()), TIMEOUT_S[name])
    except Exception as e:  # pylint: disable=broad-except  # reported by that notebook's test
      return nb, e
    return nb, None


@pytest.fixture(scope="module")
def executed(request):
  """Executes the selected notebooks, ``MAX_CONCURRENT`` kernels at a time, longest first.

  Compilation in a kernel is mostly single-threaded, so two kernels keep a 2-core machine busy
  and halve the wall time; each notebook still gets its own kernel and its own time limit.
  """
  names = sorted({item.callspec.params["name"] for item in request.session.items
                  if getattr(item, "originalname", None) == "test_notebook_runs"},
                 key=lambda n: -TIMEOUT_S[n])

  async def run_all():
    slots = asyncio.Semaphore(MAX_CONCURRENT)
    return await asyncio.gather(*(_execute(n, slots) for n in names))

  return dict(zip(names, asyncio.run(run_all())))


@pytest.mark.parametrize("name", sorted(TIMEOUT_S))
def test_notebook_runs(name, executed):
  nb, error = executed[name]
  if error is not None:
    # A CellExecutionError carries the failing cell's source and traceback.
    raise error
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]
  assert not errors, errors
