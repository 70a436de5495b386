"""RunDir, the one owner of a run folder: what it writes reads back, a damaged run is still listed, and a run's
label and summary row say what it optimised."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import trainer_config as config, trainer_for, write_run
from yfpo_core.runs import latest_checkpoint
from yfpo_core.runs.run_dir import CONFIG_FILE, SUMMARY_METRICS, UNITS_FILE, RunDir, objective_label
from yfpo_core.training import metric_names as M
from yfpo_core.training.trainer import NonFiniteLossError


@pytest.mark.parametrize("config, label", [
    ({"lam": 0}, "DPO"),
    ({"lam": 0.5}, "YFPO lam=0.5"),
    ({"lam": 0.1, "random_units_seed": 3}, "YFPO lam=0.1 (random units)"),
])
def test_objective_label(config, label):
    assert objective_label(config) == label


def test_what_a_run_writes_reads_back(tmp_path):
    run = write_run(tmp_path / "r1")
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
    run = write_run(tmp_path / "r2", lam=0.0)
    with run.metrics_path.open("a") as f:
        f.write('{"step": 3, "loss"')  # a kill mid-write
    assert [r[M.STEP] for r in run.metrics()] == [0, 1, 2]
    assert run.label() == "r2: DPO"
    run.file(CONFIG_FILE).write_text("{")
    assert run.label() == f"r2: (unreadable {CONFIG_FILE})" and run.config_dict() == {}
    assert RunDir(tmp_path / "missing").status() == {"state": "unknown"}


def test_summary_row_holds_the_newest_value_of_each_metric(tmp_path):
    run = write_run(tmp_path / "r3", lam=0.5, random_units_seed=7)
    row = run.summary_row("r3")
    assert row == {"run": "r3", "state": "finished", "objective": "YFPO lam=0.5 (random units)", "steps": "2/4",
                   "model": "toy-arith", "units": "0", M.EVAL_RANKING_ACCURACY: 0.75, M.REWARDS_ACCURACIES: None,
                   M.REWARDS_MARGINS: 0.125, M.NEURON_MARGIN: None}
    assert list(row)[-len(SUMMARY_METRICS):] == list(SUMMARY_METRICS)
    assert run.summary_row("r3", metrics=[]) ["steps"] == "0/4"  # cached rows, when the caller has them


def test_a_non_finite_checkpoint_is_never_written(setup):
    _, tmp = setup
    trainer = trainer_for(config(tmp))
    with torch.no_grad():
        trainer.params[0][1].data.view(-1)[0] = float("nan")
    run = tmp / "run"
    run.mkdir()
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written"):
        RunDir(run).checkpoint(trainer, 1)
    assert latest_checkpoint(run) is None and not (run / "checkpoints").exists()


@pytest.mark.parametrize("lam, units", [(0.5, "3"), (0.0, "none (DPO)")])
def test_summary_row_counts_units_only_when_the_objective_uses_them(tmp_path, lam, units):
    """A DPO run records the set it measures (eval/neuron_margin) but does not train on it: its row must not
    read "units 3" (issue 13)."""
    run = write_run(tmp_path / "r4", lam=lam)
    labels = ["blocks.1.mlp.hook_post:3", "blocks.0.mlp.hook_post:5", "blocks.1.mlp.hook_post:7"]
    run.file(UNITS_FILE).write_text('{"units": ["' + '", "'.join(labels) + '"]}')
    assert run.summary_row("r4")["units"] == units

