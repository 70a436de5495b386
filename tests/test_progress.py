"""Progress reporting (yfpo_core.progress): one callback shape for the CLI, the app and tests."""

from __future__ import annotations

from yfpo_core.progress import report, tqdm_progress


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
