"""Progress reporting (yfpo_core.progress): one callback shape for the CLI, the app and tests."""

from __future__ import annotations

from yfpo_core.progress import part, phase, report, tqdm_progress


def test_report_calls_the_callback_or_nothing():
    calls = []
    report(lambda done, total, message="": calls.append((done, total, message)), 2, 5, "step")
    report(None, 3, 5)  # no callback: nothing to call, no error
    assert calls == [(2, 5, "step")]


def test_the_tqdm_bar_follows_done_total_and_message(capsys):
    with tqdm_progress("work", unit="item", disable=False) as progress:
        progress(1, 4)
        progress(3, 6, "almost")  # a total that grows is followed
    err = capsys.readouterr().err
    assert "work" in err and "3/6" in err and "almost" in err
    with tqdm_progress("idle") as progress:
        pass  # never called: no bar is drawn
    assert capsys.readouterr().err == ""


def recorder():
    calls = []
    return calls, lambda done, total, message="": calls.append((done, total, message))


def test_phase_reports_its_start_at_once_then_its_own_counts_under_its_name():
    calls, progress = recorder()
    prefix = phase(progress, "frozen prefix", 8)
    assert calls == [(0, 8, "frozen prefix")]  # shown before the first batch is done
    report(prefix, 3, 8)
    report(prefix, 8, 8, "batch 8")
    assert calls[1:] == [(3, 8, "frozen prefix"), (8, 8, "frozen prefix: batch 8")]


def test_phases_nest_and_a_missing_callback_stays_missing():
    calls, progress = recorder()
    evaluation = phase(progress, "step-0 evaluation")
    ranking = phase(evaluation, "answer ranking", 4)
    report(ranking, 1, 4)
    assert calls == [(0, 0, "step-0 evaluation"), (0, 4, "step-0 evaluation: answer ranking"),
                     (1, 4, "step-0 evaluation: answer ranking")]
    assert phase(None, "anything", 3) is None and part(None, 0, 3) is None


def test_part_places_its_count_inside_the_jobs_total():
    """The third of 7 conditions of 10 problems each: its units are 21..30 of 70."""
    calls, progress = recorder()
    third = part(progress, 20, 70, "random set 1/5")
    assert calls == [(20, 70, "random set 1/5")]
    third(4, 10, "acc 0.50")
    third(12, 10, "")  # a part never counts past its own size
    assert calls[1:] == [(24, 70, "random set 1/5: acc 0.50"), (30, 70, "random set 1/5")]
