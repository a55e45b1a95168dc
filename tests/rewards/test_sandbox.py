"""The sandbox under hostile programs: each gets reward 0 and the host stays healthy.

Every hostile program is written so that the attack must *succeed* for its output to match the
expected output; a blocked attack therefore shows up as reward 0, and the test also checks the
side effect directly (the file, the connection, the process).
"""

import contextlib
import os
import socket

import pytest

from rlvr_jax.rewards import code
from rlvr_jax.rewards import sandbox

_NS_AVAILABLE = sandbox.isolation_report()["namespaces"]
MODES = ["off"] + (["auto"] if _NS_AVAILABLE else [])


def _cfg(mode, **kw):
  kw.setdefault("timeout_s", 5.0)
  return sandbox.SandboxConfig(namespaces=mode, **kw)


def _reward(program, tests, config):
  return code.code_reward(["```python\n" + program + "\n```"], [tests], mode="fraction",
                          config=config, max_workers=1)[0]


def _sandbox_processes():
  """PIDs whose command line mentions a sandbox directory (the harness and anything it forked)."""
  found = []
  for pid in os.listdir("/proc"):
    if not pid.isdigit():
      continue
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        if b"rlvr_sandbox_" in f.read():
          found.append(int(pid))
    except OSError:
      pass
  return found


def _assert_host_healthy(mode):
  # This process is alive (we are running), no sandbox process outlived its run, and the sandbox
  # still runs a well-behaved program correctly.
  assert _sandbox_processes() == []
  ok = sandbox.run_python("print(sum(range(10)))", config=_cfg(mode))
  assert ok.status == "ok" and ok.stdout.strip() == "45"


@pytest.mark.parametrize("mode", MODES)
def test_infinite_loop_times_out(mode):
  r = sandbox.run_python("while True:\n  pass", config=_cfg(mode, timeout_s=1.0))
  assert r.status == "timeout"
  assert r.wall_s < 4.0
  assert _reward("while True:\n  pass\nprint(1)", [{"input": "", "output": "1"}],
                 _cfg(mode, timeout_s=1.0)) == 0.0
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_fork_bomb(mode):
  prog = "import os\nwhile True:\n  os.fork()\nprint('done')"
  assert _reward(prog, [{"input": "", "output": "done"}], _cfg(mode, timeout_s=2.0)) == 0.0
  r = sandbox.run_python(prog, config=_cfg(mode, timeout_s=2.0))
  assert r.status in ("violation", "timeout")
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_fork_via_subprocess_and_multiprocessing(mode):
  for prog in ("import subprocess\nsubprocess.run(['true'])\nprint('done')",
               "import multiprocessing as mp\nmp.Process(target=print).start()\nprint('done')",
               "import os\nos.system('true')\nprint('done')",
               "import _posixsubprocess as p\np.fork_exec()\nprint('done')",
               "import ctypes\nctypes.CDLL(None).fork()\nprint('done')"):
    assert _reward(prog, [{"input": "", "output": "done"}], _cfg(mode)) == 0.0, prog
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_memory_bomb(mode):
  cfg = _cfg(mode, memory_mb=256)
  for prog in ("x = bytearray(8 << 30)\nprint('done')",
               "x = []\nwhile True:\n  x.append(bytearray(32 << 20))"):
    assert _reward(prog, [{"input": "", "output": "done"}], cfg) == 0.0
  r = sandbox.run_python("x = bytearray(8 << 30)", config=cfg)
  assert r.status == "memory_error"
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_huge_output_is_capped(mode):
  cfg = _cfg(mode, max_output_bytes=1 << 16)
  r = sandbox.run_python("while True:\n  print('x' * 10000)", config=cfg)
  assert r.status == "output_limit"
  assert len(r.stdout) <= 1 << 16
  assert _reward("while True:\n  print('x' * 10000)", [{"input": "", "output": "x"}], cfg) == 0.0
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_writing_outside_the_temp_dir(mode, tmp_path):
  target = tmp_path / "pwned.txt"
  victim = tmp_path / "victim.txt"
  victim.write_text("keep me")
  prog = (f"open({str(target)!r}, 'w').write('x')\n"
          f"import os\nos.remove({str(victim)!r})\nprint('done')")
  assert _reward(prog, [{"input": "", "output": "done"}], _cfg(mode)) == 0.0
  assert not target.exists()
  # Relative to a directory descriptor, the audit event sees only the relative name.
  prog = (f"import os\nfd = os.open({str(tmp_path)!r}, os.O_RDONLY)\n"
          "w = os.open('pwned.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd)\n"
          "os.write(w, b'x')\nprint('done')")
  assert _reward(prog, [{"input": "", "output": "done"}], _cfg(mode)) == 0.0
  assert not target.exists()
  assert victim.read_text() == "keep me"
  # Writing inside its own working directory is allowed.
  r = sandbox.run_python("open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())",
                         config=_cfg(mode))
  assert r.status == "ok" and r.stdout.strip() == "x"
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_cannot_read_the_parent_environment(mode, monkeypatch):
  monkeypatch.setenv("RLVR_TEST_SECRET", "hunter2")
  parent = os.getpid()
  prog = ("import os\n"
          "print(os.environ.get('RLVR_TEST_SECRET'))\n")
  assert _reward(prog, [{"input": "", "output": "hunter2"}], _cfg(mode)) == 0.0
  for pid in ("os.getppid()", str(parent)):
    prog = (f"data = open('/proc/%d/environ' % {pid}, 'rb').read()\n"
            "print('hunter2' if b'hunter2' in data else 'no')")
    assert _reward(prog, [{"input": "", "output": "hunter2"}], _cfg(mode)) == 0.0
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_cannot_open_a_socket(mode):
  server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  server.bind(("127.0.0.1", 0))
  server.listen(1)
  server.setblocking(False)
  port = server.getsockname()[1]
  try:
    prog = ("import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')")
    assert _reward(prog, [{"input": "", "output": "connected"}], _cfg(mode)) == 0.0
    with pytest.raises(BlockingIOError):
      server.accept()
  finally:
    server.close()
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_cannot_kill_its_parent(mode):
  parent = os.getpid()
  for prog in (f"import os, signal\nos.kill({parent}, signal.SIGKILL)\nprint('done')",
               "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('done')",
               f"import os, signal\nos.killpg(os.getpgid({parent}), signal.SIGKILL)\nprint('done')"):
    assert _reward(prog, [{"input": "", "output": "done"}], _cfg(mode)) == 0.0
  os.kill(parent, 0)  # Still alive (raises if not).
  _assert_host_healthy(mode)


@pytest.mark.parametrize("mode", MODES)
def test_early_exit_does_not_pass_assert_tests(mode):
  tests = [{"assert": "assert add(1, 2) == 3"}]
  wrong = "def add(a, b):\n  return a - b\n"
  for exit_call in ("import os\nos._exit(0)", "import sys\nsys.exit(0)", "raise SystemExit"):
    assert _reward(wrong + exit_call, tests, _cfg(mode)) == 0.0, exit_call
  # sys.exit in the program does not stop a correct solution's tests from running.
  assert _reward("def add(a, b):\n  return a + b\nimport sys\nsys.exit(0)", tests,
                 _cfg(mode)) == 1.0


def test_environment_is_scrubbed_and_cwd_private():
  r = sandbox.run_python("import os\nprint(sorted(os.environ))\nprint(os.listdir('.'))")
  env_keys, listing = r.stdout.strip().split("\n")
  assert "RLVR" not in env_keys and "XLA_FLAGS" not in env_keys
  assert listing == "[]"


def test_isolation_report_keys():
  rep = sandbox.isolation_report()
  assert rep["audit_guard"] is True and rep["readonly_filesystem"] is False
  assert isinstance(rep["namespaces"], bool)
  with pytest.raises(RuntimeError) if not rep["namespaces"] else contextlib.nullcontext():
    sandbox.isolation_report(sandbox.SandboxConfig(namespaces="require"))


def _interpreter_with_privilege_drop():
  for py in (None, "/usr/bin/python3"):
    if py is not None and not os.path.exists(py):
      continue
    cfg = sandbox.SandboxConfig(python=py)
    if sandbox.isolation_report(cfg)["privilege_drop"]:
      return py
  return None


def test_privilege_drop_when_available():
  if os.geteuid() != 0:
    pytest.skip("privilege drop applies only when running as root")
  py = _interpreter_with_privilege_drop()
  if py is None:
    pytest.skip("no interpreter on this host is usable by nobody")
  cfg = sandbox.SandboxConfig(python=py, drop_privileges="require", timeout_s=5.0)
  r = sandbox.run_python("import os\nopen('f', 'w').write('x')\nprint(os.getuid(), os.getgid())",
                         config=cfg)
  assert r.status == "ok" and r.stdout.split() == ["65534", "65534"]
  r = sandbox.run_python("def f():\n  return 1", test="assert f() == 1", config=cfg)
  assert r.tests_completed
  assert _sandbox_processes() == []


def test_undecodable_text_does_not_raise():
  # Model output can carry lone surrogates; the sandbox replaces them instead of raising.
  r = sandbox.run_python("print('a\udcff')", stdin="\udcff")
  assert r.status == "ok" and r.stdout.startswith("a")
