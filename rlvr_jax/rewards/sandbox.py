"""Run untrusted Python programs in a fresh, resource-limited process.

This is the process machinery under :mod:`rlvr_jax.rewards.code`. Every call to
:func:`run_python` starts a new interpreter and layers the protections this host allows:

1. **Process lifetime.** The child starts in a new session (``start_new_session=True``); on a
   wall-clock timeout, and after every run, the whole process group is sent ``SIGKILL``, so
   children it spawned die too.
2. **Namespaces** (when ``unshare`` works for this user, probed once): a new network namespace
   (no interfaces but a down loopback: no network at all), a new PID namespace with a private
   ``/proc`` (the program cannot see or signal host processes, and killing the namespace's init
   kills every process in it, including ones that called ``setsid``), and a private mount
   namespace (needed for the private ``/proc``).
3. **rlimits**, set in the child before the program runs: ``RLIMIT_CPU``, ``RLIMIT_AS``,
   ``RLIMIT_FSIZE`` (also caps stdout/stderr, which go to files), ``RLIMIT_NPROC``,
   ``RLIMIT_NOFILE`` and ``RLIMIT_CORE = 0``. ``RLIMIT_NPROC`` counts processes *per user*: it
   does not bind for root, and for other users it counts all of that user's processes.
4. **Privilege drop** (root only, when the interpreter is usable by the target uid, probed
   once): the child switches to ``nobody`` before the program runs, so file permissions,
   ``RLIMIT_NPROC`` and signal permissions apply.
5. **An in-process guard** (a ``sys.addaudithook`` hook, which cannot be removed): blocks
   ``fork``/``exec``/``spawn``/``subprocess``/``os.system``, ``kill``/``killpg``, sockets,
   ``ctypes`` symbol lookup and foreign calls, ``setrlimit``, frame and garbage-collector
   introspection, re-importing ``posix``/``_posixsubprocess``, and any write, delete, rename or
   link outside the private working directory; without a PID namespace it also blocks reading
   other processes' ``/proc/<pid>`` entries. The guard is defence in depth, not isolation: a
   program that escapes the interpreter (a C extension already importable from the
   environment, for instance) is limited only by layers 1-4.
6. **Scrubbed environment and isolated mode**: ``python -I`` with a fixed, minimal environment
   (nothing inherited from the parent), a fresh private temporary directory as cwd and ``HOME``,
   removed afterwards.

What is *not* enforced: a read-only filesystem (as root, without a privilege drop, only the
guard stops writes outside the working directory), memory accounting beyond ``RLIMIT_AS`` per
process, and a cgroup limit on the number of processes. :func:`isolation_report` says which
layers are active on this host.

Assert-style tests run in the same interpreter as the program, after it; their verdict comes back
as a per-run random nonce that the harness writes only when every statement of the test
finished, so an early ``os._exit(0)``/``sys.exit(0)`` does not count as a pass. A program that
walks exception tracebacks into the harness's frames could still read the nonce; the guard
blocks ``sys._getframe`` and ``gc`` introspection but not that route.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Optional

# Exit codes the harness uses for its own verdicts (unlikely to be chosen by a program).
_EXIT_COMPILE_ERROR = 113
_EXIT_MEMORY_ERROR = 114
_EXIT_VIOLATION = 115
_EXIT_SIGNAL_BASE = 128  # PID-namespace init relays "killed by signal s" as 128 + s.

_NOBODY = 65534
_UNSHARE_FLAGS = ("--net", "--pid", "--mount", "--fork", "--mount-proc", "--kill-child")

# The harness runs as the child's main program (``python -I -c``); argv carries its settings.
_HARNESS = r'''
import os, sys, resource
(work, prog_path, test_path, nonce_path, result_path, cpu_s, as_bytes, fsize, nproc, nofile,
 uid, ns) = sys.argv[1:13]
cpu_s, as_bytes, fsize, nproc, nofile, uid, ns = map(int, (cpu_s, as_bytes, fsize, nproc,
                                                       nofile, uid, ns))

if ns and os.getpid() == 1:
  # PID-namespace init: the kernel ignores most signals sent to it, rlimit signals included, so
  # the program runs in a child and init relays its status. When init dies, the kernel kills
  # every process left in the namespace.
  child = os.fork()
  if child:
    status = 0
    while True:
      try:
        pid, st = os.waitpid(-1, 0)
      except ChildProcessError:
        break
      if pid == child:
        status = (os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))
        break
    os._exit(status)

def _main():
  # Everything lives in this frame, not in __main__'s globals, which the program could reach
  # through sys.modules.
  os.chdir(work)
  for res, val in ((resource.RLIMIT_CPU, cpu_s), (resource.RLIMIT_AS, as_bytes),
                   (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_NPROC, nproc),
                   (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)):
    # CPU: SIGXCPU at the soft limit, SIGKILL one second later at the hard limit.
    resource.setrlimit(res, (val, val + 1 if res == resource.RLIMIT_CPU else val))

  nonce = b""
  if nonce_path:
    with open(nonce_path, "rb") as f:
      nonce = f.read()
    os.unlink(nonce_path)
  result_fd = os.open(result_path, os.O_WRONLY | os.O_APPEND) if result_path else -1
  with open(prog_path, encoding="utf-8", errors="replace") as f:
    prog_src = f.read()
  test_src = ""
  if test_path:
    with open(test_path, encoding="utf-8", errors="replace") as f:
      test_src = f.read()
  os.unlink(prog_path)
  if test_path:
    os.unlink(test_path)

  if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)

  try:
    prog_code = compile(prog_src, "<solution>", "exec")
    test_code = compile(test_src, "<test>", "exec") if test_path else None
  except (SyntaxError, ValueError):
    import traceback
    traceback.print_exc()
    sys.exit(113)

  class SandboxViolation(PermissionError):
    pass

  _WORK = os.path.realpath(work) + os.sep
  _SELF_PROC = ("/proc/self/", "/proc/thread-self/", "/proc/%d/" % os.getpid())
  _BLOCKED = frozenset((
      "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
      "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
      "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo", "socket.sendto",
      "socket.sendmsg", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata",
      "ctypes.call_function", "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at",
      "resource.setrlimit", "resource.prlimit", "gc.get_objects",
      "gc.get_referrers", "gc.get_referents", "os.symlink", "os.link", "os.setxattr",
      "os.removexattr", "webbrowser.open"))
  # Both paths are checked: a rename out of another directory deletes there. (Copies need no
  # entry: writing the destination raises an "open" event.)
  _PATH_EVENTS = frozenset(("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod",
                            "os.chown", "os.truncate", "os.utime", "shutil.rmtree",
                            "os.chflags"))
  _NO_REIMPORT = frozenset(("posix", "nt", "_posixsubprocess"))
  _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

  def _inside(path):
    if isinstance(path, int):
      return True
    try:
      p = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
      return False
    return (p + os.sep).startswith(_WORK)

  def _audit(event, args):
    if event in _BLOCKED:
      raise SandboxViolation("sandbox: %s is not allowed" % event)
    if event == "open":
      path, mode, flags = args
      if isinstance(path, int):
        return
      writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                else bool((flags or 0) & _WRITE_FLAGS))
      if writes and not _inside(path):
        raise SandboxViolation("sandbox: writing outside the working directory")
      # A directory descriptor would let dir_fd-relative calls, which the audit events report
      # only by their relative path, write anywhere.
      if not _inside(path) and os.path.isdir(path):
        raise SandboxViolation("sandbox: opening directories outside the working directory")
      if not ns:
        p = os.path.abspath(os.fsdecode(path))
        if (p.startswith("/proc/") and p.split("/")[2].isdigit()
            and not p.startswith(_SELF_PROC)):
          raise SandboxViolation("sandbox: reading other processes is not allowed")
    elif event in _PATH_EVENTS:
      for a in args[:2]:
        if isinstance(a, (str, bytes, os.PathLike)) and not _inside(a):
          raise SandboxViolation("sandbox: %s outside the working directory" % event)
    elif event == "import" and args[0] in _NO_REIMPORT:
      raise SandboxViolation("sandbox: importing %s is not allowed" % args[0])

  def _no_fork_exec(*args, **kwargs):
    raise SandboxViolation("sandbox: fork_exec is not allowed")

  # _posixsubprocess.fork_exec raises no audit event of its own: replace it in the (cached)
  # module object; re-importing a fresh copy is blocked by the hook.
  import _posixsubprocess
  _posixsubprocess.fork_exec = _no_fork_exec
  sys.addaudithook(_audit)
  del prog_src, test_src
  # With an assert test the program is imported as a module, so a main guard (reading stdin,
  # printing) does not run; alone it runs as the main program.
  g = {"__name__": "__main__" if test_code is None else "solution",
       "__builtins__": __builtins__}
  status = 0
  try:
    try:
      exec(prog_code, g)
    except SystemExit:
      # A program may legitimately exit early; assert tests then still run.
      if test_code is None:
        raise
    if test_code is not None:
      exec(test_code, g)
      os.write(result_fd, nonce)
  except SystemExit:
    raise
  except MemoryError:
    status = 114
  except SandboxViolation:
    import traceback
    traceback.print_exc()
    status = 115
  except BaseException:
    import traceback
    traceback.print_exc()
    status = 1
  sys.stdout.flush()
  sys.exit(status)


_main()
'''


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
  """Limits for one sandboxed run.

  Attributes:
    timeout_s: wall-clock limit; the process group is killed when it passes.
    cpu_s: ``RLIMIT_CPU`` in seconds; ``None`` means ``ceil(timeout_s) + 1``.
    memory_mb: ``RLIMIT_AS`` (virtual address space) in MiB.
    max_output_bytes: cap on stdout and on stderr, and ``RLIMIT_FSIZE`` for any file written.
    max_processes: ``RLIMIT_NPROC`` (per user; see the module docstring). With the privilege
      drop every concurrent sandbox runs as ``nobody``, so this must exceed the number of
      sandboxes running at once plus the threads their programs start.
    max_open_files: ``RLIMIT_NOFILE``.
    namespaces: ``"auto"`` (use ``unshare`` when it works), ``"require"`` (raise if it does not)
      or ``"off"``.
    drop_privileges: ``"auto"`` (as root, switch to ``nobody`` when the interpreter works for
      it), ``"require"`` or ``"off"``.
    python: interpreter for the child; ``None`` means ``sys.executable``.
  """

  timeout_s: float = 5.0
  cpu_s: Optional[int] = None
  memory_mb: int = 1024
  max_output_bytes: int = 1 << 20
  max_processes: int = 64
  max_open_files: int = 64
  namespaces: str = "auto"
  drop_privileges: str = "auto"
  python: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """Outcome of one sandboxed run.

  Attributes:
    status: ``"ok"`` (exit 0), ``"runtime_error"``, ``"compile_error"``, ``"timeout"`` (wall or
      CPU limit), ``"memory_error"``, ``"violation"`` (the guard blocked an operation),
      ``"output_limit"`` (output or file-size cap hit) or ``"killed"`` (another signal).
    returncode: the child's exit code (negative: killed by that signal).
    stdout: captured stdout, at most ``max_output_bytes``, decoded with ``errors="replace"``.
    stderr: captured stderr, same cap.
    wall_s: wall-clock seconds of the run.
    tests_completed: for runs with an assert test, whether every statement of the test ran.
  """

  status: str
  returncode: int
  stdout: str
  stderr: str
  wall_s: float
  tests_completed: bool = False


def _python(config: SandboxConfig) -> str:
  return config.python or sys.executable


@functools.lru_cache(maxsize=None)
def _unshare_prefix(python: str) -> Optional[tuple]:
  """The ``unshare`` command prefix that works for this user, or None."""
  exe = shutil.which("unshare")
  if exe is None:
    return None
  candidates = [(exe,) + _UNSHARE_FLAGS]
  if os.geteuid() != 0:
    # Unprivileged users may still create namespaces inside a new user namespace.
    candidates.append((exe, "--user", "--map-root-user") + _UNSHARE_FLAGS)
  for prefix in candidates:
    try:
      done = subprocess.run(prefix + (python, "-I", "-c", "pass"), capture_output=True,
                            timeout=30, env={"PATH": "/usr/bin:/bin"}, check=False)
    except (OSError, subprocess.TimeoutExpired):
      continue
    if done.returncode == 0:
      return prefix
  return None


@functools.lru_cache(maxsize=None)
def _can_drop_privileges(python: str) -> bool:
  """Whether a root-started child can switch to ``nobody`` and still import the stdlib."""
  if os.geteuid() != 0:
    return False
  probe = ("import os; os.setgroups([]); os.setgid(%d); os.setuid(%d); "
           "import json, decimal, fractions, collections, itertools" % (_NOBODY, _NOBODY))
  try:
    done = subprocess.run((python, "-I", "-c", probe), capture_output=True, timeout=30,
                          cwd="/", env={"PATH": "/usr/bin:/bin"}, check=False)
  except (OSError, subprocess.TimeoutExpired):
    return False
  return done.returncode == 0


def _resolve(config: SandboxConfig):
  python = _python(config)
  prefix = None
  if config.namespaces != "off":
    prefix = _unshare_prefix(python)
    if prefix is None and config.namespaces == "require":
      raise RuntimeError("namespaces='require' but unshare does not work on this host")
  drop = False
  if config.drop_privileges != "off":
    drop = _can_drop_privileges(python)
    if not drop and config.drop_privileges == "require":
      raise RuntimeError("drop_privileges='require' but the interpreter is not usable as "
                         "nobody (or the process is not root)")
  return python, prefix, drop


def isolation_report(config: SandboxConfig = SandboxConfig()) -> Dict[str, Any]:
  """Which protection layers :func:`run_python` applies on this host with ``config``."""
  python, prefix, drop = _resolve(config)
  return {
      "python": python,
      "euid": os.geteuid(),
      "namespaces": prefix is not None,  # no network, private PIDs and /proc
      "unshare_command": " ".join(prefix) if prefix else None,
      "privilege_drop": drop,
      "rlimit_nproc_binds": drop or os.geteuid() != 0,
      "audit_guard": True,
      "readonly_filesystem": False,
  }


def _read_capped(path: str, cap: int) -> str:
  with open(path, "rb") as f:
    return f.read(cap).decode("utf-8", errors="replace")


def _kill_group(pgid: int) -> None:
  try:
    os.killpg(pgid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass


def run_python(program: str,
               *,
               stdin: str = "",
               test: Optional[str] = None,
               config: SandboxConfig = SandboxConfig()) -> ExecResult:
  """Runs ``program`` (Python source) once in a fresh sandboxed interpreter.

  Args:
    program: the candidate's source code, run as ``__main__``.
    stdin: text fed to the program's standard input.
    test: optional assert-style test source, executed in the program's namespace after it; the
      program then runs with ``__name__ == "solution"`` (its main guard is skipped), and the
      result's ``tests_completed`` says whether the whole test ran.
    config: limits and isolation switches.

  Returns:
    An :class:`ExecResult`. Never raises for anything the program does.
  """
  python, prefix, drop = _resolve(config)
  cpu_s = config.cpu_s if config.cpu_s is not None else int(math.ceil(config.timeout_s)) + 1
  root = tempfile.mkdtemp(prefix="rlvr_sandbox_")
  try:
    work = os.path.join(root, "work")
    os.mkdir(work, 0o700)
    # The harness reads these before dropping privileges and deletes them before the program
    # starts; they live outside the working directory.
    prog_path = os.path.join(root, "program.py")
    with open(prog_path, "w", encoding="utf-8", errors="replace") as f:
      f.write(program)
    test_path = nonce_path = result_path = ""
    nonce = b""
    if test is not None:
      test_path = os.path.join(root, "test.py")
      with open(test_path, "w", encoding="utf-8", errors="replace") as f:
        f.write(test)
      nonce = secrets.token_hex(16).encode()
      nonce_path = os.path.join(root, "nonce")
      with open(nonce_path, "wb") as f:
        f.write(nonce)
      result_path = os.path.join(root, "result")
      open(result_path, "wb").close()
    if drop:
      os.chmod(root, 0o711)
      os.chown(work, _NOBODY, _NOBODY)
    in_path = os.path.join(root, "stdin")
    with open(in_path, "w", encoding="utf-8", errors="replace") as f:
      f.write(stdin)
    out_path, err_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": work,
        "TMPDIR": work,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    argv = [python, "-I", "-c", _HARNESS, work, prog_path, test_path, nonce_path, result_path,
            str(cpu_s), str(config.memory_mb << 20), str(config.max_output_bytes),
            str(config.max_processes), str(config.max_open_files),
            str(_NOBODY if drop else -1), "1" if prefix else "0"]
    if prefix:
      argv = list(prefix) + argv
    timed_out = False
    start = time.monotonic()
    with open(in_path, "rb") as fin, open(out_path, "wb") as fout, open(err_path, "wb") as ferr:
      proc = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, cwd=work, env=env,
                              start_new_session=True, close_fds=True)
      try:
        proc.wait(timeout=config.timeout_s)
      except subprocess.TimeoutExpired:
        timed_out = True
      # Always: the group may hold children that outlived the main process.
      _kill_group(proc.pid)
      proc.wait()
    wall = time.monotonic() - start
    rc = proc.returncode
    if prefix and rc > _EXIT_SIGNAL_BASE:
      rc = -(rc - _EXIT_SIGNAL_BASE)
    stdout = _read_capped(out_path, config.max_output_bytes)
    stderr = _read_capped(err_path, config.max_output_bytes)
    completed = False
    if result_path:
      with open(result_path, "rb") as f:
        completed = f.read() == nonce
    if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL):
      status = "timeout"
    elif rc == -signal.SIGXFSZ or "File too large" in stderr[-2000:]:
      status = "output_limit"
    elif rc == 0:
      status = "ok"
    elif rc == _EXIT_COMPILE_ERROR:
      status = "compile_error"
    elif rc == _EXIT_MEMORY_ERROR:
      status = "memory_error"
    elif rc == _EXIT_VIOLATION:
      status = "violation"
    elif rc < 0:
      status = "killed"
    else:
      status = "runtime_error"
    return ExecResult(status=status, returncode=rc, stdout=stdout, stderr=stderr, wall_s=wall,
                      tests_completed=completed and status == "ok")
  finally:
    shutil.rmtree(root, ignore_errors=True)
