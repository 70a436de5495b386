"""RunDir, the one owner of a run folder: what it writes reads back, a damaged run is still listed, and a run's
label and summary row say what it optimised."""

from __future__ import annotations

import pytest

from yfpo_core.runs.reports import compare_runs, metric_series, run_label
from yfpo_core.runs.run_dir import CONFIG_FILE, SUMMARY_METRICS, UNITS_FILE, RunDir, objective_label
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig


def _run(folder, lam: float = 0.5, **config) -> RunDir:
    run = RunDir(folder)
    folder.mkdir(parents=True)
    run.write_config(YFPOConfig(model="toy-arith", lam=lam, neuron_set="set.json" if lam else None, steps=4,
                                **config))
    run.append_metrics({M.STEP: 0, M.EVAL_RANKING_ACCURACY: 0.5})
    run.append_metrics({M.STEP: 1, M.LOSS: 0.6931471805599453, M.REWARDS_MARGINS: 0.125})
    run.append_metrics({M.STEP: 2, M.LOSS: 0.5, M.EVAL_RANKING_ACCURACY: 0.75})
    run.set_status("finished", last_step=2)
    return run


@pytest.mark.parametrize("config, label", [
    ({"lam": 0}, "DPO"),
    ({"lam": 0.5}, "YFPO lam=0.5"),
    ({"lam": 0.1, "random_units_seed": 3}, "YFPO lam=0.1 (random units)"),
])
def test_objective_label(config, label):
    assert objective_label(config) == label


def test_what_a_run_writes_reads_back(tmp_path):
    run = _run(tmp_path / "r1")
    assert run.config().lam == 0.5 and run.config_dict()["steps"] == 4
    rows = run.metrics()
    assert [r[M.STEP] for r in rows] == [0, 1, 2]
    assert rows[1][M.LOSS] == 0.693147  # floats are rounded to 6 places on disk
    assert run.status()["state"] == "finished" and run.status()["last_step"] == 2
    assert run.checkpoints() == [] and run.latest_checkpoint() is None
    run.write_summary({"state": "finished", "seconds": 1.5})
    assert run.summary() == {"state": "finished", "seconds": 1.5}
    run.truncate_metrics(1)
    assert [r[M.STEP] for r in run.metrics()] == [0, 1]


def test_a_torn_last_line_and_a_damaged_config_are_tolerated(tmp_path):
    run = _run(tmp_path / "r2", lam=0.0)
    with run.metrics_path.open("a") as f:
        f.write('{"step": 3, "loss"')  # a kill mid-write
    assert [r[M.STEP] for r in run.metrics()] == [0, 1, 2]
    assert run.label() == "r2: DPO"
    run.file(CONFIG_FILE).write_text("{")
    assert run.label() == f"r2: (unreadable {CONFIG_FILE})" and run.config_dict() == {}
    assert RunDir(tmp_path / "missing").status() == {"state": "unknown"}


def test_summary_row_holds_the_newest_value_of_each_metric(tmp_path):
    run = _run(tmp_path / "r3", lam=0.5, random_units_seed=7)
    row = run.summary_row("r3")
    assert row == {"run": "r3", "state": "finished", "objective": "YFPO lam=0.5 (random units)", "steps": "2/4",
                   "model": "toy-arith", "units": "0", M.EVAL_RANKING_ACCURACY: 0.75, M.REWARDS_ACCURACIES: None,
                   M.REWARDS_MARGINS: 0.125, M.NEURON_MARGIN: None}
    assert list(row)[-len(SUMMARY_METRICS):] == list(SUMMARY_METRICS)
    assert run.summary_row("r3", metrics=[]) ["steps"] == "0/4"  # cached rows, when the caller has them


@pytest.mark.parametrize("lam, units", [(0.5, "3"), (0.0, "none (DPO)")])
def test_summary_row_counts_units_only_when_the_objective_uses_them(tmp_path, lam, units):
    """A DPO run records the set it measures (eval/neuron_margin) but does not train on it: its row must not
    read "units 3" (issue 13)."""
    run = _run(tmp_path / "r4", lam=lam)
    labels = ["blocks.1.mlp.hook_post:3", "blocks.0.mlp.hook_post:5", "blocks.1.mlp.hook_post:7"]
    run.file(UNITS_FILE).write_text('{"units": ["' + '", "'.join(labels) + '"]}')
    assert run.summary_row("r4")["units"] == units


def test_reports_read_runs_through_run_dir(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b", lam=0.0)
    assert run_label(a.path) == "a: YFPO lam=0.5" and run_label(b.path) == "b: DPO"
    assert metric_series(a.metrics(), M.EVAL_RANKING_ACCURACY) == ([0, 2], [0.5, 0.75])
    rows = compare_runs([a.path, b.path], [M.LOSS, M.NEURON_MARGIN])
    assert rows[0] == {"run": "a: YFPO lam=0.5", "state": "finished", "steps": 2, M.LOSS: "0.6931 -> 0.5",
                       M.NEURON_MARGIN: "-"}
    assert rows[1]["run"] == "b: DPO"
