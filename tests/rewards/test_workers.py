"""Tests for rlvr_jax.rewards.workers: ordering, hard timeouts, crash recovery, threads.

Items use standard-library functions (time.sleep, os.getpid, os._exit, int, ctypes.string_at) so
that the worker processes can unpickle them without importing this test module.
"""

import ctypes
import operator
import os
import threading
import time

import pytest

from rlvr_jax.rewards.workers import Outcome, WorkerPool

# Allowance for process start-up and the kill on a loaded 2-core CI machine.
_SLACK_S = 3.0


@pytest.fixture(scope="module")
def pool():
  with WorkerPool(num_workers=2, timeout_s=1.0) as p:
    p.map(os.getpid, [(), ()])  # Start both workers once for the module.
    yield p


def test_results_in_order(pool):
  outcomes = pool.map(operator.add, [(i, 10 * i) for i in range(7)])
  assert [o.value for o in outcomes] == [11 * i for i in range(7)]
  assert all(o.error is None and not o.timed_out for o in outcomes)


def test_empty_items(pool):
  assert pool.map(operator.add, []) == []


def test_sleeping_item_times_out_while_others_finish(pool):
  start = time.monotonic()
  outcomes = pool.map(time.sleep, [(0.01,), (60.0,), (0.01,), (0.01,)])
  elapsed = time.monotonic() - start
  assert outcomes[1].timed_out and outcomes[1].value is None and "timeout" in outcomes[1].error
  for i in (0, 2, 3):
    assert outcomes[i] == Outcome(value=None, error=None, timed_out=False)
  assert elapsed < 1.0 + _SLACK_S


def test_per_call_timeout_override(pool):
  start = time.monotonic()
  (outcome,) = pool.map(time.sleep, [(60.0,)], timeout_s=0.2)
  assert outcome.timed_out
  assert time.monotonic() - start < 0.2 + _SLACK_S


def test_exception_is_an_error_outcome(pool):
  bad, good = pool.map(int, [("not a number",), ("42",)])
  assert bad.value is None and not bad.timed_out and bad.error.startswith("ValueError")
  assert good == Outcome(value=42, error=None, timed_out=False)


@pytest.mark.parametrize("crash", [(os._exit, (3,)), (ctypes.string_at, (0,))],
                         ids=["os_exit", "segfault"])
def test_crashing_worker_is_replaced(crash):
  fn, args = crash
  with WorkerPool(num_workers=1, timeout_s=5.0) as p:
    (before,) = p.map(os.getpid, [()])
    (crashed,) = p.map(fn, [args])
    assert crashed.value is None and not crashed.timed_out
    assert "worker died" in crashed.error
    after, value = p.map(os.getpid, [()]) + p.map(operator.mul, [(6, 7)])
  assert after.error is None and after.value != before.value  # A fresh process.
  assert value.value == 42
  assert before.value != os.getpid()  # Never ran in the parent.


def test_timed_out_worker_is_killed_and_replaced():
  with WorkerPool(num_workers=1, timeout_s=0.5) as p:
    (before,) = p.map(os.getpid, [()])
    (stuck,) = p.map(time.sleep, [(60.0,)])
    (after,) = p.map(os.getpid, [()])
  assert stuck.timed_out
  assert after.value != before.value
  # The stuck process is gone (killed and reaped), not left sleeping.
  with pytest.raises(ProcessLookupError):
    os.kill(before.value, 0)


def test_memory_limit_turns_a_memory_bomb_into_an_error():
  with WorkerPool(num_workers=1, timeout_s=10.0, max_memory_mb=512) as p:
    bomb, after = p.map(bytearray, [(8 * 2**30,), (16,)])
  assert bomb.value is None and not bomb.timed_out and bomb.error.startswith("MemoryError")
  assert after.value == bytearray(16) and after.error is None  # The pool goes on.


def test_unpicklable_function_is_an_error_outcome(pool):
  (outcome,) = pool.map(lambda x: x, [(1,)])
  assert outcome.value is None and "pickle" in outcome.error


def test_concurrent_maps_from_threads(pool):
  results = {}

  def run(k):
    results[k] = [o.value for o in pool.map(operator.mul, [(k, j) for j in range(5)])]

  threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert results == {k: [k * j for j in range(5)] for k in range(4)}


def test_map_after_close_raises():
  p = WorkerPool(num_workers=1, timeout_s=1.0)
  p.close()
  p.close()  # Idempotent.
  with pytest.raises(RuntimeError):
    p.map(os.getpid, [()])


def test_invalid_arguments():
  with pytest.raises(ValueError):
    WorkerPool(num_workers=0, timeout_s=1.0)
  with pytest.raises(ValueError):
    WorkerPool(num_workers=1, timeout_s=0.0)
