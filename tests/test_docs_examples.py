"""The docs describe the code as it is: their examples run, their command lines parse (issue 6).

Python examples. Every fenced ```python block of ``README.md`` and ``docs/*.md`` is executed:
one subprocess per page runs that page's blocks in order in one namespace, as a reader pasting
them into one session would, with ``JAX_PLATFORMS=cpu`` (one CPU device), Hugging Face offline,
a fresh temporary working directory and the repository root on ``PYTHONPATH`` (the ``experiments``
package is importable from the repository root only). A failing block fails its page's test with
the page, the block's line and its first line. A block that cannot run here (a real checkpoint,
a GPU, several hosts, network) is preceded by a line ``<!-- docs-test: skip (<reason>) -->``;
the reason is required and printed.

Names. Every dotted ``rlvr_jax.<module>[.<name>]`` a page mentions must import / exist.

Command lines. Every ``python -m experiments.<binary>`` and ``python benchmarks/<script>.py``
command in a non-Python fenced block or in an inline code span is parsed by the binary's own
flag parser (absl, including ml_collections' ``--config.<field>`` overrides, or argparse) without
running it, so a renamed flag or config field fails here; the config's ``rl.objective`` (the
preset's name and keyword arguments) is then built, so a wrong preset keyword fails too. Placeholder
values (``$RANK``, ``<dir>``) are checked by flag name only; a ``--config`` file that is not in
the repository (the reader's own ``my_config.py``) is replaced by the binary's default config.
Required flags left out are not reported (prose elides them, e.g. with ``...``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap
from typing import Dict, List, Optional, Tuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!--\s*docs-test:(.*?)-->", re.DOTALL)
_SKIP = re.compile(r"^\s*skip \((.+)\)\s*$", re.DOTALL)
# An inline code span may wrap across lines (not across a blank line).
_INLINE = re.compile(r"(?<!`)`((?:[^`\n]|\n(?!\s*\n))+)`(?!`)")
# A page's blocks get this long in total; the slowest page (a 2-step training run) needs ~20 s.
_PAGE_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Block:
  """A fenced code block: its language tag, body, 1-based line of its fence, skip reason."""
  lang: str
  code: str
  line: int
  skip: Optional[str]

  @property
  def first_line(self) -> str:
    lines = [l for l in self.code.splitlines() if l.strip()]
    return lines[0].strip() if lines else ""


def fenced_blocks(markdown: str) -> List[Block]:
  """The fenced blocks of ``markdown`` in order, with the skip marker right before each.

  A ``<!-- docs-test: ... -->`` comment must be ``skip (<non-empty reason>)`` and must be the
  last non-blank line before a ```python fence; anything else raises ``ValueError``, so a
  marker cannot silently stop applying.
  """
  blocks, used = [], set()
  for match in _FENCE.finditer(markdown):
    before = markdown[:match.start()].rstrip()
    last_line = before.rsplit("\n", 1)[-1]
    skip = None
    marker = _MARKER.search(last_line)
    if marker is not None:
      reason = _SKIP.match(marker.group(1))
      if reason is None or not reason.group(1).strip():
        raise ValueError(f"malformed marker {marker.group(0)!r}: use "
                         "'<!-- docs-test: skip (reason) -->'")
      if match.group(1) != "python":
        raise ValueError(f"skip marker {marker.group(0)!r} before a non-python block")
      skip = reason.group(1).strip()
      used.add(len(before) - len(last_line) + marker.start())
    line = markdown.count("\n", 0, match.start()) + 1
    blocks.append(Block(match.group(1), match.group(2), line, skip))
  for marker in _MARKER.finditer(markdown):
    if marker.start() not in used:
      line = markdown.count("\n", 0, marker.start()) + 1
      raise ValueError(f"line {line}: docs-test marker not directly before a ```python block")
  return blocks


def python_blocks(page: str) -> List[Block]:
  return [b for b in fenced_blocks((ROOT / page).read_text()) if b.lang == "python"]


# Runs in the page's subprocess: reads [(line, code, skip), ...] as JSON from stdin.
_RUNNER = textwrap.dedent(r"""
    import json, sys, traceback
    blocks = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    for line, code, skip in blocks:
      if skip is not None:
        print(f"SKIPPED block at line {line}: {skip}", flush=True)
        continue
      try:
        exec(compile(code, f"<block at line {line}>", "exec"), namespace)
      except BaseException:
        print(f"FAILED block at line {line}", flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.exit(1)
      print(f"RAN block at line {line}", flush=True)
    """)


def _child_env(extra_path: str) -> Dict[str, str]:
  env = dict(os.environ)
  # One CPU device, as on a reader's laptop (the test suite itself simulates 8).
  env.pop("XLA_FLAGS", None)
  env.update(JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             HF_DATASETS_OFFLINE="1", MPLBACKEND="Agg",
             PYTHONPATH=os.pathsep.join(p for p in (extra_path, env.get("PYTHONPATH")) if p))
  return env


def run_blocks(blocks: List[Block], tmp_path: pathlib.Path,
               compilation_cache: Optional[pathlib.Path] = None) -> Tuple[int, str]:
  """Runs ``blocks`` in order in one fresh process in ``tmp_path``; (exit code, output)."""
  payload = json.dumps([(b.line, b.code, b.skip) for b in blocks])
  env = _child_env(str(ROOT))
  if compilation_cache is not None:
    # Pages compile some of the same programs (init_params of the tiny preset); a cache shared
    # by this session's pages may compile them once.
    env["JAX_COMPILATION_CACHE_DIR"] = str(compilation_cache)
  proc = subprocess.run([sys.executable, "-c", _RUNNER], input=payload, capture_output=True,
                        text=True, cwd=tmp_path, env=env, timeout=_PAGE_TIMEOUT_S, check=False)
  return proc.returncode, proc.stdout + proc.stderr


# Pages run two at a time (JAX compiles on one core; CI has two), longest first.
_PY_PAGES = sorted((p for p in PAGES if python_blocks(p)),
                   key=lambda p: -sum(len(b.code) for b in python_blocks(p)))
_CONCURRENT_PAGES = 2


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory):
  """page -> future of (exit code, output): every page's process, started once for the module."""
  cache = tmp_path_factory.mktemp("jax_compilation_cache")
  with concurrent.futures.ThreadPoolExecutor(_CONCURRENT_PAGES) as pool:
    futures = {}
    for page in _PY_PAGES:
      blocks = python_blocks(page)
      if any(b.skip is None for b in blocks):
        futures[page] = pool.submit(run_blocks, blocks,
                                    tmp_path_factory.mktemp(pathlib.Path(page).stem), cache)
    yield futures
    for future in futures.values():
      future.cancel()


@pytest.mark.parametrize("page", _PY_PAGES)
def test_python_examples_run(page, page_runs):
  blocks = python_blocks(page)
  for block in blocks:
    if block.skip is not None:
      print(f"{page}:{block.line} skipped: {block.skip}")
  if page not in page_runs:
    pytest.skip(f"{page}: every python block is marked skip")
  returncode, output = page_runs[page].result()
  check_page_run(page, blocks, returncode, output)


def check_page_run(page: str, blocks: List[Block], returncode: int, output: str) -> None:
  """Fails with the page, the failing block's line and first line, and the traceback."""
  if returncode != 0:
    failed = re.search(r"^FAILED block at line (\d+)", output, re.MULTILINE)
    if failed is None:
      pytest.fail(f"{page}: the examples' process exited with {returncode}\n{output[-4000:]}",
                pytrace=False)
    line = int(failed.group(1))
    first = next(b.first_line for b in blocks if b.line == line)
    pytest.fail(f"{page}: the python block at line {line} ({first!r}) failed:\n"
                f"{output[failed.start():][-4000:]}", pytrace=False)
  ran = re.findall(r"^RAN block at line (\d+)", output, re.MULTILINE)
  assert len(ran) == sum(b.skip is None for b in blocks), output[-4000:]


def test_a_failing_block_names_page_line_and_first_line(tmp_path):
  blocks = fenced_blocks("```python\nx = 1\n```\n<!-- docs-test: skip (needs a GPU) -->\n"
                         "```python\nimport no_such_module\n```\n"
                         "```python\nassert x == 2, 'x is not 2'\n```\n"
                         "```python\nraise SystemExit('never reached')\n```\n")
  returncode, output = run_blocks([b for b in blocks if b.lang == "python"], tmp_path)
  assert returncode == 1
  assert "SKIPPED block at line 5: needs a GPU" in output and "never reached" not in output
  with pytest.raises(pytest.fail.Exception) as failure:
    check_page_run("docs/x.md", blocks, returncode, output)
  message = str(failure.value)
  assert "docs/x.md" in message and "line 8" in message and "assert x == 2" in message
  assert "x is not 2" in message


def test_skip_markers_are_few_and_explained():
  """Every skipped block gives its reason (printed here); skips stay an exception."""
  skipped, total = [], 0
  for page in PAGES:
    for block in python_blocks(page):
      total += 1
      if block.skip is not None:
        skipped.append(f"{page}:{block.line}: {block.skip}")
  print("\n".join(["skipped docs examples:"] + skipped))
  assert len(skipped) <= total // 4, skipped


def test_block_parser():
  text = ("a\n```python\nx = 1\n```\n"
          "<!-- docs-test: skip (needs a GPU) -->\n```python\ny = 2\n```\n"
          "```bash\nls\n```\n")
  blocks = fenced_blocks(text)
  assert [(b.lang, b.code, b.line, b.skip) for b in blocks] == [
      ("python", "x = 1\n", 2, None), ("python", "y = 2\n", 6, "needs a GPU"),
      ("bash", "ls\n", 9, None)]
  for bad in ("<!-- docs-test: skip -->\n```python\nx\n```\n",
              "<!-- docs-test: skip () -->\n```python\nx\n```\n",
              "<!-- docs-test: skip (why) -->\n\nsome text\n```python\nx\n```\n",
              "<!-- docs-test: skip (why) -->\n```bash\nls\n```\n"):
    with pytest.raises(ValueError):
      fenced_blocks(bad)


# ---------------------------------------------------------------------------------------------
# Names.

_DOTTED = re.compile(r"\b(rlvr_jax(?:\.[A-Za-z_]\w*)+)")


def _resolve(dotted: str):
  """The object ``rlvr_jax.a.b.c`` names: the longest importable module prefix, then attributes."""
  parts = dotted.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    for attr in parts[i:]:
      obj = getattr(obj, attr)
    return obj
  raise ImportError(dotted)


def test_dotted_names_in_the_docs_exist():
  """Every ``rlvr_jax.<module>[.<name>]`` a page mentions is a module or an attribute of one."""
  missing = []
  for page in PAGES:
    text = (ROOT / page).read_text()
    for dotted in sorted(set(_DOTTED.findall(text))):
      if dotted.endswith(".py"):
        dotted = dotted[:-3]
      try:
        _resolve(dotted)
      except (ImportError, AttributeError) as error:
        missing.append(f"{page}: {dotted} ({type(error).__name__}: {error})")
  assert not missing, "names the docs use that the code lacks:\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------------------
# Command lines.

_PROGRAM = re.compile(r"^python3?$")


@dataclasses.dataclass(frozen=True)
class Command:
  """One documented invocation of a repository binary."""
  page: str
  line: int
  target: str          # "experiments.train" or "benchmarks/rollout.py"
  args: Tuple[str, ...]

  @property
  def text(self) -> str:
    prog = f"-m {self.target}" if not self.target.endswith(".py") else self.target
    return f"python {prog} {' '.join(self.args)}".strip()


def _split_commands(tokens: List[str]) -> List[List[str]]:
  out, current = [], []
  for token in tokens:
    if token in ("&&", "||", ";", "|"):
      out.append(current)
      current = []
    else:
      current.append(token)
  out.append(current)
  return out


def commands_in(shell: str, page: str, line: int) -> List[Command]:
  """The repository binaries ``shell`` (one or more shell lines) invokes, with their arguments."""
  found, lines = [], shell.splitlines()
  start = 0
  while start < len(lines):
    end = start
    while lines[end].endswith("\\") and end + 1 < len(lines):
      end += 1
    text = " ".join(l[:-1] if l.endswith("\\") else l for l in lines[start:end + 1])
    try:
      tokens = shlex.split(text, comments=True)
    except ValueError:
      tokens = []  # not shell (a code listing, a synopsis with unbalanced quotes)
    for cmd in _split_commands(tokens):
      for i, token in enumerate(cmd):
        if not _PROGRAM.match(token):
          continue
        rest = cmd[i + 1:]
        if len(rest) >= 2 and rest[0] == "-m" and rest[1].startswith("experiments."):
          found.append(Command(page, line + start, rest[1], tuple(rest[2:])))
        elif rest and rest[0].startswith("benchmarks/") and rest[0].endswith(".py"):
          found.append(Command(page, line + start, rest[0], tuple(rest[1:])))
        break
    start = end + 1
  return found


def documented_commands() -> List[Command]:
  """Commands in every non-python fenced block and every inline code span of every page."""
  commands = []
  for page in PAGES:
    text = (ROOT / page).read_text()
    for block in fenced_blocks(text):
      if block.lang != "python":
        commands += commands_in(block.code, page, block.line + 1)
    prose = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for match in _INLINE.finditer(prose):
      commands += commands_in(match.group(1).replace("\n", " "), page,
                              prose.count("\n", 0, match.start()) + 1)
  return commands


# Runs in a subprocess per binary: imports the binary as __main__ with its entry point
# (absl.app.run / ArgumentParser.parse_args) replaced by a parse-only stand-in, then parses
# each command line. Prints one JSON list of [index, error or null].
_CHECKER = textwrap.dedent(r"""
    import argparse, json, os, runpy, sys
    from absl import app, flags

    target, commands = json.load(sys.stdin)
    FLAGS = flags.FLAGS


    class Parsed(Exception):
      pass  # raised instead of running the binary once its flags are parsed: (kind, error)


    def _placeholder(value):
      return value.startswith("$") or (value.startswith("<") and value.endswith(">"))


    def absl_run(main, argv=None, flags_parser=None):
      raise Parsed("absl", None)


    real_parse_args = argparse.ArgumentParser.parse_args


    def argparse_parse_only(self, args=None, namespace=None):
      args = sys.argv[1:] if args is None else args
      known = {o for a in self._actions for o in a.option_strings}
      unknown = [a.split("=", 1)[0] for a in args
                 if a.startswith("--") and a.split("=", 1)[0] not in known]
      if unknown:
        raise Parsed("argparse", f"unknown flags {unknown}")
      try:
        real_parse_args(self, [a for a in args if not _placeholder(a.split("=", 1)[-1])])
      except SystemExit as exc:
        raise Parsed("argparse", f"argparse rejected the arguments (exit {exc.code})")
      raise Parsed("argparse", None)


    app.run = absl_run
    argparse.ArgumentParser.parse_args = argparse_parse_only


    def load(argv):
      # Runs the binary as __main__ up to its flag parsing; returns (kind, error).
      sys.argv = [target] + list(argv)
      try:
        if target.endswith(".py"):
          runpy.run_path(target, run_name="__main__")
        else:
          runpy.run_module(target, run_name="__main__", alter_sys=True)
      except Parsed as parsed:
        return parsed.args
      return None, "the binary neither called absl.app.run nor ArgumentParser.parse_args"


    kind, error = load([])
    results = []
    if kind != "absl":
      # argparse builds its parser in main(): run the script up to parse_args per command.
      for index, args in commands:
        results.append([index, error if kind is None else load(args)[1]])
      print(json.dumps(results))
      sys.exit(0)

    config_default = FLAGS["config"].default_as_str.strip("'") if "config" in FLAGS else None
    for index, args in commands:
      FLAGS.unparse_flags()
      for name in [n for n in FLAGS if n.startswith("config.")]:
        delattr(FLAGS, name)
      argv, name_only, has_config = [target], [], False
      for arg in args:
        name, _, value = arg.partition("=")
        if name == "--config":
          has_config = True
          if not os.path.exists(value.split(":", 1)[0]):  # the reader's own config file
            arg = "--config=" + config_default
        if value and _placeholder(value) and not name.startswith("--config"):
          name_only.append(name.lstrip("-"))
          continue
        argv.append(arg)
      if config_default is not None and not has_config:
        # absl parses a default config file when the flag is defined; spell it out so that
        # its --config.<field> overrides are defined and checked now.
        argv.insert(1, "--config=" + config_default)
      sys.argv = argv  # ml_collections reads the --config.<field> overrides from sys.argv
      try:
        FLAGS(argv)
        missing = [n for n in name_only if n not in FLAGS]
        results.append([index, f"unknown flags {missing}" if missing else None])
        rl = FLAGS.config.get("rl") if "config" in FLAGS else None
        if not missing and rl is not None and "objective" in rl:
          # A preset keyword of the right type can still be out of range: build the objective.
          from rlvr_jax.train import config_lib
          try:
            config_lib.build_objective(rl.objective)
          except Exception as exc:
            results[-1][1] = (f"config_lib.build_objective(config.rl.objective) fails: "
                              f"{type(exc).__name__}: {exc}")
      except flags.IllegalFlagValueError as exc:
        # A required flag left out is fine: prose elides what is not the point (`...`).
        required = "must have a value other than None" in str(exc)
        results.append([index, None if required else f"IllegalFlagValueError: {exc}"])
      except Exception as exc:  # absl's UnrecognizedFlagError, a config file that fails, ...
        results.append([index, f"{type(exc).__name__}: {exc}"])
    print(json.dumps(results))
    """)


def test_command_parser():
  shell = ("# a comment\npython -m venv .venv && . .venv/bin/activate && "
           "python -m experiments.train --config=a.py:tuned \\\n    --workdir=/tmp/x\n"
           "python benchmarks/rollout.py --batch=2  # trailing comment\n"
           "pip install x\n")
  commands = commands_in(shell, "p.md", 10)
  assert [(c.line, c.target, c.args) for c in commands] == [
      (11, "experiments.train", ("--config=a.py:tuned", "--workdir=/tmp/x")),
      (13, "benchmarks/rollout.py", ("--batch=2",))]


def _check(target: str, commands: List[Command]) -> Dict[int, Optional[str]]:
  payload = json.dumps([target, [[i, list(c.args)] for i, c in enumerate(commands)]])
  proc = subprocess.run([sys.executable, "-c", _CHECKER], input=payload, capture_output=True,
                        text=True, cwd=ROOT, env=_child_env(str(ROOT)), timeout=120, check=False)
  assert proc.returncode == 0, f"flag checker for {target} crashed:\n{proc.stderr[-4000:]}"
  return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_documented_commands_use_real_flags():
  commands = documented_commands()
  assert any(c.target == "experiments.train" for c in commands)
  by_target: Dict[str, List[Command]] = {}
  for command in commands:
    by_target.setdefault(command.target, []).append(command)
  errors = []
  for target, group in sorted(by_target.items()):
    module_file = (ROOT / target if target.endswith(".py")
                   else ROOT / (target.replace(".", "/") + ".py"))
    if not module_file.exists():
      errors += [f"{c.page}:{c.line}: no such binary {target}: {c.text}" for c in group]
      continue
    results = _check(target, group)
    for index, command in enumerate(group):
      if results.get(index) is not None:
        errors.append(f"{command.page}:{command.line}: {results[index]}\n    {command.text}")
  assert not errors, "documented command lines that do not parse:\n" + "\n".join(errors)


def test_flag_checker_catches_renames():
  """The checker itself rejects a misspelt absl flag, config field and argparse flag."""
  good = Command("x.md", 1, "experiments.train", ("--workdir=/tmp/w", "--config.rl.num_steps=5"))
  bad_flag = dataclasses.replace(good, args=("--workdir=/tmp/w", "--num_step=5"))
  bad_field = dataclasses.replace(good, args=("--workdir=/tmp/w", "--config.rl.num_stepz=5"))
  results = _check("experiments.train", [good, bad_flag, bad_field])
  assert results[0] is None
  assert "num_step" in results[1] and "num_stepz" in results[2]
  arg = Command("x.md", 1, "benchmarks/verifier.py", ("--workers=2",))
  results = _check("benchmarks/verifier.py",
                   [arg, dataclasses.replace(arg, args=("--worker=2",))])
  assert results[0] is None and "--worker" in results[1]
