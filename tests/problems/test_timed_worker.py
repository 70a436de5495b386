"""Per-task time limits in a spawned worker (yfpo_core.problems.timed_worker), with fake generators."""

from __future__ import annotations

import time

import pytest

from yfpo_core.problems.timed_worker import WorkerStartError, run_with_time_limit


def test_timed_worker_survives_errors_crashes_and_timeouts(fake_generators):
    statuses = []
    started = time.perf_counter()
    run = run_with_time_limit(fake_generators.variants, [0, 1, 2, 3, 4], time_limit_s=1.0,
                              on_task_done=lambda task, status, detail: statuses.append((task, status)))
    assert time.perf_counter() - started < 30
    assert sorted(run.results) == [0, 4]
    assert run.timed_out == [1]
    assert "RuntimeError: template is broken" in run.failed[2]
    assert "exited with code 3" in run.failed[3]
    assert run.workers_started == 3  # the first, one after the timeout, one after the crash
    assert statuses == [(0, "ok"), (1, "timeout"), (2, "error"), (3, "error"), (4, "ok")]


def test_timed_worker_reports_a_failed_start(fake_generators):
    with pytest.raises(WorkerStartError, match="OSError: no templates here"):
        run_with_time_limit(fake_generators.echo, [1, 2], time_limit_s=5.0,
                            prepare=fake_generators.broken_prepare)
