"""Hostile programs against the code sandbox (issue 14): each scores 0 and the host is unharmed.

Every attack is written so that its expected output appears (or its assert test passes) only if
the attack *succeeds*; a blocked attack therefore scores 0. After each one the host is checked
directly: no new files in world-writable places, victim files unchanged (content, mode, owner,
no immutable flag), a root-owned sentinel process and the test process alive, no sandbox process
left, no scratch directory left in ``/tmp``.

Each attack runs in three settings:

* ``bwrap``: bubblewrap with the in-process guard (the default configuration);
* ``kernel``: bubblewrap *without* the guard (``sandbox._TESTING_WITHOUT_GUARD``), so the kernel
  boundary alone must hold, as it must when a program finds a way around the guard;
* ``fallback``: ``namespaces="off"``, the weaker mode a host without bubblewrap gets.

CI runs as root, where the attacks that need root's reach (``/etc/shadow``, ``/root``, chmod of
root-owned files) are meaningful; as another user they still run and must still score 0.

Set ``RLVR_HOSTILE_TABLE=<path>`` to write the table of outcomes (attack, mode, reward, status,
host harm, leftovers) as Markdown.
"""

import dataclasses
import importlib.util
import os
import pathlib
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from typing import Callable, List, Optional

import pytest

from rlvr_jax.rewards import code
from rlvr_jax.rewards import sandbox

_HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("code_problems", _HERE / "code_problems.py")
code_problems = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(code_problems)

ROOT = os.geteuid() == 0
MODES = ["bwrap", "kernel", "fallback"]
TABLE: List[tuple] = []


@pytest.fixture(scope="module")
def bwrap_available():
  rep = sandbox.isolation_report(sandbox.SandboxConfig())
  ok = rep["mode"] == "bubblewrap"
  if not ok and os.environ.get("CI") == "true":
    pytest.fail("bubblewrap does not work in CI; the boundary is untested: "
                f"{rep['not_enforced']}")
  return ok


def _config(mode, **kw):
  kw.setdefault("timeout_s", 3.0)
  return sandbox.SandboxConfig(namespaces="off" if mode == "fallback" else "require", **kw)


@pytest.fixture(params=MODES)
def mode(request, monkeypatch, bwrap_available):
  if request.param != "fallback" and not bwrap_available:
    pytest.skip("bubblewrap cannot run on this host")
  if request.param == "kernel":
    monkeypatch.setattr(sandbox, "_TESTING_WITHOUT_GUARD", True)
  return request.param


# ----------------------------------------------------------------------------- the host

class Host:
  """Victims, a sentinel and the checks run after every attack."""

  def __init__(self):
    self.token = secrets.token_hex(6)
    # Root-owned, world-traversable: what an unprivileged uid could reach on a real host.
    self.base = tempfile.mkdtemp(prefix="rlvr_hostile_")
    os.chmod(self.base, 0o755)
    self.victim = os.path.join(self.base, "victim.txt")
    with open(self.victim, "w") as f:
      f.write("keep me")
    os.chmod(self.victim, 0o644)
    self.ww = os.path.join(self.base, "ww")  # world-writable, like /tmp without the sticky bit
    os.mkdir(self.ww)
    os.chmod(self.ww, 0o777)
    self.ww_file = os.path.join(self.ww, "shared.txt")
    with open(self.ww_file, "w") as f:
      f.write("shared")
    os.chmod(self.ww_file, 0o666)
    self.secret = "RLVR-SECRET-" + self.token
    self.secret_path = None
    if ROOT:
      self.secret_path = f"/root/.rlvr_hostile_{self.token}"
      with open(self.secret_path, "w") as f:
        f.write(self.secret)
      os.chmod(self.secret_path, 0o600)
    os.environ["RLVR_HOSTILE_SECRET"] = self.secret
    self.sentinel = subprocess.Popen(["sleep", "600"])
    self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    self.server.bind(("127.0.0.1", 0))
    self.server.listen(8)
    self.server.setblocking(False)
    self.port = self.server.getsockname()[1]
    self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    self.abstract_name = "\0rlvr_hostile_" + self.token
    self.abstract.bind(self.abstract_name)
    self.abstract.listen(8)
    self.abstract.setblocking(False)
    self.site = sysconfig.get_paths()["purelib"]
    self.stdlib = sysconfig.get_paths()["stdlib"]
    self.watched = [self.victim, self.ww_file, shutil.which("env") or "/usr/bin/env",
                    os.path.realpath(sys.executable)]
    self.before = {p: self._state(p) for p in self.watched}
    self.tmp_before = set(os.listdir(tempfile.gettempdir()))

  @staticmethod
  def _state(p):
    st = os.stat(p)
    with open(p, "rb") as f:
      head = f.read(1 << 16)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_nlink, head)

  def subs(self, program: str) -> str:
    for k, v in {"@VICTIM@": self.victim, "@WW@": self.ww, "@WWFILE@": self.ww_file,
                 "@SECRET@": self.secret, "@SECRET_PATH@": self.secret_path or "/root/none",
                 "@SENTINEL@": str(self.sentinel.pid), "@PARENT@": str(os.getpid()),
                 "@PORT@": str(self.port), "@ABSTRACT@": self.abstract_name[1:],
                 "@SITE@": self.site, "@STDLIB@": self.stdlib}.items():
      program = program.replace(k, v)
    return program

  def harm(self) -> List[str]:
    """Everything that differs from a healthy host; [] when unharmed."""
    problems = []
    for p, before in self.before.items():
      try:
        if self._state(p) != before:
          problems.append(f"{p} changed")
      except OSError as e:
        problems.append(f"{p}: {e}")
    for p in self.watched[:2]:
      try:  # the immutable flag shows as EPERM even for root
        with open(p, "a"):
          pass
      except OSError as e:
        problems.append(f"{p} not writable by root: {e}")
    for d in (self.ww, self.base, tempfile.gettempdir(), "/dev/shm", "/var/tmp", self.site,
              self.stdlib):
      try:
        names = os.listdir(d)
      except OSError:
        continue
      problems += [f"{d}/{n} created" for n in names if "rlvr_pwn" in n]
    if self.sentinel.poll() is not None:
      problems.append("the sentinel process was killed")
    try:
      conn, _ = self.server.accept()
      conn.close()
      problems.append("a sandbox connected to the host's TCP server")
    except BlockingIOError:
      pass
    try:
      conn, _ = self.abstract.accept()
      conn.close()
      problems.append("a sandbox connected to the host's abstract unix socket")
    except BlockingIOError:
      pass
    return problems

  def leftovers(self) -> List[str]:
    """Sandbox processes of this test process and scratch directories still around."""
    sandbox.cleanup_stale_dirs()
    deadline = time.monotonic() + 5.0
    while True:
      procs = _sandbox_processes()
      dirs = [n for n in os.listdir(tempfile.gettempdir())
              if n.startswith("rlvr_sandbox_") and n not in self.tmp_before]
      if (not procs and not dirs) or time.monotonic() > deadline:
        return [f"process {p}" for p in procs] + [f"/tmp/{d}" for d in dirs]
      time.sleep(0.05)

  def close(self):
    self.sentinel.kill()
    self.sentinel.wait()
    self.server.close()
    self.abstract.close()
    os.environ.pop("RLVR_HOSTILE_SECRET", None)
    shutil.rmtree(self.base, ignore_errors=True)
    if self.secret_path:
      os.remove(self.secret_path)


def _sandbox_processes(marker=None):
  """PIDs whose command line carries this process's sandbox marker."""
  marker = (marker or sandbox.process_marker()).encode()
  found = []
  for pid in os.listdir("/proc"):
    if not pid.isdigit():
      continue
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        if marker in f.read():
          found.append(int(pid))
    except OSError:
      pass
  return found


@pytest.fixture(scope="module")
def host():
  h = Host()
  yield h
  h.close()
  table = os.environ.get("RLVR_HOSTILE_TABLE")
  if table:
    with open(table, "w") as f:
      f.write("| attack | mode | reward | status | host harm | leftovers |\n")
      f.write("|---|---|---|---|---|---|\n")
      for row in TABLE:
        f.write("| " + " | ".join(str(x) for x in row) + " |\n")


# ----------------------------------------------------------------------------- the attacks

PWNED = [{"input": "", "output": "PWNED"}]
# The task every forgery attempt pretends to solve; each attempt's ``add`` is wrong.
ADD_TESTS = [{"assert": "assert add(2, 3) == 5"}, {"assert": "assert add(10, -4) == 6"},
             {"assert": "def check(candidate):\n    assert candidate(1, 1) == 2\ncheck(add)"}]


@dataclasses.dataclass
class Attack:
  name: str
  program: str
  tests: list = dataclasses.field(default_factory=lambda: PWNED)
  timeout_s: float = 3.0
  modes: tuple = tuple(MODES)
  config: dict = dataclasses.field(default_factory=dict)
  check: Optional[Callable] = None  # extra host check: (host, result) -> [problems]


_OUTSIDE = (
    "import os as _os\n"
    "def outside(d):\n"
    "    # Under bubblewrap /tmp *is* the private scratch directory: only other places count.\n"
    "    c = _os.path.realpath(_os.getcwd()) + '/'\n"
    "    return not (_os.path.realpath(d) + '/').startswith(c)\n")


# Forgery attempts are about the checker, not the kernel: the guard-less run is kept for the ones
# that reach for memory, descriptors or an early exit.
_FORGE = {"timeout_s": 1.5, "modes": ("bwrap", "fallback")}
_FORGE_KERNEL = {"timeout_s": 1.5}


def _prog(s):
  s = textwrap.dedent(s).strip() + "\n"
  return _OUTSIDE + s if "outside(" in s else s


ATTACKS = [
    # --- device nodes, FIFOs and C-level file writers outside the scratch directory
    Attack("mknod a character device", _prog("""
        import os, stat
        ok = []
        for d in ("@WW@", "/tmp", "/dev", os.getcwd()):
            try:
                os.mknod(os.path.join(d, "rlvr_pwn_dev"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
                ok.append(d)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("mkfifo outside scratch", _prog("""
        import os
        ok = []
        for d in ("@WW@", "/tmp", "/dev/shm", "/var/tmp"):
            try:
                os.mkfifo(os.path.join(d, "rlvr_pwn_fifo"))
                if outside(d):
                    ok.append(d)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("sqlite3.connect creates a file outside", _prog("""
        import sqlite3
        ok = []
        for d in ("@WW@", "/tmp", "/dev/shm"):
            try:
                sqlite3.connect(d + "/rlvr_pwn.db").execute("create table t(x)")
                if outside(d):
                    ok.append(d)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("sqlite3 ATTACH DATABASE outside", _prog("""
        import sqlite3
        ok = []
        for d in ("@WW@", "/tmp"):
            try:
                c = sqlite3.connect(":memory:")
                c.execute("ATTACH DATABASE '" + d + "/rlvr_pwn_attach.db' AS x")
                c.execute("create table x.t(a)")
                if outside(d):
                    ok.append(d)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("readline.write_history_file outside", _prog("""
        ok = []
        for d in ("@WW@", "/tmp"):
            try:
                import readline
                readline.add_history("x")
                readline.write_history_file(d + "/rlvr_pwn_hist")
                if outside(d):
                    ok.append(d)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack(".pth file drop into site-packages / stdlib", _prog("""
        import sys, sysconfig
        paths = sysconfig.get_paths()
        dirs = {"@SITE@", "@STDLIB@", paths["purelib"], paths["stdlib"]}
        dirs.update(p for p in sys.path if p)
        ok = []
        for d in dirs:
            try:
                with open(d + "/rlvr_pwn.pth", "w") as f:
                    f.write("import os; open('/tmp/rlvr_pwn_pth_ran', 'w')\\n")
                if outside(d):
                    ok.append(d)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    # --- permissions, owners and flags through read-only descriptors
    Attack("fchmod 06777 on a read-only fd", _prog("""
        import os, shutil, sys
        ok = []
        for p in ("@VICTIM@", sys.executable, shutil.which("env") or "/usr/bin/env"):
            try:
                fd = os.open(p, os.O_RDONLY)
                os.fchmod(fd, 0o6777)
                ok.append(p)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("fchown on a read-only fd", _prog("""
        import os, sys
        ok = []
        for p in ("@VICTIM@", sys.executable):
            try:
                fd = os.open(p, os.O_RDONLY)
                os.fchown(fd, os.getuid(), os.getgid())
                ok.append(p)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("ioctl: immutable flag on host files and on its scratch dir", _prog("""
        import fcntl, os, struct, sys
        FS_IOC_SETFLAGS, IMMUTABLE = 0x40086602, 0x10
        ok = []
        for p in ("@VICTIM@", sys.executable, "."):
            try:
                fd = os.open(p, os.O_RDONLY)
                fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", IMMUTABLE))
                ok.append(p)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    # --- reading what the host keeps secret
    Attack("read /etc/shadow and /etc/gshadow", _prog("""
        ok = []
        for p in ("/etc/shadow", "/etc/gshadow", "/proc/1/root/etc/shadow"):
            try:
                if open(p).read():
                    ok.append(p)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("read a secret in /root", _prog("""
        import os
        ok = False
        try:
            ok = "@SECRET@" in open("@SECRET_PATH@").read()
        except Exception:
            pass
        try:
            ok = ok or any(n.startswith(".rlvr_hostile_") for n in os.listdir("/root"))
        except Exception:
            pass
        print("PWNED" if ok else "no")""")),
    Attack("read the parent's environment through /proc", _prog("""
        import os
        ok = False
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        for pid in ["@PARENT@", str(os.getppid()), "1"] + pids:
            try:
                if b"@SECRET@" in open("/proc/%s/environ" % pid, "rb").read():
                    ok = True
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("inherit the parent's environment", _prog("""
        import os
        print("PWNED" if any("@SECRET@" in v for v in os.environ.values()) else "no")""")),
    # --- signals and processes
    Attack("kill a host process by pid", _prog("""
        import os
        try:
            os.kill(@SENTINEL@, 9)
            print("PWNED")
        except Exception:
            print("no")""")),
    Attack("pidfd_send_signal to a host process", _prog("""
        import os, signal
        try:
            signal.pidfd_send_signal(os.pidfd_open(@SENTINEL@), 9)
            print("PWNED")
        except Exception:
            print("no")""")),
    Attack("kill the caller and everything it may", _prog("""
        import os
        for target in (@PARENT@, os.getppid()):
            try:
                os.kill(target, 9)
            except Exception:
                pass
        try:
            os.kill(-1, 9)
        except Exception:
            pass
        print("no")"""), tests=[{"input": "", "output": "PWNED"}]),
    Attack("fork bomb", _prog("""
        import os
        while True:
            try:
                os.fork()
            except Exception:
                pass"""), timeout_s=1.0),
    Attack("fresh _posixsubprocess copy to run a shell", _prog("""
        import importlib.util, os
        ok = False
        try:
            spec = importlib.util.find_spec("_posixsubprocess")
            m = importlib.util.module_from_spec(spec)
            import subprocess
            subprocess._fork_exec = m.fork_exec
            subprocess.run(["/bin/sh", "-c", "touch @WW@/rlvr_pwn_sh /tmp/rlvr_pwn_sh"])
            ok = os.path.exists("@WW@/rlvr_pwn_sh")
        except Exception:
            pass
        print("PWNED" if ok else "no")""")),
    # --- resources
    Attack("disk fill (512 MiB)", _prog("""
        import os
        written = 0
        for i in range(512):
            try:
                with open("f%d" % i, "wb") as f:
                    f.write(b"x" * (1 << 20))
                written += 1 << 20
            except Exception:
                pass
        for d in ("/dev/shm", "/tmp"):
            if not outside(d):
                continue
            try:
                with open(d + "/rlvr_pwn_fill", "wb") as f:
                    for _ in range(64):
                        f.write(b"x" * (1 << 20))
                        written += 1 << 20
            except Exception:
                pass
        print("PWNED" if written >= 128 << 20 else "no")"""), timeout_s=5.0),
    Attack("memory bomb", _prog("""
        try:
            x = bytearray(8 << 30)
            print("PWNED")
        except MemoryError:
            chunks = []
            while True:
                chunks.append(bytearray(64 << 20))"""), config={"memory_mb": 256}),
    Attack("output flood", _prog("""
        while True:
            print("x" * 100000)""")),
    # --- network
    Attack("connect to a host TCP port", _prog("""
        import socket
        try:
            socket.create_connection(("127.0.0.1", @PORT@), timeout=1)
            print("PWNED")
        except Exception:
            print("no")""")),
    Attack("connect to a host abstract unix socket", _prog("""
        import socket
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect("\\0@ABSTRACT@")
            print("PWNED")
        except Exception:
            print("no")""")),
    # --- time
    Attack("long sleep", _prog("""
        import time
        time.sleep(1000)
        print("PWNED")"""), timeout_s=1.0),
    # --- writes and deletes through the filesystem
    Attack("write and delete in a world-writable host dir", _prog("""
        import os
        ok = []
        for action in ("write", "create", "delete", "dirfd"):
            try:
                if action == "write":
                    open("@WWFILE@", "w").write("pwned")
                elif action == "create":
                    open("@WW@/rlvr_pwn_new", "w").write("x")
                elif action == "delete":
                    os.remove("@WWFILE@")
                else:
                    fd = os.open("@WW@", os.O_RDONLY)
                    os.close(os.open("rlvr_pwn_dirfd", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
                ok.append(action)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("symlink and hard link to host files", _prog("""
        import os, sys
        ok = []
        for src in ("/etc/passwd", "@VICTIM@", sys.executable):
            try:
                os.link(src, "h" + str(len(ok)))
                ok.append(src)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    Attack("scratch dir that resists cleanup", _prog("""
        import os
        os.makedirs("a/b/c")
        open("a/b/c/f", "w").write("x")
        for d in ("a/b/c", "a/b", "a", "."):
            try:
                os.chmod(d, 0)
            except Exception:
                pass
        print("no")""")),
    # --- kernel attack surface
    Attack("new user namespace (unshare CLONE_NEWUSER)", _prog("""
        import ctypes
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            print("PWNED" if libc.unshare(0x10000000) == 0 else "no")
        except Exception:
            print("no")""")),
    Attack("mount a tmpfs over /usr", _prog("""
        import ctypes
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            r = libc.mount(b"none", b"/usr", b"tmpfs", 0, None)
            print("PWNED" if r == 0 else "no")
        except Exception:
            print("no")""")),
    Attack("raise its own rlimits", _prog("""
        import resource
        try:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            print("PWNED")
        except Exception:
            print("no")""")),
    Attack("write kernel settings in /proc/sys", _prog("""
        ok = []
        for p in ("/proc/sys/kernel/hostname", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger"):
            try:
                open(p, "w").write("1")
                ok.append(p)
            except Exception:
                pass
        print("PWNED" if ok else "no")""")),
    # --- forging the verdict of assert tests (each add() is wrong)
    Attack("forge: replace builtins.exec", _prog("""
        import builtins
        builtins.exec = lambda *a, **k: None
        builtins.eval = lambda *a, **k: True
        def add(a, b):
            return a - b"""), tests=ADD_TESTS, **_FORGE),
    # Both frame walks look for what a checker in the candidate's process would keep (the
    # verdict's descriptor and nonce, as the pre-issue-14 harness did) and for verdict writers.
    Attack("forge: sys._getframe walk into the harness", _prog("""
        import os, sys
        def _forge(f):
            while f is not None:
                loc = f.f_locals
                if isinstance(loc.get("result_fd"), int) and isinstance(loc.get("nonce"), bytes):
                    os.write(loc["result_fd"], loc["nonce"])
                    os._exit(0)
                for k, v in list(f.f_globals.items()):
                    if callable(v) and ("verdict" in k or "exec" in k):
                        f.f_globals[k] = lambda *a, **kw: None
                f = f.f_back
        def add(a, b):
            _forge(sys._getframe(1))
            return a - b"""), tests=ADD_TESTS, **_FORGE),
    Attack("forge: traceback frames into the harness", _prog("""
        import os, sys
        def add(a, b):
            try:
                raise RuntimeError
            except RuntimeError:
                f = sys.exc_info()[2].tb_frame
            while f is not None:
                loc = f.f_locals
                if isinstance(loc.get("result_fd"), int) and isinstance(loc.get("nonce"), bytes):
                    os.write(loc["result_fd"], loc["nonce"])
                    os._exit(0)
                f = f.f_back
            return a - b"""), tests=ADD_TESTS, **_FORGE),
    Attack("forge: __eq__ always true", _prog("""
        class Yes:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
            def __bool__(self):
                return True
        def add(a, b):
            return Yes()"""), tests=ADD_TESTS, **_FORGE),
    Attack("forge: int subclass whose __eq__ is always true", _prog("""
        class I(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def add(a, b):
            return I(0)"""), tests=ADD_TESTS, **_FORGE),
    Attack("forge: early os._exit(0)", _prog("""
        import os
        def add(a, b):
            return a - b
        os._exit(0)"""), tests=ADD_TESTS, **_FORGE_KERNEL),
    Attack("forge: print a fake verdict and exit", _prog("""
        import os, sys
        for fd in range(0, 64):
            try:
                os.write(fd, b'{"i": 0, "passed": true, "status": "ok", "error": ""}\\n'
                             b'{"id": 1, "ok": 5}\\nPASSED\\nok\\n')
            except Exception:
                pass
        print("All tests passed")
        def add(a, b):
            return a - b
        sys.stdout.flush()
        os._exit(0)"""), tests=ADD_TESTS, **_FORGE),
    Attack("forge: shadow the built-ins and modules the test uses", _prog("""
        class math:
            @staticmethod
            def isclose(*a, **k):
                return True
        def abs(x):
            return 0
        def sorted(x, **k):
            return [1, 2]
        def isinstance(*a):
            return True
        def add(a, b):
            return a - b"""), tests=[
                {"assert": "assert math.isclose(add(2, 3), 5)"},
                {"assert": "assert abs(add(2, 3) - 5) < 1e-9"},
                {"assert": "assert sorted([add(1, 1), add(0, 1)]) == [1, 2]"},
                {"assert": "assert isinstance(add(2, 3), int) and add(2, 3) == 5"}], **_FORGE),
    Attack("forge: StopIteration ends the test's iteration early", _prog("""
        def add(a, b):
            raise StopIteration"""), tests=[
                {"assert": "assert all(map(lambda t: add(*t) == sum(t), [(2, 3), (1, 1)]))"},
                {"assert": "assert list(map(lambda t: add(*t), [(2, 3)])) == [5]"}],
           **_FORGE),
    # (Writing the *right* answers to its own reply pipe is just answering: equivalent to a
    # lookup table of the test's values, test overfitting, not forgery. What must fail is
    # anything that tries to pass without the values: verdicts, stale ids, references.)
    Attack("forge: fake verdicts and replies into every descriptor", _prog("""
        import os, threading
        def spam():
            for _ in range(200):
                for fd in range(3, 64):
                    try:
                        os.write(fd, b'{"i": 0, "passed": true, "status": "ok", "error": ""}\\n'
                                     b'{"id": 0, "globals": {}}\\n{"id": 1, "ok": {"$r": 1}}\\n'
                                     b'{"id": 1, "exc": ["StopIteration", ""]}\\n')
                    except Exception:
                        pass
        threading.Thread(target=spam).start()
        def add(a, b):
            return a - b"""), tests=ADD_TESTS, **_FORGE_KERNEL),
    # The candidate controls its whole process, so it can write any message to its own reply
    # pipe: these two write what a checker must never accept.
    Attack("forge: hand-written reply naming a stdlib object equal to everything", _prog("""
        import os, sys, json
        def _reply(value):
            f = sys._getframe(1)
            while f is not None and "resp_w" not in f.f_locals:
                f = f.f_back
            loc = f.f_locals
            msg = {"id": loc["msg"]["id"], "ok": value}
            os.write(loc["resp_w"], (json.dumps(msg) + "\\n").encode())
            os._exit(0)
        def add(a, b):
            _reply({"$fn": ["unittest.mock", "ANY"]})
        def get():
            _reply({"$fn": ["unittest.mock", "_ANY"]})"""),
           tests=ADD_TESTS + [{"assert": "assert get()() == 5"}], **_FORGE),
    Attack("forge: hand-written globals that replace the test's built-ins", _prog("""
        import os, sys, json
        f = sys._getframe(0)
        while f is not None and "objs" not in f.f_locals:
            f = f.f_back
        loc, g = f.f_locals, f.f_globals
        def add(a, b):
            return a - b
        loc["objs"][9001] = lambda *a, **k: 0
        loc["objs"][9002] = add
        fake = {"$d": [["abs", {"$r": 9001}], ["isinstance", {"$r": 9001}]]}
        msg = {"id": 0, "globals": {"__builtins__": fake, "add": {"$r": 9002}}}
        os.write(loc["resp_w"], (json.dumps(msg) + "\\n").encode())
        send = g["_send"]
        g["_send"] = lambda fd, m: None if m.get("id") == 0 else send(fd, m)"""),
           tests=[{"assert": "assert abs(add(2, 3) - 5) < 1e-9"}], **_FORGE),
    Attack("forge: malformed and oversized answers", _prog("""
        def add(a, b):
            x = []
            for _ in range(200000):
                x = [x]
            return x"""), tests=ADD_TESTS, **_FORGE),
    Attack("forge: objects from the gc or the checker's memory", _prog("""
        import gc, os
        for o in gc.get_objects():
            if isinstance(o, dict) and "verdict_w" in o:
                os.write(o["verdict_w"], b'{"i": 0, "passed": true, "status": "ok"}\\n')
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    with open("/proc/%s/mem" % pid, "r+b") as f:
                        pass
                    print("opened", pid)
                except Exception:
                    pass
        def add(a, b):
            return a - b"""), tests=ADD_TESTS, **_FORGE_KERNEL),
]


def _fence(program):
  return "```python\n" + program + "```"


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_scores_zero_and_host_unharmed(attack, mode, host):
  if mode not in attack.modes:
    pytest.skip(f"{attack.name} does not apply to {mode}")
  cfg = _config(mode, timeout_s=attack.timeout_s, **attack.config)
  program = host.subs(attack.program)
  t0 = time.monotonic()
  results = code.run_tests(program, attack.tests, config=cfg)
  wall = time.monotonic() - t0
  reward = sum(r.passed for r in results) / len(results)  # code_reward's "fraction"
  harm = host.harm()
  if attack.check:
    harm += attack.check(host, results)
  leftovers = host.leftovers()
  TABLE.append((attack.name, mode, reward, "/".join(sorted({r.status for r in results})),
                "; ".join(harm) or "none", "; ".join(leftovers) or "none"))
  assert reward == 0.0, (attack.name, [(r.passed, r.status) for r in results])
  assert not harm, harm
  assert not leftovers, leftovers
  # Nothing outlives its timeout by much (the pair of an assert test gets it per test).
  assert wall < len(attack.tests) * (attack.timeout_s + 4.0), wall


# ----------------------------------------------------------------------------- caller killed

_CALLER = """
import sys
sys.path.insert(0, {root!r})
from rlvr_jax.rewards import sandbox
if {no_guard}:
  sandbox._TESTING_WITHOUT_GUARD = True
cfg = sandbox.SandboxConfig(namespaces={ns!r}, timeout_s=30.0)
print("marker", sandbox.process_marker(), flush=True)
sandbox.run_python({program!r}, config=cfg)
"""

_ORPHAN = _prog("""
    import os, time
    try:
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            os._exit(0)
    except Exception:
        pass
    time.sleep(60)""")


def test_sigkilled_caller_leaves_nothing_behind(mode, host):
  """The caller is SIGKILLed mid-run: every sandbox process (a setsid() grandchild included,
  where the guard lets it fork at all) dies, and no directory is left in /tmp."""
  root = str(_HERE.parents[1])
  caller = subprocess.Popen(
      [sys.executable, "-c", _CALLER.format(root=root, no_guard=mode == "kernel",
                                            ns="off" if mode == "fallback" else "require",
                                            program=_ORPHAN)],
      stdout=subprocess.PIPE, text=True)
  try:
    marker = caller.stdout.readline().split()[1]
    deadline = time.monotonic() + 20
    # Without the guard: bwrap's monitor and init, the harness and the setsid grandchild.
    while len(_sandbox_processes(marker)) < {"kernel": 4, "bwrap": 3, "fallback": 1}[mode]:
      assert time.monotonic() < deadline, "the sandbox did not start"
      time.sleep(0.05)
    time.sleep(0.3)
  finally:
    caller.kill()
    caller.wait()
  deadline = time.monotonic() + 5
  while _sandbox_processes(marker) and time.monotonic() < deadline:
    time.sleep(0.05)
  survivors = _sandbox_processes(marker)
  harm, leftovers = host.harm(), host.leftovers()
  TABLE.append(("orphaned setsid children of a SIGKILLed caller", mode, 0.0, "caller killed",
                "; ".join(harm + [f"survivor {p}" for p in survivors]) or "none",
                "; ".join(leftovers) or "none"))
  assert not survivors, survivors
  assert not harm and not leftovers, (harm, leftovers)


# ----------------------------------------------------------------------------- honest solutions

@pytest.mark.parametrize("mode", ["bwrap", "fallback"])
def test_honest_solutions_all_score_one(mode, bwrap_available, host):
  if mode == "bwrap" and not bwrap_available:
    pytest.skip("bubblewrap cannot run on this host")
  cfg = _config(mode, timeout_s=10.0)
  problems = code_problems.PROBLEMS
  assert len(problems) >= 50
  if mode == "fallback":
    problems = problems[::3]  # the same machinery; a third of the set keeps the suite short
  completions = [_fence(p["solution"]) for p in problems + code_problems.WRONG]
  rewards = code.code_reward(completions, [p["tests"] for p in problems + code_problems.WRONG],
                             mode="all_pass", config=cfg, max_workers=2)
  honest = dict(zip((p["name"] for p in problems), rewards))
  wrong = dict(zip((p["name"] for p in code_problems.WRONG), rewards[len(problems):]))
  assert all(r == 1.0 for r in honest.values()), {k: v for k, v in honest.items() if v != 1.0}
  assert all(r == 0.0 for r in wrong.values()), {k: v for k, v in wrong.items() if v != 0.0}
  assert not host.harm() and not host.leftovers()
