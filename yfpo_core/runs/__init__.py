"""Training runs: the run folder, what a run trains on, running it, in the background, and experiments.

* :mod:`~yfpo_core.runs.run_dir`: :class:`RunDir`, the one owner of a run folder's files (their names,
  reading, writing, checkpoints, the run's label and its summary row);
* :mod:`~yfpo_core.runs.inputs`: :func:`resolve_inputs`, from a config to the model, pairs, held-out problems
  and units;
* :mod:`~yfpo_core.runs.execute`: :func:`execute`, one run synchronously, ending in a known state;
* :mod:`~yfpo_core.runs.background`: :class:`TrainingRun`, a run in a thread for the app, and :func:`resume_run`;
* :mod:`~yfpo_core.runs.lock`, :mod:`~yfpo_core.runs.experiment` and :mod:`~yfpo_core.runs.reports`.

The names below are re-exported for the public API (``yf.read_metrics``), the CLI, the app and notebooks.
"""

from __future__ import annotations

from yfpo_core.runs.background import TrainingRun, resume_run
from yfpo_core.runs.execute import execute
from yfpo_core.runs.inputs import GROWABLE_SOURCES, RunInputs, random_control_units, resolve_inputs
from yfpo_core.runs.run_dir import (
    EVAL_ROWS_FILE,
    RUNS_DIR_ENV,
    RunDir,
    default_runs_dir,
    latest_checkpoint,
    list_runs,
    load_checkpoint,
    new_run_dir,
    objective_label,
    policy_from_checkpoint,
    read_metrics,
    read_run_config,
    read_status,
    run_slug,
    run_state,
)

__all__ = ["EVAL_ROWS_FILE", "GROWABLE_SOURCES", "RUNS_DIR_ENV", "RunDir", "RunInputs", "TrainingRun",
           "default_runs_dir", "execute", "latest_checkpoint", "list_runs", "load_checkpoint",
           "new_run_dir", "objective_label", "policy_from_checkpoint", "random_control_units", "read_metrics",
           "read_run_config", "read_status", "resolve_inputs", "resume_run", "run_slug", "run_state"]
