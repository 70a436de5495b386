"""Run a function over a list of tasks in a killable worker process, with a time limit per task.

Why a process: some GSM-Symbolic templates enumerate millions of variable combinations and can run for
minutes inside pure-Python code that cannot be interrupted from another thread. The only reliable way to
bound them is a separate process that we can terminate. We use the ``spawn`` start method so the worker
never inherits the parent's threads or CUDA state (the app runs Streamlit threads and may hold a GPU).

Protocol: the parent starts one worker for all remaining tasks. The worker runs ``prepare()`` once,
sends ``("ready", None, None)``, then for each task sends ``("ok", task, result)`` or
``("error", task, message)``. The parent waits for each task's message at most ``time_limit_s`` seconds
(counted from the previous message, so worker start-up is not charged to the first task). On timeout
it terminates the worker, records the task as timed out and starts a fresh worker for the tasks after
it. A worker that dies mid-task (crash, out of memory) marks that task as failed the same way.

``function`` and ``prepare`` are sent to the worker by pickling, so they must be importable by
reference in a fresh interpreter: module-level functions, or :func:`functools.partial` of them. Tests
swap in a fake slow function this way.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

# How long a fresh worker may take to import its modules and run ``prepare`` before we give up. It is
# generous because a cold start on a busy machine (imports from a network file system) can be slow.
DEFAULT_STARTUP_TIMEOUT_S = 120.0

TaskHook = Callable[[int, str, Any], None]
"""Called in the parent after each task as ``hook(task, status, detail)`` with status ``"ok"`` (detail:
the result), ``"timeout"`` (detail: the limit in seconds) or ``"error"`` (detail: a message)."""


@dataclass
class TimedRunResult:
    """What a :func:`run_with_time_limit` call produced.

    Attributes:
        results: Result of every task that finished in time, by task.
        timed_out: Tasks that exceeded the time limit, in task order.
        failed: Tasks whose function raised (or whose worker died), with a one-line reason.
        workers_started: How many worker processes were started (1 + one per timeout or crash).
    """

    results: dict[int, Any] = field(default_factory=dict)
    timed_out: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    workers_started: int = 0


class WorkerStartError(RuntimeError):
    """The worker process could not start (a bug or a broken environment, not a data problem)."""


def _worker_main(conn: Connection, function: Callable[[int], Any], prepare: Callable[[], None] | None,
                 tasks: list[int]) -> None:
    """Entry point of the worker process: run ``function`` over ``tasks`` and send each outcome."""
    import logging

    # The worker's stderr is the user's terminal; library log noise from generation does not belong there.
    logging.getLogger().setLevel(logging.ERROR)
    try:
        if prepare is not None:
            prepare()
        conn.send(("ready", None, None))
        for task in tasks:
            try:
                result = function(task)
            except Exception as exc:  # reported per task; the next task still runs
                conn.send(("error", task, f"{type(exc).__name__}: {exc}"))
            else:
                conn.send(("ok", task, result))
    except Exception as exc:  # prepare failed: tell the parent rather than dying silently
        conn.send(("fatal", None, f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class _Worker:
    """One worker process and the read end of its pipe."""

    def __init__(self, function: Callable[[int], Any], prepare: Callable[[], None] | None,
                 tasks: list[int]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_worker_main, args=(child_conn, function, prepare, tasks),
                                   name="yfpo-timed-worker", daemon=True)
        self.process.start()
        child_conn.close()  # only the child writes; closing our copy lets us see EOF when it exits

    def receive(self, timeout_s: float) -> tuple[str, Any, Any]:
        """The worker's next message, ``("timeout", ...)`` after ``timeout_s``, or ``("died", ...)``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ("timeout", None, None)
            ready = wait([self.conn, self.process.sentinel], timeout=remaining)
            if self.conn in ready:
                try:
                    return self.conn.recv()
                except EOFError:
                    pass  # the worker exited without sending: fall through to "died"
            if ready:
                self.process.join(timeout=1.0)
                return ("died", None, f"worker process exited with code {self.process.exitcode}")

    def stop(self) -> None:
        """Terminate the worker if it still runs, and release its resources."""
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5.0)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        else:
            self.process.join()
        self.conn.close()
        self.process.close()


def run_with_time_limit(function: Callable[[int], Any], tasks: Sequence[int], time_limit_s: float, *,
                        prepare: Callable[[], None] | None = None, on_task_done: TaskHook | None = None,
                        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S) -> TimedRunResult:
    """Run ``function(task)`` for each task in a worker process, skipping tasks that run too long.

    Args:
        function: Picklable function of one task (module-level, or a ``functools.partial`` of one).
        tasks: Task ids (e.g. template indices), run in this order.
        time_limit_s: Seconds each task may take; a slower task is killed and skipped.
        prepare: Picklable function run once in each new worker before the first task (e.g. loading
            data), so its cost is not charged to a task.
        on_task_done: Called in the parent after each task (for progress reporting).
        startup_timeout_s: Seconds a new worker may take to become ready.

    Returns:
        Results by task, plus the tasks that timed out or failed.

    Raises:
        WorkerStartError: A worker did not start, or ``prepare`` raised in it.
    """
    if time_limit_s <= 0:
        raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
    outcome = TimedRunResult()
    pending = list(tasks)
    while pending:
        worker = _Worker(function, prepare, pending)
        outcome.workers_started += 1
        try:
            kind, _, detail = worker.receive(startup_timeout_s)
            if kind != "ready":
                reason = {"timeout": f"it was not ready after {startup_timeout_s:g} s"}.get(kind, str(detail))
                raise WorkerStartError(
                    f"The problem-generation worker process did not start: {reason}. Its error is printed "
                    "above. If you called this from a script, put the call under "
                    "`if __name__ == \"__main__\":` (the worker is started with multiprocessing's 'spawn' "
                    "method, which imports the main script again)."
                )
            while pending:
                task = pending.pop(0)
                kind, sent_task, detail = worker.receive(time_limit_s)
                restart = False
                if kind == "ok" and sent_task == task:
                    outcome.results[task] = detail
                    status: str = "ok"
                elif kind == "error" and sent_task == task:
                    outcome.failed[task] = str(detail)
                    status = "error"
                elif kind == "timeout":
                    outcome.timed_out.append(task)
                    detail, status, restart = time_limit_s, "timeout", True
                else:  # "died", or a protocol mix-up: blame this task and restart for the rest
                    detail = str(detail) if kind == "died" else f"unexpected message {kind!r} for task {task}"
                    outcome.failed[task] = detail
                    status, restart = "error", True
                if on_task_done is not None:
                    on_task_done(task, status, detail)
                if restart:
                    break  # this worker is stuck or gone: start a new one for the remaining tasks
        finally:
            worker.stop()
    return outcome
