"""Reading finished runs back (yfpo_core.runs.reports): labels, metric series, the comparison table and the
curves figure."""

from __future__ import annotations

from tests.helpers import write_run
from yfpo_core.runs.reports import compare_runs, curves_figure, metric_series, run_label
from yfpo_core.training import metric_names as M


def test_reports_read_runs_through_run_dir(tmp_path):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", lam=0.0)
    assert run_label(a.path) == "a: YFPO lam=0.5" and run_label(b.path) == "b: DPO"
    assert metric_series(a.metrics(), M.EVAL_RANKING_ACCURACY) == ([0, 2], [0.5, 0.75])
    rows = compare_runs([a.path, b.path], [M.LOSS, M.NEURON_MARGIN])
    assert rows[0] == {"run": "a: YFPO lam=0.5", "state": "finished", "steps": 2, M.LOSS: "0.6931 -> 0.5",
                       M.NEURON_MARGIN: "-"}
    assert rows[1]["run"] == "b: DPO"


def test_curves_have_one_panel_per_metric_and_one_line_per_run(tmp_path):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", lam=0.0)
    figure = curves_figure([a.path, b.path], [M.LOSS, M.EVAL_RANKING_ACCURACY])
    # the metrics file keeps 6 decimals: ln 2 = 0.6931471805599453 is recorded as 0.693147
    lines = [(trace.name, trace.yaxis, list(trace.x), list(trace.y)) for trace in figure.data]
    assert lines == [("a: YFPO lam=0.5", "y", [1, 2], [0.693147, 0.5]),
                     ("a: YFPO lam=0.5", "y2", [0, 2], [0.5, 0.75]),
                     ("b: DPO", "y", [1, 2], [0.693147, 0.5]),
                     ("b: DPO", "y2", [0, 2], [0.5, 0.75])]
    assert [t.showlegend for t in figure.data] == [True, False, True, False]  # one legend entry per run
    assert [a.text for a in figure.layout.annotations] == [M.LOSS, M.EVAL_RANKING_ACCURACY]
