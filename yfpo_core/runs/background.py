"""A training run in a background thread, for the app: a BackgroundJob with a stop flag and a metrics snapshot.

It never calls a UI. :func:`resume_run` continues a run from its last checkpoint after a crash or a kill.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yfpo_core.errors import YfpoError, user_message
from yfpo_core.jobs import BackgroundJob
from yfpo_core.models.base import LoadedModel
from yfpo_core.progress import ProgressCallback
from yfpo_core.runs.execute import record_final_status, execute
from yfpo_core.runs.run_dir import RunDir, new_run_dir, read_run_config, run_slug
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig
from yfpo_core.units.neuron_set import NeuronSet


class TrainingRun(BackgroundJob[dict]):
    """A training run in a background thread: a :class:`~yfpo_core.jobs.BackgroundJob` plus a stop flag.

    From the job it has ``start()``, ``wait()``, ``progress`` (steps), ``error`` and ``result`` (the run's
    summary); :meth:`stop` asks it to stop after the current step, with a checkpoint (``cancel()`` means the
    same here: a run is never cut mid-step). Its :attr:`state` speaks the run folder's words
    (``status.json``): ``preparing``, ``running``, ``finished``, ``stopped``, ``failed``.

    The thread trains its own copy of the model; the metrics it produces are kept in memory (for the
    UI, :meth:`snapshot`) and on disk (so closing the tab loses nothing).
    """

    def __init__(self, config: YFPOConfig, run_dir: Path | None = None, base: LoadedModel | None = None,
                 resume: bool = False, neuron_set: NeuronSet | None = None,
                 saes: Mapping[str, Any] | None = None) -> None:
        self.config = config
        # The set config.neuron_set names and its features' SAEs, when the caller holds them (the app): the
        # run takes them as they are instead of reading them back (see resolve_inputs).
        self.given: dict[str, Any] = {"neuron_set": neuron_set, "saes": saes}
        self.run_dir = Path(run_dir) if run_dir else new_run_dir(run_slug(config))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.resume = resume
        self.summary: dict[str, Any] | None = None
        self._metrics: list[dict[str, Any]] = RunDir(self.run_dir).metrics() if resume else []
        self._metrics_lock = threading.Lock()
        self._stop = threading.Event()
        self._phase = "preparing"  # "running" from the first metrics line on
        super().__init__(self._train, label=f"run {self.run_dir.name}", key=str(self.run_dir))

    @property
    def state(self) -> str:
        job = self._state
        if job == "running":
            return self._phase
        if job == "done":
            return self.summary["state"] if self.summary else "finished"
        return "stopped" if job == "cancelled" else job  # pending, failed

    def stop(self) -> None:
        """Ask the run to stop after the current step (it writes a checkpoint and its summary)."""
        self._stop.set()

    def cancel(self) -> None:
        """Stop after the current step (see :meth:`stop`)."""
        self.stop()

    def join(self, timeout: float | None = None) -> None:
        self.wait(timeout)


    def _on_metrics(self, metrics: dict[str, Any]) -> None:
        with self._metrics_lock:
            if self.resume and self._metrics and metrics[M.STEP] <= self._metrics[-1][M.STEP]:
                self._metrics = [m for m in self._metrics if m[M.STEP] < metrics[M.STEP]]
            self._metrics.append(dict(metrics))
            self._phase = "running"

    def _train(self, progress: ProgressCallback) -> dict[str, Any]:
        try:
            self.summary = execute(self.run_dir, self.config, base=self.base, resume=self.resume,
                                   should_stop=self._stop.is_set, progress=progress, on_metrics=self._on_metrics,
                                   **self.given)
            return self.summary
        except YfpoError:  # execute() wrote status.json, or another writer owns the folder: its status stays
            raise
        except Exception as exc:  # a bug: the run's status records it with its traceback; the job keeps it too
            error = user_message(exc) or f"{type(exc).__name__}: {exc}"
            record_final_status(RunDir(self.run_dir), "failed", error=error, traceback=traceback.format_exc())
            raise
        finally:
            self.base = None  # the run holds no model once it has ended
            self.given = {}

    def snapshot(self) -> dict[str, Any]:
        """A copy of the metrics so far and the progress, safe to read from another thread. ``activity`` is
        the latest progress report (done, total, message): a phase of the preparation, an evaluation within
        the run, or an empty message right after a step."""
        with self._metrics_lock:
            metrics = [dict(m) for m in self._metrics]
        step = metrics[-1][M.STEP] if metrics else 0
        elapsed = time.time() - self.started_at if self.started_at else 0.0
        train_rows = [m for m in metrics if m[M.STEP] > 0]
        eta = None
        if train_rows and step < self.config.steps:
            per_step = train_rows[-1].get(M.ELAPSED_S, elapsed) / max(len(train_rows), 1)
            eta = per_step * (self.config.steps - step)
        p = self.progress
        return {"state": self.state, "error": self.error, "step": step, "steps": self.config.steps,
                "metrics": metrics, "eta_s": eta, "run_dir": str(self.run_dir), "elapsed_s": elapsed,
                "activity": {"done": p.done, "total": p.total, "message": p.message, "fraction": p.fraction}}


def resume_run(run_dir: Path, base: LoadedModel | None = None) -> TrainingRun:
    """A :class:`TrainingRun` that continues ``run_dir`` from its last checkpoint."""
    return TrainingRun(read_run_config(run_dir), run_dir, base=base, resume=True)
