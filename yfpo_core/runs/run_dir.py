"""The run folder: one class, :class:`RunDir`, owns its file names, reading, writing, checkpoints, label and row.

A run directory holds everything needed to understand and continue a run::

    config.json         the YFPOConfig (written first)
    neuron_set.json     the set the Train page trained with (the CLI points at the user's own file instead)
    pairs.jsonl         the training pairs
    units.json          the units the neuron reward used (after the random-set control, if any)
    metrics.jsonl       one complete JSON line per step (flushed and fsynced), step 0 = before training
    checkpoints/step-N/ trainable.safetensors, optimizer.safetensors, state.json (atomic: temp dir + rename)
    status.json         preparing / running / finished / stopped / failed, with the error message
    summary.json        final metrics (when finished or stopped)
    eval_final.json     per-problem held-out rows of the last evaluation (ranking, probe margin per pair)
    .lock               held (flock) by the one process writing the run; see :mod:`yfpo_core.runs.lock`

Only this package names those files: the CLI and the app read and write a run through :class:`RunDir`
(``tests/test_architecture.py`` checks it), so the format has one owner. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yfpo_core.atomic import atomic_dir, atomic_write_text
from yfpo_core.errors import YfpoError
from yfpo_core.jsonio import parse_json
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig

if TYPE_CHECKING:  # pragma: no cover
    from yfpo_core.models.base import LoadedModel
    from yfpo_core.runs.inputs import RunInputs

RUNS_DIR_ENV = "YFPO_RUNS_DIR"
CONFIG_FILE = "config.json"
NEURON_SET_FILE = "neuron_set.json"
PAIRS_FILE = "pairs.jsonl"
UNITS_FILE = "units.json"
METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
SUMMARY_FILE = "summary.json"
EVAL_ROWS_FILE = "eval_final.json"  # per-problem held-out rows of the last evaluation
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_STATE = "state.json"
TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
# The summary row's metrics (Runs page table), newest value of each.
SUMMARY_METRICS = (M.EVAL_RANKING_ACCURACY, M.REWARDS_ACCURACIES, M.REWARDS_MARGINS, M.NEURON_MARGIN)


def default_runs_dir() -> Path:
    """Where new runs go and where ``runs list`` and the Runs page look (:func:`yfpo_core.paths.runs_dir`)."""
    from yfpo_core.paths import runs_dir

    return runs_dir()


def new_run_dir(name: str = "", root: Path | None = None) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = (root or default_runs_dir()) / (f"{stamp}-{name}" if name else stamp)
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    path.mkdir(parents=True)
    return path


def run_slug(config: YFPOConfig) -> str:
    """The word a new run folder's name ends with: ``dpo`` or ``yfpo``."""
    return "dpo" if config.is_dpo else "yfpo"


def objective_label(config: Mapping[str, Any]) -> str:
    """"DPO", or "YFPO lam=<lam>" (with " (random units)" for the random-set control), from a config dict.

    The one place that says what a run optimised: the CLI, the Runs page and the reports all show it."""
    lam = config.get("lam", 0) or 0
    if not lam:
        return "DPO"
    label = f"YFPO lam={lam:g}" if isinstance(lam, int | float) else f"YFPO lam={lam}"
    return label + (" (random units)" if config.get("random_units_seed") is not None else "")


def list_runs(root: Path | None = None) -> list[Path]:
    """Run folders under ``root`` (newest first), including the arms inside experiment folders."""
    root = root or default_runs_dir()
    found = [p for pattern in ("*", "*/*") for p in root.glob(pattern) if (p / CONFIG_FILE).exists()]
    return sorted(found, key=lambda p: (p.parent.name if p.parent != root else p.name, p.name), reverse=True)


def _atomic_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))


class RunDir:
    """One run folder: its paths, what it says (config, metrics, status, summary, units), and its writes.

    Readers never raise on a damaged file (a run killed mid-write is still listed): they return what can be
    read. Writes are atomic; metric lines are appended under a lock, flushed and fsynced.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def neuron_set_path(self) -> Path:
        return self.path / NEURON_SET_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    # -- reading ------------------------------------------------------------------------------------
    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON object file of the run, or ``{}`` when it is missing or damaged."""
        try:
            data = json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def config_dict(self) -> dict[str, Any]:
        return self.read_json(CONFIG_FILE)

    def units_doc(self) -> dict[str, Any]:
        return self.read_json(UNITS_FILE)

    def summary(self) -> dict[str, Any]:
        return self.read_json(SUMMARY_FILE)

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete line of ``metrics.jsonl`` (a torn last line from a kill is ignored)."""
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
        return rows

    def metrics_version(self) -> int:
        """The metrics file's modification time (ns), 0 when absent: a cache key that changes as it grows."""
        return self.metrics_path.stat().st_mtime_ns if self.metrics_path.exists() else 0

    def status(self) -> dict[str, Any]:
        try:
            status = json.loads((self.path / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return {"state": "unknown"}
        return status if isinstance(status, dict) else {"state": "unknown"}

    def state(self) -> str:
        """The state to show for a run: ``status.json``'s, except that a run that says it is preparing or
        running while no process holds its lock was killed outright: ``interrupted``."""
        from yfpo_core.runs.lock import is_locked

        state = str(self.status().get("state"))
        if state in ("preparing", "running") and not is_locked(self.path):
            return "interrupted"
        return state

    def config(self) -> YFPOConfig:
        """The :class:`YFPOConfig` of an existing run directory, or a :class:`YfpoError` saying what is wrong
        with the directory (missing, a file, never started, a damaged ``config.json``)."""
        run_dir = self.path
        if not run_dir.exists():
            raise YfpoError(f"{run_dir}: no such run directory; give a folder made by yfpo train (yfpo runs list "
                            "shows them)")
        if not run_dir.is_dir():
            raise YfpoError(f"{run_dir} is a file, not a run directory; give the folder made by yfpo train")
        path = run_dir / CONFIG_FILE
        if not path.is_file():
            raise YfpoError(f"{run_dir} has no {CONFIG_FILE}, so no run was started there; start one with "
                            f"yfpo train --out-dir {run_dir}")
        try:
            data = parse_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSON errors are ValueErrors
            raise YfpoError(f"{path} cannot be read ({type(exc).__name__}: {exc}); it is damaged: restore it from "
                            "a copy or start a new run") from None
        try:
            return YFPOConfig.from_dict(data)
        except YfpoError as exc:
            raise YfpoError(f"{path}: {exc}") from None

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints (those with their ``state.json``), oldest first."""
        folder = self.path / CHECKPOINTS_DIR
        return sorted(p for p in folder.glob("step-*") if (p / CHECKPOINT_STATE).exists()) if folder.exists() else []

    def latest_checkpoint(self) -> Path | None:
        done = self.checkpoints()
        return done[-1] if done else None

    # -- what a list of runs shows --------------------------------------------------------------------
    def label(self) -> str:
        """``<folder>: <objective>`` for legends and tables; a damaged run is still listed, by name."""
        config = self.config_dict()
        if not config:
            return f"{self.path.name}: (unreadable {CONFIG_FILE})"
        return f"{self.path.name}: {objective_label(config)}"

    def summary_row(self, name: str, metrics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The Runs page's row: state, objective, steps done of planned, model, set size, newest metrics
        (``metrics``: the rows when the caller has them cached)."""
        config = self.config_dict()
        rows = self.metrics() if metrics is None else metrics
        latest = {k: v for r in rows for k, v in r.items()}
        # A DPO run has no units in its objective: the set it records is only measured (eval/neuron_margin),
        # so its row says so instead of a count that reads as "trained on 32 units".
        trained_on_units = bool(config.get("lam") or config.get("target_share"))
        units = str(len(self.units_doc().get("units", []))) if trained_on_units else "none (DPO)"
        row = {"run": name, "state": self.status().get("state", "unknown"), "objective": objective_label(config),
               "steps": f"{rows[-1].get(M.STEP, 0) if rows else 0}/{config.get('steps', '?')}",
               "model": config.get("model", "?"), "units": units}
        for metric in SUMMARY_METRICS:
            row[metric] = latest.get(metric)
        return row

    # -- writing ------------------------------------------------------------------------------------
    def write_config(self, config: YFPOConfig) -> None:
        _atomic_json(self.path / CONFIG_FILE, config.to_dict())

    def write_inputs(self, config: YFPOConfig, inputs: RunInputs) -> None:
        self.write_config(config)
        self.write_pairs(inputs)
        self.write_units(inputs)

    def repair_inputs(self, inputs: RunInputs) -> list[str]:
        """On resume: rewrite ``pairs.jsonl`` and ``units.json`` where a kill during preparation left them
        missing or torn (they are deterministic functions of the config). Returns the files rewritten."""
        from yfpo_core.training.pairs_io import load_pairs

        rewritten = []
        try:
            load_pairs(self.path / PAIRS_FILE)
        except YfpoError:
            self.write_pairs(inputs)
            rewritten.append(PAIRS_FILE)
        try:
            units = json.loads((self.path / UNITS_FILE).read_text(encoding="utf-8"))
            if not isinstance(units, dict) or not isinstance(units.get("units"), list):
                raise ValueError("no units list")
        except (OSError, ValueError):
            self.write_units(inputs)
            rewritten.append(UNITS_FILE)
        return rewritten

    def write_pairs(self, inputs: RunInputs) -> None:
        lines = [json.dumps(p.to_dict()) for p in inputs.pairs]
        atomic_write_text(self.path / PAIRS_FILE, "\n".join(lines) + "\n")

    def write_units(self, inputs: RunInputs) -> None:
        _atomic_json(self.path / UNITS_FILE, {
            "units": [u.label for u in inputs.units], "scores": inputs.scores,
            "eval_problem_ids": [p.id for p in inputs.eval_problems],
            "exact_problem_ids": [p.id for p in inputs.exact_problems],
            "model_fingerprint": inputs.base.fingerprint,
            "saes": {sae_id: loaded.neuron_set_entry() for sae_id, loaded in inputs.saes.items()}})

    def write_directions(self, trainer: Any) -> None:
        """Add the readout the neuron term used (per-unit sign, statistics) to ``units.json``."""
        path = self.path / UNITS_FILE
        data = json.loads(path.read_text()) if path.exists() else {}
        readout = trainer.readout
        data["readout"] = {
            "units": [u.label for u in trainer.layout.units], "signs": readout.signs.tolist(),
            "sign_source": trainer.config.sign, "pooling": readout.pooling, "standardize": readout.standardize,
            "mean": readout.mean.tolist(), "std": readout.std.tolist(),
            "direction_gradient": trainer.direction_gradient.tolist() if trainer.direction_gradient is not None
            else None}
        _atomic_json(path, data)

    def append_metrics(self, metrics: dict[str, Any]) -> None:
        line = json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()})
        with self.lock, self.metrics_path.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def set_status(self, state: str, **extra: Any) -> None:
        _atomic_json(self.path / STATUS_FILE, {"state": state, "time": time.time(), **extra})

    def write_summary(self, summary: dict[str, Any]) -> None:
        _atomic_json(self.path / SUMMARY_FILE, summary)

    def write_eval_rows(self, step: int, rows: dict[str, Any]) -> None:
        _atomic_json(self.path / EVAL_ROWS_FILE, {"step": step, **rows})

    def checkpoint(self, trainer: Any, step: int) -> Path:
        """Write ``checkpoints/step-N`` atomically; refuse (NonFiniteLossError) to write non-finite weights or
        optimizer state, so every checkpoint on disk is one a run can continue from."""
        from safetensors.torch import save_file

        from yfpo_core.training.guard import non_finite_names
        from yfpo_core.training.trainer import NonFiniteLossError

        trainable = trainer.trainable_state()
        tensors, meta = trainer.optimizer_state()
        bad = non_finite_names(trainable) + non_finite_names(tensors)
        if bad:
            raise NonFiniteLossError(f"step {step}: {len(bad)} tensor(s) are non-finite ({', '.join(bad[:3])}); "
                                     "no checkpoint was written for this step")
        final = self.path / CHECKPOINTS_DIR / f"step-{step:06d}"

        def write(tmp: Path) -> None:
            save_file({k: v.contiguous() for k, v in trainable.items()}, str(tmp / TRAINABLE_FILE))
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / OPTIMIZER_FILE))
            _atomic_json(tmp / CHECKPOINT_STATE, {"step": step, "optimizer_meta": meta,
                                                  "trainable": sorted(trainer.trainable_state())})

        atomic_dir(final, write, plain=True)
        return final

    def truncate_metrics(self, step: int) -> None:
        """Keep the metrics lines of steps ``<= step`` (``-1``: none), so a resumed run adds each step once."""
        rows = [r for r in self.metrics() if isinstance(r, dict) and isinstance(r.get(M.STEP), int)
                and r[M.STEP] <= step]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_text(self.metrics_path, text)


# The functions of the public API (``yf.read_metrics(run)``) and of the CLI, by path.
def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete line of ``metrics.jsonl`` (a torn last line from a kill is ignored)."""
    return RunDir(run_dir).metrics()


def read_status(run_dir: Path) -> dict[str, Any]:
    return RunDir(run_dir).status()


def run_state(run_dir: Path) -> str:
    """See :meth:`RunDir.state`."""
    return RunDir(run_dir).state()


def read_run_config(run_dir: Path) -> YFPOConfig:
    """See :meth:`RunDir.config`."""
    return RunDir(run_dir).config()


def latest_checkpoint(run_dir: Path) -> Path | None:
    return RunDir(run_dir).latest_checkpoint()


def load_checkpoint(folder: Path) -> tuple[dict, dict, dict, int]:
    """(trainable tensors, optimizer tensors, optimizer metadata, step) of a checkpoint folder."""
    from safetensors.torch import load_file

    from yfpo_core.training.guard import non_finite_names

    try:
        state = json.loads((folder / CHECKPOINT_STATE).read_text())
        trainable, optimizer = (load_file(str(folder / TRAINABLE_FILE)), load_file(str(folder / OPTIMIZER_FILE)))
        step = int(state["step"])
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
        raise YfpoError(f"checkpoint {folder} cannot be read ({type(exc).__name__}: {str(exc)[:120]}); delete that "
                        "folder to resume from the one before it") from None
    bad = non_finite_names(trainable) + non_finite_names(optimizer)
    if bad:
        raise YfpoError(f"checkpoint {folder} holds non-finite values ({', '.join(bad[:3])}); delete that folder "
                        "to resume from the one before it")
    return trainable, optimizer, state.get("optimizer_meta", {}), step


def policy_from_checkpoint(base: LoadedModel, folder: Path) -> LoadedModel:
    """The base model with a checkpoint's trained parameters (a copy; ``base`` is not modified)."""
    import copy

    import torch
    from safetensors.torch import load_file

    with base.lock:  # another thread's hooks must not be copied
        model = copy.deepcopy(base.model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(Path(folder) / TRAINABLE_FILE)).items():
            params[name].copy_(value.to(params[name].device))
    return base.with_model(model, name=f"{base.name}@{Path(folder).parent.parent.name}/{Path(folder).name}")
