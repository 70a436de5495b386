"""BackgroundJob: progress, result, errors, cancellation through the core's progress callback (on a tiny
random toy model)."""

from __future__ import annotations

import threading
import time

import pytest

from yfpo_core.attribution import attribute
from yfpo_core.errors import YfpoError
from yfpo_core.jobs import BackgroundJob, JobProgress


# -- BackgroundJob ------------------------------------------------------------------------------------------
def test_job_reports_progress_and_returns_its_result():
    gate = threading.Event()

    def work(progress):
        progress(1, 3, "one")
        gate.wait(5)
        progress(3, 3, "done")
        return 42

    job = BackgroundJob(work, label="demo", key=("a", 1)).start()
    deadline = time.time() + 5
    while job.progress.done < 1 and time.time() < deadline:
        time.sleep(0.01)
    assert job.running and job.progress == JobProgress(1, 3, "one") and job.progress.fraction == pytest.approx(1 / 3)
    gate.set()
    assert job.wait(5)
    assert job.state == "done" and job.succeeded and job.result == 42 and job.error is None
    assert job.snapshot()["fraction"] == 1.0 and job.key == ("a", 1)
    with pytest.raises(RuntimeError):
        job.start()


@pytest.mark.parametrize("exc, state, message", [
    (YfpoError("no such problem set: pick another"), "failed", "no such problem set: pick another"),
    (ValueError("layers [9] out of range"), "failed", "layers [9] out of range"),
    (KeyError("bug"), "failed", "KeyError: 'bug'"),
])
def test_job_errors_become_messages(exc, state, message):
    def work(progress):
        raise exc

    job = BackgroundJob(work).start()
    assert job.wait(5)
    assert job.state == state and job.error == message and job.result is None
    assert (job.traceback is not None) == isinstance(exc, KeyError)  # only bugs keep a traceback


def test_cancel_stops_a_core_function_at_its_next_progress_report(toy, toy_problems):
    """The callback raises inside attribute(): the model lock is released and no hook is left behind."""
    started = threading.Event()

    def work(progress):
        def report(done, total, message=""):
            started.set()
            time.sleep(0.05)
            progress(done, total, message)

        return attribute(toy, toy_problems * 10, "grad_x_act", progress=report)

    job = BackgroundJob(work, label="attribution").start()
    assert started.wait(10)
    job.cancel()
    assert job.wait(10)
    assert job.state == "cancelled" and job.result is None and job.progress.done < 40
    assert toy.lock.acquire(timeout=1)
    toy.lock.release()
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in toy.model.hook_dict.values())


def test_a_job_cancelled_before_it_runs_does_nothing():
    calls = []
    job = BackgroundJob(lambda progress: calls.append(1))
    job.cancel()
    job.start()
    assert job.wait(5) and job.state == "cancelled" and not calls


# -- the worker threads ---------------------------------------------------------------------------------------
def test_jobs_reuse_idle_threads_and_run_side_by_side_on_others():
    """A job after another runs on the same (warm) thread, named after the job; two at once on two threads."""
    def where(progress):
        return threading.get_ident(), threading.current_thread().name

    first = BackgroundJob(where, label="one").start()
    assert first.wait(5) and not first.alive
    time.sleep(0.05)  # the thread goes back to the idle list after the job's last step
    second = BackgroundJob(where, label="two").start()
    assert second.wait(5)
    assert second.result == (first.result[0], "yfpo-job-two") and first.result[1] == "yfpo-job-one"
    gate = threading.Event()
    held = BackgroundJob(lambda progress: gate.wait(5) and threading.get_ident()).start()
    other = BackgroundJob(where).start()
    assert other.wait(5) and held.alive and other.result[0] != threading.get_ident()
    gate.set()
    assert held.wait(5) and held.result != other.result[0]
