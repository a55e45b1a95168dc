"""The program that runs *inside* every sandbox of :mod:`rlvr_jax.rewards.sandbox`.

Not imported by the parent. ``python -I -S -B -c <_BOOTSTRAP> rlvr_sandbox <fd>`` reads
``marshal.dumps((code, payload))`` from an inherited memfd, where ``code`` is this file compiled
by the parent (or its source, when the sandbox interpreter is another Python version) and
``payload`` a dict of plain data; marshal is used only in this direction, parent to child. It
needs nothing outside the standard library and works with any interpreter >= 3.8. Nothing of the
run lives in the host filesystem under bubblewrap.

Roles:

* ``program``: run the candidate as ``__main__`` with stdin/stdout (stdin/stdout tests, and
  :func:`rlvr_jax.rewards.sandbox.run_python` without a test).
* ``candidate``: run the candidate as module ``solution``, then serve requests from the checker
  over two pipes: call a function, read an attribute, iterate, ... Values go back as plain
  tagged JSON (``encode``); anything that is not plain data stays here and is named by a number.
* ``checker``: a *separate* sandbox, with no candidate code in it. It executes the test source
  with every candidate-defined name replaced by a stub that forwards to the candidate, decodes
  the answers into plain Python values (``decode``: built-in types only, so no ``__eq__`` of the
  candidate's), and writes the verdict to a descriptor the candidate cannot reach.

The candidate controls everything in its own process, this file's code there included; nothing
in it is trusted. The checker trusts only its own process: what comes over the pipe is parsed as
bounded JSON and rebuilt from built-in types.
"""

import os
import sys


def _main():  # pylint: disable=too-many-locals,too-many-statements,too-many-branches
  import resource
  P = globals().pop("_PAYLOAD")
  role = P["role"]

  if P.get("fallback"):
    # Without bubblewrap nothing else kills this process when the caller dies: ask the kernel
    # (the flag survives exec but not a credential change; the parent already switched uid).
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != P["parent_pid"]:
      os._exit(70)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid binary gives privileges back
    if role == "checker":
      # Same uid as concurrent candidates: no ptrace, no /proc/<pid>/{mem,fd,environ} access.
      libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    del libc, ctypes

  work = P["work"]
  os.chdir(work)
  lim = P["limits"]
  for res, val in ((resource.RLIMIT_CPU, lim["cpu_s"]), (resource.RLIMIT_AS, lim["as_bytes"]),
                   (resource.RLIMIT_FSIZE, lim["fsize"]), (resource.RLIMIT_NPROC, lim["nproc"]),
                   (resource.RLIMIT_NOFILE, lim["nofile"]), (resource.RLIMIT_CORE, 0)):
    # CPU: SIGXCPU at the soft limit, SIGKILL one second later at the hard limit.
    try:
      resource.setrlimit(res, (val, val + 1 if res == resource.RLIMIT_CPU else val))
    except (ValueError, OSError):
      # An inherited hard limit lower than ours: keep the lower one.
      soft, hard = resource.getrlimit(res)
      resource.setrlimit(res, (min(val, hard), hard))
  for p in P.get("python_path", ()):
    sys.path.append(p)

  if role == "checker":
    code = []
    P["test_sources"] = P["tests"]
    for i, src in enumerate(P.pop("tests")):
      try:
        code.append(compile(src, "<test %d>" % i, "exec"))
      except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        code.append(e)  # that test fails; the others still run
  else:
    try:
      code = compile(P.pop("program"), "<solution>", "exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
      import traceback
      traceback.print_exc()
      if role == "candidate":
        _send(P["resp_w"], {"id": 0, "exc": ["SyntaxError", "the program does not compile"]})
      sys.stdout.flush()
      os._exit(113)

  import builtins
  if role != "program":
    _json_init()
  if P.get("guard", True):
    _install_guard(P)

  if role == "program":
    _run_program(code)
  elif role == "candidate":
    _run_candidate(P, code, builtins)
  else:
    _run_checker(P, code, builtins)


# ----------------------------------------------------------------------------- the guard

def _install_guard(P):
  """Audit hook and function replacements: defence in depth, never the boundary.

  Under bubblewrap the kernel enforces the boundary (read-only view, namespaces, no
  capabilities); in the fallback an unprivileged uid does, where the host allows. The guard
  turns the common escape attempts into a clean ``violation`` and closes what the kernel leaves
  open to an unprivileged user in the fallback (world-writable directories, same-uid processes).
  """
  import _posixsubprocess
  work = os.path.realpath(P["work"]) + os.sep
  fallback = bool(P.get("fallback"))
  max_files = int(P["limits"]["max_files"])
  self_proc = ("/proc/self/", "/proc/thread-self/", "/proc/%d/" % os.getpid())
  created = [0]

  class SandboxViolation(PermissionError):
    pass

  blocked = frozenset((
      "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
      "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
      "socket.__new__", "socket.bind", "socket.connect", "socket.getaddrinfo", "socket.sendto",
      "socket.sendmsg", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata",
      "ctypes.call_function", "ctypes.addressof", "ctypes.string_at", "ctypes.wstring_at",
      "resource.setrlimit", "resource.prlimit", "gc.get_objects", "gc.get_referrers",
      "gc.get_referents", "os.symlink", "os.link", "os.setxattr", "os.removexattr",
      "webbrowser.open", "fcntl.ioctl", "os.chroot"))
  path_events = frozenset(("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod",
                           "os.chown", "os.truncate", "os.utime", "shutil.rmtree", "os.chflags",
                           "os.lchflags", "os.lchmod", "os.lchown"))
  # C modules that write files without an audit event of their own, and modules that would
  # hand out fresh copies of the functions replaced below.
  no_import = {"posix", "nt", "_posixsubprocess", "readline", "_signal", "_curses",
               "_curses_panel", "_dbm", "_gdbm", "_tkinter"}
  if fallback:
    # Without a private mount namespace the uid may still write to world-writable directories
    # (/tmp, /dev/shm): these create files there from C, with no audit event.
    no_import.update(("_sqlite3", "_posixshmem", "_multiprocessing", "_ssl"))
  write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

  def inside(path):
    try:
      p = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
      return False
    return (p + os.sep).startswith(work)

  def count_creation():
    created[0] += 1
    if created[0] > max_files:
      raise SandboxViolation("sandbox: more than %d files or directories created" % max_files)

  def audit(event, args):
    if event in blocked:
      raise SandboxViolation("sandbox: %s is not allowed" % event)
    if event == "open":
      path, mode, flags = args
      if isinstance(path, int):
        return
      writes = (any(c in mode for c in "wax+") if isinstance(mode, str)
                else bool((flags or 0) & write_flags))
      if writes:
        if not inside(path):
          raise SandboxViolation("sandbox: writing outside the working directory")
        count_creation()
        return
      # A directory descriptor would let dir_fd-relative calls, which the audit events report
      # only by their relative path, write anywhere.
      if not inside(path) and os.path.isdir(path):
        raise SandboxViolation("sandbox: opening directories outside the working directory")
      p = os.path.abspath(os.fsdecode(path))
      if (p.startswith("/proc/") and p.split("/")[2].isdigit()
          and not p.startswith(self_proc)):
        raise SandboxViolation("sandbox: reading other processes is not allowed")
    elif event in path_events:
      for a in args[:2]:
        if isinstance(a, int) and event in ("os.chmod", "os.chown", "os.utime"):
          # fchmod/fchown on a descriptor: the path check cannot see where it points.
          raise SandboxViolation("sandbox: %s on a file descriptor is not allowed" % event)
        if isinstance(a, (str, bytes, os.PathLike)) and not inside(a):
          raise SandboxViolation("sandbox: %s outside the working directory" % event)
      if event == "os.mkdir":
        count_creation()
    elif event == "sqlite3.connect":
      db = args[0]
      in_memory = db in (":memory:", b":memory:", "")
      if not (in_memory or (inside(db) and not str(db).startswith("file:"))):
        raise SandboxViolation("sandbox: sqlite3 outside the working directory")
    elif event == "import" and args[0] in no_import:
      raise SandboxViolation("sandbox: importing %s is not allowed" % args[0])

  def denied(name):
    def f(*args, **kwargs):
      raise SandboxViolation("sandbox: %s is not allowed" % name)
    return f

  def make_node(orig, name):
    def f(path, *args, **kwargs):
      if kwargs.get("dir_fd") is not None or not inside(path):
        raise SandboxViolation("sandbox: %s outside the working directory" % name)
      count_creation()
      return orig(path, *args, **kwargs)
    return f

  # _posixsubprocess.fork_exec, mkfifo/mknod, pidfd_* raise no audit event: replace them in the
  # cached module objects (re-importing fresh copies is blocked above).
  import posix
  import _signal  # ``signal`` copies its functions from here when the program imports it
  import _imp
  _posixsubprocess.fork_exec = denied("fork_exec")
  for mod in (os, posix):
    for name in ("mkfifo", "mknod"):
      if hasattr(mod, name):
        setattr(mod, name, make_node(getattr(mod, name), "os." + name))
    # memfd_create: memory outside RLIMIT_AS and outside the scratch quota.
    for name in ("pidfd_open", "fork", "forkpty", "setsid", "setns", "unshare",
                 "memfd_create"):
      if hasattr(mod, name):
        setattr(mod, name, denied("os." + name))
  for mod in (_signal,) + ((sys.modules["signal"],) if "signal" in sys.modules else ()):
    for name in ("pidfd_send_signal", "pthread_kill", "sigqueue"):
      if hasattr(mod, name):
        setattr(mod, name, denied("signal." + name))

  # A fresh copy of a built-in or extension module (importlib.util.module_from_spec) raises no
  # "import" event and would bring back the original functions.
  def guarded_create(orig):
    def f(spec, *args):
      if getattr(spec, "name", None) in no_import:
        raise SandboxViolation("sandbox: importing %s is not allowed" % spec.name)
      return orig(spec, *args)
    return f

  _imp.create_builtin = guarded_create(_imp.create_builtin)
  _imp.create_dynamic = guarded_create(_imp.create_dynamic)
  sys.addaudithook(audit)


# ----------------------------------------------------------------------------- roles

def _run_program(code):
  g = {"__name__": "__main__", "__builtins__": __builtins__}
  status = 0
  try:
    exec(code, g)  # pylint: disable=exec-used
  except SystemExit:
    raise
  except MemoryError:
    status = 114
  except BaseException as e:  # pylint: disable=broad-except
    import traceback
    traceback.print_exc()
    status = 115 if type(e).__name__ == "SandboxViolation" else 1
  sys.stdout.flush()
  sys.exit(status)


_JSON = {}


def _json_init():
  """JSON through the C accelerator ``_json`` directly: importing the ``json`` package costs
  more than the rest of the harness (it pulls in ``re`` and ``enum``)."""
  inf = float("inf")
  constants = {"-Infinity": -inf, "Infinity": inf, "NaN": float("nan")}
  try:
    import _json

    class Ctx:
      strict = True
      object_hook = None
      object_pairs_hook = None
      parse_float = float
      parse_int = int
      parse_constant = constants.__getitem__
      memo = {}

    scanner = _json.make_scanner(Ctx())
    encoder = _json.make_encoder(None, _json_unencodable, _json.encode_basestring_ascii, None,
                                 ":", ",", False, False, True)

    def loads(text):
      value, end = scanner(text, 0)
      if text[end:].strip():
        raise ValueError("extra data")
      return value

    def dumps(obj):
      return "".join(encoder(obj, 0))
  except (ImportError, AttributeError, TypeError):
    import json
    loads = json.loads

    def dumps(obj):
      return json.dumps(obj, separators=(",", ":"))
  _JSON["loads"], _JSON["dumps"] = loads, dumps


def _json_unencodable(o):
  raise TypeError("not JSON data: %s" % type(o).__name__)


def _loads(data):
  text = data.decode("utf-8") if isinstance(data, bytes) else data
  try:
    return _JSON["loads"](text)
  except StopIteration:  # the C scanner's way of saying "no value here"
    raise ValueError("no JSON value")


def _send(fd, obj):
  if not _JSON:
    _json_init()
  data = (_JSON["dumps"](obj) + "\n").encode("utf-8", "surrogatepass")
  view = memoryview(data)
  while view:
    n = os.write(fd, view)
    view = view[n:]


class _LineReader:
  """Newline-delimited messages from a pipe, each at most ``cap`` bytes."""

  def __init__(self, fd, cap):
    self.fd, self.cap, self.buf = fd, cap, b""

  def read(self):
    while b"\n" not in self.buf:
      if len(self.buf) > self.cap:
        raise _ProtocolError("message longer than %d bytes" % self.cap)
      chunk = os.read(self.fd, 1 << 16)
      if not chunk:
        raise EOFError
      self.buf += chunk
    line, self.buf = self.buf.split(b"\n", 1)
    if len(line) > self.cap:
      raise _ProtocolError("message longer than %d bytes" % self.cap)
    return line


class _ProtocolError(Exception):
  pass


# Values that cross between the two processes: JSON, with one-key objects as type tags.
#   None/bool/int/float/str -> JSON (NaN/Infinity allowed); list -> JSON list
#   {"$t": [..]} tuple  {"$s": [..]} set  {"$fs": [..]} frozenset  {"$d": [[k, v], ..]} dict
#   {"$b": hex} bytes  {"$ba": hex} bytearray  {"$c": [re, im]} complex  {"$i": hex} huge int
#   {"$q": [num, den]} Fraction  {"$dec": str} Decimal  {"$dq": [..]} deque
#   {"$range": [start, stop, step]}  {"$r": n} an object that stays in the candidate
#   {"$mod": name} a module  {"$fn": [module, qualname]} an importable function or class
_MAX_DEPTH = 100


_PLAIN = (int, float, complex, str, bytes, bytearray, list, tuple, frozenset, set, dict)


def _encode(v, ref, depth=0, keep=None):
  """Plain tagged JSON for ``v``. Runs in the candidate (values) and in the checker (arguments).

  ``ref(v)`` may claim ``v`` first (a module, an importable or program-defined function or
  class, a remote object); ``ref(v, True)`` names what is not plain data. With ``keep``, an
  instance of a *subclass* of a plain type (a namedtuple, a ``Counter``, an ``IntEnum``) also
  keeps a handle, ``{"$sub": [plain value, handle]}``: equality uses the plain value, other
  attributes forward to the candidate.
  """
  if depth > _MAX_DEPTH:
    raise ValueError("nesting deeper than %d" % _MAX_DEPTH)
  t = type(v)
  if v is None or t is bool or t is str or t is float:
    return v
  if t is int:
    return v if v.bit_length() < 4000 else {"$i": hex(v)}
  rid = ref(v)
  if rid is not None:
    return rid
  if keep is not None and t not in _PLAIN and isinstance(v, _PLAIN):
    return {"$sub": [_encode_plain(v, ref, depth, keep), keep(v)]}
  return _encode_plain(v, ref, depth, keep)


def _encode_plain(v, ref, depth, keep):
  d = depth + 1
  if isinstance(v, int):
    return _encode(int.__index__(v), ref, d)
  if isinstance(v, float):
    return float.__float__(v)
  if isinstance(v, complex):
    return {"$c": [v.real, v.imag]}
  if isinstance(v, str):
    return str.__str__(v)
  if isinstance(v, bytes):
    return {"$b": bytes(v).hex()}
  if isinstance(v, bytearray):
    return {"$ba": bytes(v).hex()}
  if isinstance(v, list):
    return [_encode(x, ref, d, keep) for x in list.__iter__(v)]
  if isinstance(v, tuple):
    return {"$t": [_encode(x, ref, d, keep) for x in tuple.__iter__(v)]}
  if isinstance(v, frozenset):
    return {"$fs": [_encode(x, ref, d, keep) for x in v]}
  if isinstance(v, set):
    return {"$s": [_encode(x, ref, d, keep) for x in v]}
  if isinstance(v, dict):
    return {"$d": [[_encode(k, ref, d, keep), _encode(x, ref, d, keep)] for k, x in dict.items(v)]}
  if isinstance(v, range):
    return {"$range": [v.start, v.stop, v.step]}
  # No value can be of a type whose module was never imported: no import here.
  mods = sys.modules
  if "collections" in mods and isinstance(v, mods["collections"].deque):
    return {"$dq": [_encode(x, ref, d, keep) for x in v]}
  if "fractions" in mods and isinstance(v, mods["fractions"].Fraction):
    return {"$q": [_encode(v.numerator, ref, d), _encode(v.denominator, ref, d)]}
  if "decimal" in mods and isinstance(v, mods["decimal"].Decimal):
    return {"$dec": str(v)}
  return ref(v, True)


def _decode(v, remote, depth=0, names=False):  # runs in the checker on untrusted JSON
  """Plain values from tagged JSON; ``$r`` handles become ``remote(n)``. ``$mod``/``$fn`` (names
  the checker imports itself) only with ``names``: in the program's globals, never in answers."""
  if depth > _MAX_DEPTH + 2:
    raise _ProtocolError("nesting too deep")
  t = type(v)
  if v is None or t in (bool, int, float, str):
    return v
  d = depth + 1
  if t is list:
    return [_decode(x, remote, d, names) for x in v]
  if t is not dict or len(v) != 1:
    raise _ProtocolError("malformed value")
  (tag, x), = v.items()
  if tag == "$t":
    return tuple(_decode(y, remote, d, names) for y in _as_list(x))
  if tag == "$s":
    return set(_decode(y, remote, d, names) for y in _as_list(x))
  if tag == "$fs":
    return frozenset(_decode(y, remote, d, names) for y in _as_list(x))
  if tag == "$d":
    out = {}
    for pair in _as_list(x):
      if type(pair) is not list or len(pair) != 2:
        raise _ProtocolError("malformed dict item")
      out[_decode(pair[0], remote, d, names)] = _decode(pair[1], remote, d, names)
    return out
  if tag == "$dq":
    import collections
    return collections.deque(_decode(y, remote, d, names) for y in _as_list(x))
  if tag in ("$b", "$ba"):
    if type(x) is not str:
      raise _ProtocolError("malformed bytes")
    b = bytes.fromhex(x)
    return b if tag == "$b" else bytearray(b)
  if tag == "$i":
    if type(x) is not str:
      raise _ProtocolError("malformed int")
    return int(x, 16)
  if tag == "$c":
    x = _as_list(x)
    if len(x) != 2 or not all(type(y) in (int, float) for y in x):
      raise _ProtocolError("malformed complex")
    return complex(x[0], x[1])
  if tag == "$q":
    x = _as_list(x)
    n, m = (_decode(y, remote, d, names) for y in x) if len(x) == 2 else (None, None)
    if type(n) is not int or type(m) is not int or m == 0:
      raise _ProtocolError("malformed fraction")
    import fractions
    return fractions.Fraction(n, m)
  if tag == "$dec":
    if type(x) is not str or len(x) > 10000:
      raise _ProtocolError("malformed decimal")
    import decimal
    return decimal.Decimal(x)
  if tag == "$range":
    x = _as_list(x)
    if len(x) != 3 or not all(type(y) is int for y in x) or x[2] == 0:
      raise _ProtocolError("malformed range")
    return range(*x)
  if tag == "$r":
    if type(x) is not int:
      raise _ProtocolError("malformed reference")
    return remote(x)
  if tag in ("$mod", "$fn"):
    if not names:
      raise _ProtocolError("a name where only a value may stand")
    return _resolve_name(tag, x)
  if tag == "$sub":
    x = _as_list(x)
    if len(x) != 2:
      raise _ProtocolError("malformed subclass value")
    base = _decode(x[0], remote, d, names)
    handle = _decode(x[1], remote, d, names)
    cls = _WRAPPERS.get(type(base))
    if cls is None or type(handle) is not _Remote:
      raise _ProtocolError("malformed subclass value")
    obj = cls(base)
    obj.__dict__["_remote"] = handle
    return obj
  raise _ProtocolError("unknown tag %r" % tag[:20])


def _used_as_attribute_base(src, name):
  """Whether ``name.`` occurs in ``src`` as a whole word (no ``re``: it is slow to import)."""
  start = 0
  ident = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_."
  while True:
    i = src.find(name, start)
    if i < 0:
      return False
    j = i + len(name)
    start = i + 1
    if i > 0 and src[i - 1] in ident:
      continue
    while j < len(src) and src[j] in " \t":
      j += 1
    if j < len(src) and src[j] == ".":
      return True


def _as_list(x):
  if type(x) is not list:
    raise _ProtocolError("malformed container")
  return x


def _public_dotted(name):
  parts = name.split(".") if type(name) is str and len(name) < 200 else [""]
  return all(p.isidentifier() and not p.startswith("_") for p in parts)


def _resolve_name(tag, x):
  """A public module, class or function, imported here by name (never the candidate's copy).

  Never an instance (``unittest.mock.ANY`` equals everything) and nothing private
  (``unittest.mock._ANY``): a name the program imported can only mean what importing it in the
  program would have meant, so it answers nothing the program could not have answered itself.
  """
  import importlib
  import types
  if tag == "$mod":
    if not _public_dotted(x):
      raise _ProtocolError("malformed module name")
    return importlib.import_module(x)
  if (type(x) is not list or len(x) != 2 or not all(_public_dotted(y) for y in x)):
    raise _ProtocolError("malformed name")
  obj = importlib.import_module(x[0])
  for part in x[1].split("."):
    obj = getattr(obj, part)
  if not isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                          types.MethodDescriptorType, types.ClassMethodDescriptorType)):
    raise _ProtocolError("a name that is not a class or a function")
  return obj


def _importable_name(v):
  """``[module, qualname]`` when ``v`` is reachable by import outside the program, else None."""
  mod_name = getattr(v, "__module__", None)
  qual = getattr(v, "__qualname__", None)
  if type(mod_name) is not str or type(qual) is not str or mod_name in ("solution", "__main__"):
    return None
  mod = sys.modules.get(mod_name)
  if mod is None or "<" in qual:
    return None
  obj = mod
  try:
    for part in qual.split("."):
      obj = getattr(obj, part)
  except AttributeError:
    return None
  return [mod_name, qual] if obj is v else None


def _run_candidate(P, code, builtins):  # pylint: disable=too-many-statements
  types = sys.modules.get("types") or __import__("types")
  req = _LineReader(P["req_r"], 1 << 30)
  resp_w = P["resp_w"]
  objs = {}
  counter = [0]

  def keep(v):
    counter[0] += 1
    objs[counter[0]] = v
    return {"$r": counter[0]}

  def ref(v, force=False):
    # Answers: plain data by value (None here), everything else stays here as a handle.
    if force or isinstance(v, (types.ModuleType, type, types.FunctionType,
                               types.BuiltinFunctionType)):
      return keep(v)
    return None

  def ref_name(v, force=False):
    # The program's globals: what it imported is named, so the checker imports its own copy.
    if isinstance(v, types.ModuleType):
      name = getattr(v, "__name__", None)
      if _public_dotted(name):
        return {"$mod": name}
    elif isinstance(v, (type, types.FunctionType, types.BuiltinFunctionType)):
      name = _importable_name(v)
      if name is not None and all(_public_dotted(n) for n in name):
        return {"$fn": name}
    return ref(v, force)

  def enc(v, naming=False):
    r = ref_name if naming else ref
    try:
      return _encode(v, r, 0, keep)
    except (ValueError, RecursionError, TypeError):
      return keep(v)

  g = {"__name__": "solution", "__builtins__": builtins}
  import_error = None
  try:
    exec(code, g)  # pylint: disable=exec-used
  except SystemExit:
    pass  # A program may exit at the end of its script; the tests still run.
  except BaseException as e:  # pylint: disable=broad-except
    import traceback
    traceback.print_exc()
    import_error = e
  sys.stdout.flush()
  if import_error is not None:
    _send(resp_w, {"id": 0, "exc": [type(import_error).__name__, str(import_error)[:500]]})
    os._exit(115 if type(import_error).__name__ == "SandboxViolation" else 1)
  names = {}
  for k, v in list(g.items()):
    if type(k) is str and not (k.startswith("__") and k.endswith("__")):
      names[k] = enc(v, naming=True)
  _send(resp_w, {"id": 0, "globals": names})

  def args_state(args, kwargs):
    # After a call, the arguments' new contents, so the checker can mirror in-place changes.
    out = []
    for a in list(args) + list(kwargs.values()):
      out.append(enc(a) if isinstance(a, (list, dict, set, bytearray)) else None)
    return out

  def dec(v):
    return _decode(v, lambda n: objs[n])

  while True:
    try:
      line = req.read()
    except EOFError:
      break
    msg = _loads(line)
    mid = msg.get("id")
    mut = None
    try:
      op = msg["op"]
      target = objs[msg["ref"]]
      if op == "call":
        args = [dec(a) for a in msg.get("args", [])]
        kwargs = {k: dec(a) for k, a in msg.get("kwargs", {}).items()}
        value = target(*args, **kwargs)
        mut = args_state(args, kwargs)
      elif op == "getattr":
        value = getattr(target, msg["name"])
      elif op == "getitem":
        value = target[dec(msg["key"])]
      elif op == "len":
        value = len(target)
      elif op == "iter":
        value = iter(target)
      elif op == "next":
        value = next(target)
      elif op == "bool":
        value = bool(target)
      elif op == "contains":
        value = dec(msg["item"]) in target
      elif op == "repr":
        value = repr(target)
      elif op == "str":
        value = str(target)
      else:
        raise ValueError("unknown op")
      out = {"id": mid, "ok": enc(value)}
      if mut is not None:
        out["mut"] = mut
    except BaseException as e:  # pylint: disable=broad-except
      if isinstance(e, (SystemExit, KeyboardInterrupt)):
        os._exit(1)
      out = {"id": mid, "exc": [type(e).__name__, str(e)[:500]]}
    sys.stdout.flush()
    _send(resp_w, out)
  os._exit(0)


class _Remote:
  """An object that lives in the candidate. Equality is identity: the candidate's ``__eq__``
  never decides a comparison here."""

  __slots__ = ("_rid", "_rpc")

  def __init__(self, rid, rpc):
    object.__setattr__(self, "_rid", rid)
    object.__setattr__(self, "_rpc", rpc)

  def __call__(self, *args, **kwargs):
    return self._rpc("call", self, args=args, kwargs=kwargs)

  def __getattr__(self, name):
    if name.startswith("__") and name.endswith("__"):
      raise AttributeError(name)
    return self._rpc("getattr", self, name=name)

  def __getitem__(self, key):
    return self._rpc("getitem", self, key=key)

  def __len__(self):
    n = self._rpc("len", self)
    if type(n) is not int or n < 0:
      raise TypeError("len() of a remote object is not a non-negative int")
    return n

  def __iter__(self):
    it = self._rpc("iter", self)
    if type(it) is not _Remote:
      return iter(it)
    return _RemoteIterator(it)

  def __bool__(self):
    return self._rpc("bool", self) is True

  def __contains__(self, item):
    return self._rpc("contains", self, item=item) is True

  def __repr__(self):
    r = self._rpc("repr", self)
    return r if type(r) is str else "<candidate object>"

  def __str__(self):
    r = self._rpc("str", self)
    return r if type(r) is str else "<candidate object>"

  def __eq__(self, other):
    return type(other) is _Remote and other._rid == self._rid

  def __ne__(self, other):
    return not self.__eq__(other)

  def __hash__(self):
    return hash(("remote", self._rid))

  def __deepcopy__(self, memo):
    return self

  def __copy__(self):
    return self


class _RemoteIterator:

  def __init__(self, remote):
    self._remote = remote

  def __iter__(self):
    return self

  def __next__(self):
    return self._remote._rpc("next", self._remote)


def _wrapper(base):
  """A subclass of a plain type whose extra attributes live in the candidate."""

  def __getattr__(self, name):
    if name.startswith("__") and name.endswith("__"):
      raise AttributeError(name)
    remote = object.__getattribute__(self, "__dict__").get("_remote")
    if remote is None:
      raise AttributeError(name)
    return getattr(remote, name)

  return type("Candidate" + base.__name__.capitalize(), (base,), {"__getattr__": __getattr__})


_WRAPPERS = {b: _wrapper(b) for b in _PLAIN if b is not bool}


_EXC_OK = ("ArithmeticError", "AssertionError", "AttributeError", "BufferError", "EOFError",
           "FloatingPointError", "ImportError", "IndexError", "KeyError", "LookupError",
           "MemoryError", "ModuleNotFoundError", "NameError", "NotImplementedError", "OSError",
           "OverflowError", "RecursionError", "ReferenceError", "RuntimeError", "SyntaxError",
           "TypeError", "UnboundLocalError", "UnicodeError", "ValueError", "ZeroDivisionError",
           "Exception", "PermissionError", "FileNotFoundError", "TimeoutError")


class CandidateError(Exception):
  """An exception raised in the candidate whose type is not a plain built-in one."""


class _CandidateGone(BaseException):
  pass


def _write_verdict(P, i, passed, status, error=""):
  """One line per test on a pipe only the parent reads: the parent restarts its per-test clock
  at each line."""
  if not _JSON:
    _json_init()
  line = _JSON["dumps"]({"i": i, "passed": bool(passed), "status": status,
                         "error": error[:2000]}) + "\n"
  data = line.encode("utf-8", "replace")
  while data:
    data = data[os.write(P["verdict_w"], data):]


def _run_checker(P, code, builtins):  # pylint: disable=too-many-statements
  resp = _LineReader(P["resp_r"], P["max_message_bytes"])
  req_w = P["req_w"]
  seq = [0]
  violation = [False]
  broken = [None]  # set once the channel failed: then the verdict fails, whatever the test did

  def rpc(op, target, args=(), kwargs=None, **fields):
    seq[0] += 1
    msg = {"id": seq[0], "op": op, "ref": target._rid}
    sent = []
    if op == "call":
      sent = list(args) + list((kwargs or {}).values())
      msg["args"] = [enc(a) for a in args]
      msg["kwargs"] = {str(k): enc(a) for k, a in (kwargs or {}).items()}
    for k, v in fields.items():
      msg[k] = v if k == "name" else enc(v)
    if broken[0] is not None:
      raise broken[0]()
    try:
      _send(req_w, msg)
      line = resp.read()
    except (EOFError, OSError):
      broken[0] = _CandidateGone
      raise _CandidateGone()
    except _ProtocolError:
      broken[0] = _ProtocolError
      raise
    try:
      out = _loads(line)
    except (ValueError, RecursionError):
      broken[0] = _ProtocolError
      raise _ProtocolError("malformed message")
    if type(out) is not dict or out.get("id") != seq[0]:
      broken[0] = _ProtocolError
      raise _ProtocolError("out-of-order or malformed response")
    if "exc" in out:
      exc = out["exc"]
      if type(exc) is not list or len(exc) != 2 or not all(type(x) is str for x in exc):
        raise _ProtocolError("malformed exception")
      name, text = exc[0][:100], exc[1][:500]
      if name == "SandboxViolation":
        violation[0] = True
      if name == "StopIteration" and op == "next":
        raise StopIteration
      if name in _EXC_OK:
        raise getattr(builtins, name)(text)
      raise CandidateError("%s: %s" % (name, text))
    if "ok" not in out:
      raise _ProtocolError("response without a value")
    try:
      value = dec(out["ok"])
    except (_ProtocolError, ValueError, TypeError, RecursionError, ImportError, AttributeError):
      broken[0] = _ProtocolError
      raise _ProtocolError("malformed value")
    mut = out.get("mut")
    if op == "call" and type(mut) is list and len(mut) == len(sent):
      for orig, new in zip(sent, mut):
        if new is None or type(orig) not in (list, dict, set, bytearray):
          continue
        new = dec(new)
        if type(new) is not type(orig):
          continue
        if type(orig) is list or type(orig) is bytearray:
          orig[:] = new
        else:
          orig.clear()
          orig.update(new)
    return value

  remotes = {}

  def remote(rid):
    r = remotes.get(rid)
    if r is None:
      r = remotes[rid] = _Remote(rid, rpc)
    return r

  def dec(v, names=False):
    return _decode(v, remote, 0, names)

  def ref(v, force=False):
    if type(v) is _Remote:
      return {"$r": v._rid}
    if force:
      raise TypeError("a %s cannot be passed to the candidate" % type(v).__name__)
    return None

  def enc(v):
    return _encode(v, ref)

  n_tests = len(code)

  def fail_all(status, error):
    for i in range(n_tests):
      _write_verdict(P, i, False, status, error)
    os._exit(0)

  try:
    first = _loads(resp.read())
  except (EOFError, OSError, ValueError, RecursionError, _ProtocolError):
    fail_all("candidate_gone", "the candidate did not start")
  if type(first) is not dict or first.get("id") != 0:
    fail_all("protocol_error", "malformed first message")
  if "exc" in first:
    exc = first["exc"] if type(first["exc"]) is list and first["exc"] else ["?"]
    status = {"SandboxViolation": "violation", "SyntaxError": "compile_error"}.get(
        exc[0], "runtime_error")
    fail_all(status, "the program raised %s at import" % str(exc[0])[:100])
  globs = first.get("globals")
  if type(globs) is not dict:
    fail_all("protocol_error", "malformed globals")
  # The program is imported: a later timeout is a test's, not the import's.
  data = (_JSON["dumps"]({"i": -1, "ready": True}) + "\n").encode()
  os.write(P["verdict_w"], data)

  import importlib
  import importlib.util
  sources = P["test_sources"]

  def module_named(name):
    """The real module ``name`` when a test uses ``name.<attr>`` and such a module exists
    here: a program's ``class math`` must not answer the test's ``math.isclose``."""
    if not any(_used_as_attribute_base(src, name) for src in sources):
      return None
    try:
      if importlib.util.find_spec(name) is None:
        return None
      return importlib.import_module(name)
    except Exception:  # pylint: disable=broad-except
      return None

  def usable(name):
    # Never a built-in the test relies on (``sorted``, ``abs``), never a dunder
    # (``__builtins__`` would replace them all).
    return (type(name) is str and name.isidentifier() and not name.startswith("__")
            and not hasattr(builtins, name))

  modules = {}
  for name in globs:
    if usable(name):
      mod = module_named(name)
      if mod is not None:
        modules[name] = mod

  def namespace():
    ns = {"__name__": "__main__", "__builtins__": builtins}
    for name, v in globs.items():
      if not usable(name):
        continue
      if name in modules:
        ns[name] = modules[name]
        continue
      try:
        ns[name] = dec(v, names=True)  # afresh for every test: a test may mutate plain data
      except Exception:  # pylint: disable=broad-except
        continue  # e.g. a module that does not exist here: the test cannot have needed it.
    solution = type(sys)("solution")
    solution.__dict__.update({k: v for k, v in ns.items()
                              if k not in ("__name__", "__builtins__")})
    sys.modules["solution"] = solution  # for tests that say `from solution import f`
    return ns

  for i, test_code in enumerate(code):
    if isinstance(test_code, BaseException):
      _write_verdict(P, i, False, "test_error", "the test does not compile: %s" % test_code)
      continue
    violation[0] = False
    try:
      exec(test_code, namespace())  # pylint: disable=exec-used
      if broken[0] is not None:
        raise broken[0]("the test swallowed a failure of the channel")
    except _CandidateGone:
      _write_verdict(P, i, False, "candidate_gone", "the candidate stopped answering")
      os._exit(0)  # the parent runs the remaining tests against a fresh candidate
    except AssertionError as e:
      _write_verdict(P, i, False, "violation" if violation[0] else "wrong_answer",
                     "AssertionError: %s" % str(e)[:500])
    except _ProtocolError as e:
      _write_verdict(P, i, False, "protocol_error", str(e))
      os._exit(0)
    except BaseException as e:  # pylint: disable=broad-except
      _write_verdict(P, i, False, "violation" if violation[0] else "runtime_error",
                     "%s: %s" % (type(e).__name__, str(e)[:500]))
    else:
      _write_verdict(P, i, True, "ok")
  os._exit(0)


# The parent's bootstrap runs this file as ``__sandbox__``; importing it does nothing.
if __name__ == "__sandbox__":
  _main()
