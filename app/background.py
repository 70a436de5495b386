"""Background jobs in the UI: start one, show its progress live, show its error, hand back its result.

Long work (attribution, ablation, unit profiles, checkpoint comparisons) runs in a
:class:`yfpo_core.jobs.BackgroundJob` thread, never in the script thread, so the page stays responsive.
The run that starts a job waits for it up to :data:`GRACE_S` (a short job's result is drawn in that run);
after that, :func:`show` draws its progress bar in an ``st.fragment(run_every=2)`` that refreshes only
itself (and spends half of each tick waiting for the job's end, so that the end is seen at once); when the
job finishes the fragment reruns the whole page once, which then draws the result, with a "done in N s"
line.
Jobs live in the tab's session state by name (one job per name: starting a new one cancels the old).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import streamlit as st

from app import state
from yfpo_core.jobs import BackgroundJob
from yfpo_core.progress import ProgressCallback

# How long the script run that starts a job waits for it: long enough for a small model's jobs (toy-arith's
# attribution and ablation take 0.1-1 s), short enough that a long job's progress bar appears at once.
GRACE_S = 0.5
STREAM_EVERY_S = 0.25  # how often a job's partial result (a streamed answer) is redrawn
# How often a running job's progress bar is redrawn, and how much of each tick waits for the job's end (no
# CPU; an end then is drawn at once, a later one at the next tick). Why every two seconds, not one: each
# redraw is a script run in the server and a re-render in the browser (about 40 + 50 ms of CPU, measured
# with a bare progress fragment), taken from the job's two torch threads on this two-core machine; at one
# redraw a second the app's locate ran at 1.17-1.25x the API's time.
STATUS_EVERY_S = 2.0
FINISH_WAIT_S = 1.0
JUST_FINISHED = "jobs_just_finished"  # session-state key: {job name: job taken but not yet reported as done}


def get(name: str) -> BackgroundJob | None:
    return state.jobs().get(name)


def start(name: str, fn: Callable[[ProgressCallback], Any], *, label: str, key: Hashable = None,
          grace_s: float = GRACE_S) -> BackgroundJob:
    """Start ``fn(progress)`` as job ``name`` (cancelling a job of that name still running), and wait up to
    ``grace_s`` for it: a short job then ends within this script run, which draws its result at once
    (no progress bar flashing for a moment, no poll a second later, no second run of the whole page)."""
    old = get(name)
    if old is not None and old.running:
        old.cancel()
    job = BackgroundJob(fn, label=label, key=key).start()
    state.jobs()[name] = job
    if grace_s > 0:
        job.wait(grace_s)
    return job


def clear(name: str) -> None:
    state.jobs().pop(name, None)


def _just_finished() -> dict[str, BackgroundJob]:
    """Jobs handed over by :func:`take` whose "done in N s" line :func:`show` has not drawn yet."""
    return st.session_state.setdefault(JUST_FINISHED, {})


def take(name: str) -> BackgroundJob | None:
    """The job ``name`` if it has finished successfully, removed from the session (its result is then the
    caller's to keep); ``None`` otherwise (still running, failed, cancelled, or none). The next
    :func:`show` of ``name`` says once how long it took."""
    job = get(name)
    if job is not None and job.succeeded:
        clear(name)
        _just_finished()[name] = job
        return job
    return None


def _live_body(name: str, detail: Callable[[], None] | None) -> None:
    job = get(name)
    if job is not None and job.running and detail is None:
        # Spend part of each tick waiting for the end (no CPU): a job that ends then is drawn at once rather
        # than at the next tick; a click meanwhile waits at most this long.
        job.wait(FINISH_WAIT_S)
    if job is None or job.finished:
        st.rerun()  # the whole page: it now draws the result (or the error)
        return
    p = job.progress
    text = f"{job.label} — {p.message or 'starting'}"
    if p.total:
        text += f" ({p.done}/{p.total})"
    text += f" · {job.elapsed_s:.0f} s"
    cols = st.columns([6, 1])
    cols[0].progress(p.fraction, text=text)
    if cols[1].button("Cancel", key=f"cancel_{name}", help="Stops after the current step"):
        job.cancel()
    if detail is not None:
        detail()


@st.fragment(run_every=STATUS_EVERY_S)
def _live(name: str, detail: Callable[[], None] | None = None) -> None:
    _live_body(name, detail)


@st.fragment(run_every=STREAM_EVERY_S)
def _live_stream(name: str, detail: Callable[[], None] | None = None) -> None:
    _live_body(name, detail)


def show(name: str, key: Hashable = None, detail: Callable[[], None] | None = None) -> BackgroundJob | None:
    """Draw job ``name``'s status (live progress while it runs; its error after a failure).

    With ``key``, a job started for other inputs counts as absent. ``detail`` draws what the job has made so
    far under its progress bar (streamed text), redrawn every :data:`STREAM_EVERY_S` while it runs. Returns
    the job, or ``None``.
    """
    job = get(name)
    finished = _just_finished().pop(name, None)
    if job is None and finished is not None and (key is None or finished.key == key):
        seconds = finished.elapsed_s
        st.caption(f":material/check: {finished.label} · done in {seconds:.2f} s" if seconds < 10 else
                   f":material/check: {finished.label} · done in {seconds:.0f} s")
    if job is None or (key is not None and job.key != key):
        return None
    if job.running:
        (_live if detail is None else _live_stream)(name, detail)
    elif job.state == "failed":
        st.error(job.error or "failed")
        if job.traceback:
            with st.expander("Details for a bug report"):
                st.code(job.traceback, language=None)
    elif job.state == "cancelled":
        st.info(f"{job.label}: cancelled.")
    return job


def ensure(name: str, key: Hashable, fn: Callable[[ProgressCallback], Any], *, label: str) -> Any | None:
    """The result of ``fn`` for ``key``: starts the job when no job of that name answers ``key`` (and a
    failed or cancelled one is not retried by itself), shows its status, and returns the result once done."""
    job = get(name)
    if job is None or job.key != key:
        job = start(name, fn, label=label, key=key)
    show(name, key)
    return job.result if job.succeeded else None


def wait_all(timeout: float = 120.0) -> None:
    """Block until every job of this session has finished (tests and scripted runs, never a page)."""
    for job in list(state.jobs().values()):
        job.wait(timeout)
