"""Long work off the caller's thread: :class:`BackgroundJob` runs a function in a thread and reports.

Why this exists: a Streamlit script must return quickly or the page freezes, yet attribution, ablation
and unit profiles take seconds to minutes on a real model. A job runs ``fn(progress)`` in a daemon thread
(reused from job to job: see :class:`_WorkerPool`) and exposes what a UI needs to poll it once a second:
``progress`` (done, total, message), ``state``,
``result``, ``error`` (a user-facing message) and ``cancel()``. It never imports a UI library; the app
polls it from an ``st.fragment(run_every=1)``, a notebook could simply ``wait()``.

Cancellation is cooperative and needs no change to the core: every long core function already calls its
:class:`~yfpo_core.progress.ProgressCallback` after each unit of work, so the callback handed to ``fn``
raises :class:`JobCancelled` once ``cancel()`` was called. The exception unwinds through the core's
``with model.lock`` and hook contexts, which therefore release the model and remove their hooks.

Errors: a :class:`~yfpo_core.errors.YfpoError` or ``ValueError`` (the core's bad-input errors) keeps its
message as ``error``; anything else is a bug and also keeps its traceback in ``traceback``. The exception
itself stays in ``exception``, so that :meth:`BackgroundJob.outcome` can raise it in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback as tb
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from yfpo_core.errors import YfpoError, clip, printable, user_message
from yfpo_core.progress import ProgressCallback

T = TypeVar("T")
JobState = Literal["pending", "running", "done", "failed", "cancelled"]
FINISHED_STATES: tuple[str, ...] = ("done", "failed", "cancelled")

__all__ = ["BackgroundJob", "JobCancelled", "JobProgress", "FINISHED_STATES"]


class JobCancelled(Exception):
    """Raised inside a job's thread (from its progress callback) after :meth:`BackgroundJob.cancel`."""


@dataclass(frozen=True)
class JobProgress:
    """The last progress report of a job: ``done`` of ``total`` steps, with a short message."""

    done: int = 0
    total: int = 0
    message: str = ""

    @property
    def fraction(self) -> float:
        """Between 0 and 1 (0 while the total is unknown)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total > 0 else 0.0


class _WorkerPool:
    """Daemon threads that run jobs one after another, each waiting for the next job once it is idle (up to
    ``max_idle`` idle threads; the others end).

    Why threads are reused: glibc gives every new thread its own malloc arena, empty at first, so a job on a
    new thread pays page faults for the large tensors it allocates until that arena has grown. Measured on
    SmolLM2: an attribution on a fresh thread took 1.5-2.2x as long as on the main thread, a second one on
    the same thread as long as on the main thread. ``MALLOC_ARENA_MAX=1`` (one arena for all threads) closes
    the gap from the first job on, but only when set before the process starts: ``make app`` sets it."""

    def __init__(self, max_idle: int = 8) -> None:
        self.max_idle = max_idle
        self._idle: list[queue.SimpleQueue] = []
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], None], name: str) -> None:
        """Run ``work()`` (which must not raise) on an idle thread, or on a new one, named ``name``."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put((work, name))

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        while True:
            work, name = inbox.get()
            threading.current_thread().name = name
            try:
                work()
            finally:  # a job's on_finished hook that raised ends this thread (after its traceback is printed)
                threading.current_thread().name = "yfpo-job-idle"
            with self._lock:
                if len(self._idle) >= self.max_idle:
                    return
                self._idle.append(inbox)


_WORKERS = _WorkerPool()


class BackgroundJob(Generic[T]):
    """Run ``fn(progress)`` in a daemon thread; poll it from any thread.

    Args:
        fn: The work. It receives a :class:`ProgressCallback` to pass on to core functions (or call
            itself); that callback raises :class:`JobCancelled` after :meth:`cancel`.
        label: What the job does, for people (``"attribution (grad_x_act, 20 problems)"``).
        key: What the job was started for (its inputs), so a caller can tell whether a finished job
            still answers the current question. Any hashable value.
        on_finished: Called with the job in its thread once it has finished (done, failed or cancelled):
            for an owner that keeps finished jobs in order (the app's model loads).

    Example::

        job = BackgroundJob(lambda progress: attribute(model, problems, progress=progress)).start()
        job.wait()
        result = job.result
    """

    def __init__(self, fn: Callable[[ProgressCallback], T], *, label: str = "", key: Hashable = None,
                 on_finished: Callable[[BackgroundJob[T]], None] | None = None) -> None:
        self.fn = fn
        self.label = label
        self.key = key
        self.on_finished = on_finished
        self._state: JobState = "pending"
        self.result: T | None = None
        self.error: str | None = None
        self.traceback: str | None = None
        self.exception: BaseException | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._progress = JobProgress()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._started = False

    # -- control ------------------------------------------------------------------------------------
    def start(self) -> BackgroundJob[T]:
        """Start the thread (once); returns the job so that ``BackgroundJob(...).start()`` reads well."""
        if self._started:
            raise RuntimeError("this job was already started")
        self._started = True
        self.started_at = time.time()
        self._state = "running"
        _WORKERS.submit(self._work, f"yfpo-job-{self.label or 'work'}")
        return self

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report (it then ends in state ``cancelled``)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished (or ``timeout`` seconds); True when it has finished."""
        return self._done.wait(timeout)

    def outcome(self) -> T:
        """Wait for the job, then return its result or raise its exception here (:class:`JobCancelled` for a
        cancelled job): the job's function called from this thread, in effect."""
        self._done.wait()
        if self.exception is not None:
            raise self.exception
        return self.result  # type: ignore[return-value]

    # -- reading ------------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``pending``, ``running``, ``done``, ``failed`` or ``cancelled`` (a subclass may name its states in
        its own words; :attr:`finished`, :attr:`succeeded` and :attr:`running` always read the job's)."""
        return self._state

    @property
    def progress(self) -> JobProgress:
        with self._lock:
            return self._progress

    @property
    def finished(self) -> bool:
        return self._state in FINISHED_STATES

    @property
    def succeeded(self) -> bool:
        return self._state == "done"

    @property
    def running(self) -> bool:
        return self._state in ("pending", "running")

    @property
    def started(self) -> bool:
        return self._started

    @property
    def alive(self) -> bool:
        """Started and not yet finished (its function, its reports and ``on_finished`` all done)."""
        return self._started and not self._done.is_set()

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at

    def snapshot(self) -> dict[str, Any]:
        """A plain-data view (state, progress, error, elapsed) for display or logging."""
        p = self.progress
        return {"label": self.label, "state": self.state, "done": p.done, "total": p.total, "message": p.message,
                "fraction": p.fraction, "error": self.error, "elapsed_s": round(self.elapsed_s, 2)}

    # -- the thread ----------------------------------------------------------------------------------
    def _report(self, done: int, total: int, message: str = "") -> None:
        with self._lock:
            self._progress = JobProgress(int(done), int(total), str(message))
        if self._cancel.is_set():
            raise JobCancelled()

    def _work(self) -> None:
        try:
            if self._cancel.is_set():
                raise JobCancelled()
            # A cancel after the last report comes too late to stop anything: the result is complete.
            self.result = self.fn(self._report)
            self._state = "done"
        except JobCancelled as exc:
            self.exception = exc
            self._state = "cancelled"
        except (YfpoError, ValueError, OSError, RecursionError, MemoryError) as exc:
            self.exception = exc
            # The same bounded, printable line the CLI prints (errors.user_message); a bare ValueError
            # is the core's bad-input error and is shown the same way.
            self.error = user_message(exc) or clip(printable(" ".join(str(exc).split())))
            self._state = "failed"
            if user_message(exc) is None and not isinstance(exc, ValueError):
                self.traceback = tb.format_exc()
        except Exception as exc:  # noqa: BLE001 - a bug; kept with its traceback for the report
            self.exception = exc
            self.error = f"{type(exc).__name__}: {exc}"
            self.traceback = tb.format_exc()
            self._state = "failed"
        finally:
            self.finished_at = time.time()
            self._done.set()
            if self.on_finished is not None:
                self.on_finished(self)

    def __repr__(self) -> str:
        p = self.progress
        return f"BackgroundJob({self.label!r}, state={self.state}, {p.done}/{p.total})"
