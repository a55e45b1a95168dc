"""A small process pool with a hard per-item timeout that really kills stuck work.

Verifiers parse and simplify untrusted model output; a single pathological completion can make
sympy run for minutes or exhaust memory, and a buggy C extension can segfault. ``signal.alarm``
does not help (it only works on the main thread and cannot interrupt C code), and the
``concurrent.futures`` pools cannot cancel a running task. :class:`WorkerPool` therefore runs each
item in a long-lived worker *process* and, when an item overruns its timeout, kills that process
(``SIGKILL``) and starts a fresh one. A crash (an exception, a segfault, ``os._exit``) costs only
the item that caused it.

Usage::

  with WorkerPool(num_workers=4, timeout_s=5.0) as pool:
    outcomes = pool.map(my_module.check, [(completion, gold), ...])
  rewards = [float(o.value) if o.error is None else 0.0 for o in outcomes]

``fn`` must be picklable by reference (a module-level function) and so must the items and the
return values. ``map`` may be called from any thread, also concurrently; the calls share the pool's
workers.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import pickle
import queue
import threading
import time
import traceback
import warnings
import weakref
from typing import Any, Callable, List, Optional, Sequence

# How long a worker may take to unpickle a task (which imports the function's module in a fresh
# worker) before the item's own timeout starts. Importing sympy takes ~1 s on a slow machine; this
# bound only guards against an import that never finishes.
_DEFAULT_STARTUP_TIMEOUT_S = 60.0
_STARTED = "started"


@dataclasses.dataclass(frozen=True)
class Outcome:
  """The result of one item.

  Attributes:
    value: what ``fn`` returned; ``None`` when it raised, crashed or timed out.
    error: ``None`` on success; otherwise a one-line description (the exception, the worker's exit
      code, or the timeout).
    timed_out: True when the item ran past the timeout and its worker was killed.
  """

  value: Any
  error: Optional[str]
  timed_out: bool


def _worker_main(conn: multiprocessing.connection.Connection,
                 max_memory_bytes: Optional[int]) -> None:
  """Worker loop: receive a pickled ``(fn, args)``, acknowledge, run it, send the outcome."""
  if max_memory_bytes:
    # An address-space cap turns a runaway allocation into a MemoryError in this worker (an error
    # outcome) instead of swapping or an OOM kill of the host.
    import resource  # pylint: disable=import-outside-toplevel  (POSIX only)
    resource.setrlimit(resource.RLIMIT_AS, (max_memory_bytes, max_memory_bytes))
  while True:
    try:
      payload = conn.recv_bytes()
    except (EOFError, OSError):
      return
    if not payload:  # An empty message asks the worker to exit.
      return
    try:
      fn, args = pickle.loads(payload)
    except BaseException as e:  # pylint: disable=broad-except
      conn.send((None, f"could not unpickle the task: {type(e).__name__}: {e}"))
      continue
    conn.send(_STARTED)
    try:
      value = fn(*args)
      result = (value, None)
    except BaseException as e:  # pylint: disable=broad-except
      # Keep the last frame: enough to locate a verifier bug without shipping whole tracebacks.
      where = traceback.extract_tb(e.__traceback__)[-1:]
      loc = f" at {where[0].filename}:{where[0].lineno}" if where else ""
      result = (None, f"{type(e).__name__}: {e}{loc}")
    try:
      conn.send(result)
    except Exception as e:  # pylint: disable=broad-except
      # The value itself may not pickle; report that instead of dying.
      conn.send((None, f"could not send the result: {type(e).__name__}: {e}"))


def warn_if_all_failed(outcomes: Sequence[Outcome], what: str) -> None:
  """Warns (``RuntimeWarning``) when every outcome is an error.

  Then the cause is rarely the items: either a timeout too short for any item, or workers that
  cannot run the function at all, e.g. one defined in a script read from stdin, ``python -c`` or a
  notebook, which worker processes cannot import by name.
  """
  if not outcomes or any(o.error is None for o in outcomes):
    return
  if all(o.timed_out for o in outcomes):
    hint = "Every item hit its timeout: is the timeout too short?"
  else:
    hint = ("Workers cannot start when the calling program's __main__ is not an importable file "
            "(a script read from stdin, python -c), nor run a function defined in __main__ "
            "(e.g. in a notebook): run from a file, define the function in a module, or compute "
            "in-process.")
  warnings.warn(f"every {what} failed in the worker processes (first error: "
                f"{outcomes[0].error}). {hint}", RuntimeWarning, stacklevel=3)


class _Worker:
  """One worker process and the parent's end of its pipe."""

  def __init__(self, ctx: multiprocessing.context.BaseContext, max_memory_bytes: Optional[int]):
    self.conn, child_conn = ctx.Pipe(duplex=True)
    self.process = ctx.Process(target=_worker_main, args=(child_conn, max_memory_bytes),
                               daemon=True)
    self.process.start()
    child_conn.close()

  def alive(self) -> bool:
    return self.process.is_alive()

  def kill(self) -> None:
    """Kills the process (SIGKILL) and reaps it; safe to call twice."""
    try:
      if self.process.is_alive():
        self.process.kill()
      self.process.join(timeout=5.0)
    except (ValueError, AssertionError):  # Already closed or never started.
      pass
    try:
      self.conn.close()
    except OSError:
      pass

  def stop(self) -> None:
    """Asks the worker to exit, then kills it if it does not."""
    try:
      self.conn.send_bytes(b"")
      self.process.join(timeout=1.0)
    except (OSError, ValueError):
      pass
    self.kill()


def _kill_all(workers: List[Optional[_Worker]]) -> None:
  for w in workers:
    if w is not None:
      w.kill()


class WorkerPool:
  """A pool of worker processes with a hard, killing per-item timeout.

  Args:
    num_workers: number of worker processes (>= 1); they start lazily, on first use.
    timeout_s: wall-clock limit per item, measured from the moment the worker has unpickled the
      item. An item past it gets ``Outcome(None, "timeout ...", True)`` and its worker is killed
      and replaced.
    mp_context: the multiprocessing start method. ``"forkserver"`` (default) and ``"spawn"`` are
      safe in a process that runs JAX threads; ``"fork"`` is faster to start but is not.
    startup_timeout_s: limit for a worker to unpickle an item (which imports ``fn``'s module in a
      fresh worker) before the item's own timeout begins.
    max_memory_mb: optional address-space limit per worker (``RLIMIT_AS``, POSIX); an item that
      allocates past it fails with MemoryError (an error outcome) and the worker goes on.
  """

  def __init__(self, num_workers: int, timeout_s: float, mp_context: str = "forkserver",
               startup_timeout_s: float = _DEFAULT_STARTUP_TIMEOUT_S,
               max_memory_mb: Optional[int] = None):
    if num_workers < 1:
      raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if not timeout_s > 0:
      raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    self.num_workers = int(num_workers)
    self.timeout_s = float(timeout_s)
    self.startup_timeout_s = float(startup_timeout_s)
    self._max_memory_bytes = int(max_memory_mb) * 2**20 if max_memory_mb else None
    self._ctx = multiprocessing.get_context(mp_context)
    # Slot i holds worker i, or None until it is (re)started. Idle slot indices wait in the queue;
    # a thread owns a slot, and may touch its worker, only between get() and put().
    self._workers: List[Optional[_Worker]] = [None] * self.num_workers
    self._idle: "queue.Queue[int]" = queue.Queue()
    for i in range(self.num_workers):
      self._idle.put(i)
    self._closed = False
    self._finalizer = weakref.finalize(self, _kill_all, self._workers)

  def __enter__(self) -> "WorkerPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    """Stops all workers. Calls to ``map`` after ``close`` raise."""
    if self._closed:
      return
    self._closed = True
    for i, w in enumerate(self._workers):
      if w is not None:
        w.stop()
        self._workers[i] = None
    self._finalizer.detach()

  def map(self, fn: Callable[..., Any], items: Sequence[tuple],
          timeout_s: Optional[float] = None) -> List[Outcome]:
    """Runs ``fn(*item)`` for every item in the workers; returns the outcomes in item order.

    Args:
      fn: a module-level (picklable) function.
      items: argument tuples.
      timeout_s: overrides the pool's per-item timeout for this call.

    Returns:
      One :class:`Outcome` per item. This never raises for a failing item.
    """
    if self._closed:
      raise RuntimeError("WorkerPool.map called after close()")
    limit = self.timeout_s if timeout_s is None else float(timeout_s)
    items = [tuple(it) for it in items]
    results: List[Optional[Outcome]] = [None] * len(items)
    next_index = iter(range(len(items)))
    index_lock = threading.Lock()

    def run_slot() -> None:
      slot = self._idle.get()
      try:
        while True:
          with index_lock:
            i = next(next_index, None)
          if i is None:
            return
          results[i] = self._run_one(slot, fn, items[i], limit)
      finally:
        self._idle.put(slot)

    n_threads = min(self.num_workers, len(items))
    if n_threads <= 1:
      if items:
        run_slot()
    else:
      threads = [threading.Thread(target=run_slot, daemon=True) for _ in range(n_threads)]
      for t in threads:
        t.start()
      for t in threads:
        t.join()
    return list(results)  # type: ignore[arg-type]

  def _run_one(self, slot: int, fn: Callable[..., Any], args: tuple, limit: float) -> Outcome:
    """Runs one item on the worker in ``slot``, replacing the worker if it dies or overruns."""
    try:
      payload = pickle.dumps((fn, args))
    except Exception as e:  # pylint: disable=broad-except
      return Outcome(None, f"could not pickle the task: {type(e).__name__}: {e}", False)
    worker = self._workers[slot]
    if worker is None or not worker.alive():
      if worker is not None:
        worker.kill()
      worker = self._workers[slot] = _Worker(self._ctx, self._max_memory_bytes)
    try:
      worker.conn.send_bytes(payload)
      # Phase 1: the worker unpickles the task (imports fn's module when fresh) and acknowledges.
      if not worker.conn.poll(self.startup_timeout_s):
        return self._discard(slot, Outcome(
            None, f"worker did not start the item within {self.startup_timeout_s:g} s", True))
      first = worker.conn.recv()
      if first != _STARTED:  # The task could not be unpickled; the worker is still fine.
        value, error = first
        return Outcome(value, error, False)
      # Phase 2: the item itself, under the hard timeout.
      start = time.monotonic()
      if not worker.conn.poll(limit):
        elapsed = time.monotonic() - start
        return self._discard(slot, Outcome(
            None, f"timeout: item ran past {limit:g} s (killed after {elapsed:.2f} s)", True))
      value, error = worker.conn.recv()
      return Outcome(value, error, False)
    except (EOFError, OSError, pickle.UnpicklingError) as e:
      # The worker died mid-item (segfault, os._exit, OOM kill) or sent garbage.
      worker.process.join(timeout=1.0)
      code = worker.process.exitcode
      return self._discard(slot, Outcome(
          None, f"worker died (exit code {code}): {type(e).__name__}", False))

  def _discard(self, slot: int, outcome: Outcome) -> Outcome:
    """Kills the slot's worker; the next item on this slot starts a fresh one."""
    worker = self._workers[slot]
    if worker is not None:
      worker.kill()
    self._workers[slot] = None
    return outcome

