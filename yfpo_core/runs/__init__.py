"""Training runs on disk, and in a background thread for the app.

A run directory holds everything needed to understand and continue a run::

    config.json         the YFPOConfig (written first)
    pairs.jsonl         the training pairs
    units.json          the units the neuron reward used (after the random-set control, if any)
    metrics.jsonl       one complete JSON line per step (flushed and fsynced), step 0 = before training
    checkpoints/step-N/ trainable.safetensors, optimizer.safetensors, state.json (atomic: temp dir + rename)
    status.json         preparing / running / finished / stopped / failed, with the error message
    summary.json        final metrics (when finished or stopped)
    eval_final.json     per-problem held-out rows of the last evaluation (ranking, probe margin per pair)
    .lock               held (flock) by the one process writing the run; see :mod:`yfpo_core.runs.lock`

Every failure ends in a known state: :func:`execute` writes ``failed`` with the reason for any error, and
``stopped`` on Ctrl-C; a process killed outright leaves ``running`` with no lock holder, which
:func:`run_state` reports as ``interrupted``. Every file is written atomically. ``--resume`` rewrites a
missing or torn ``pairs.jsonl``/``units.json`` and keeps exactly one metrics line per step.

:class:`TrainingRun` runs :func:`yfpo_core.training.trainer.fit` in a thread with start, stop, status, the
captured error and a metrics snapshot; it never calls a UI. :func:`resume_run` continues from the last
checkpoint after a crash or a kill, truncating ``metrics.jsonl`` to that step so the file stays consistent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from yfpo_core.atomic import atomic_write_text, plain_permissions
from yfpo_core.errors import YfpoError, user_message
from yfpo_core.jsonio import parse_json
from yfpo_core.models.base import LoadedModel
from yfpo_core.problems.base import Problem
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.training.config import YFPOConfig
from yfpo_core.units.unit import Unit

RUNS_DIR_ENV = "YFPO_RUNS_DIR"
EVAL_ROWS_FILE = "eval_final.json"  # per-problem held-out rows of the last evaluation


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


def _atomic_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete line of ``metrics.jsonl`` (a torn last line from a kill is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {"state": "unknown"}
    return status if isinstance(status, dict) else {"state": "unknown"}


def run_state(run_dir: Path) -> str:
    """The state to show for a run: ``status.json``'s, except that a run that says it is preparing or
    running while no process holds its lock was killed outright: ``interrupted``."""
    from yfpo_core.runs.lock import is_locked

    state = str(read_status(run_dir).get("state"))
    if state in ("preparing", "running") and not is_locked(run_dir):
        return "interrupted"
    return state


def read_run_config(run_dir: Path) -> YFPOConfig:
    """The :class:`YFPOConfig` of an existing run directory, or a :class:`YfpoError` saying what is wrong
    with the directory (missing, a file, never started, a damaged ``config.json``)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise YfpoError(f"{run_dir}: no such run directory; give a folder made by yfpo train (yfpo runs list "
                        "shows them)")
    if not run_dir.is_dir():
        raise YfpoError(f"{run_dir} is a file, not a run directory; give the folder made by yfpo train")
    path = run_dir / "config.json"
    if not path.is_file():
        raise YfpoError(f"{run_dir} has no config.json, so no run was started there; start one with "
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


def list_runs(root: Path | None = None) -> list[Path]:
    """Run folders under ``root`` (newest first), including the arms inside experiment folders."""
    root = root or default_runs_dir()
    found = [p for pattern in ("*", "*/*") for p in root.glob(pattern) if (p / "config.json").exists()]
    return sorted(found, key=lambda p: (p.parent.name if p.parent != root else p.name, p.name), reverse=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = Path(run_dir) / "checkpoints"
    done = sorted(p for p in folder.glob("step-*") if (p / "state.json").exists()) if folder.exists() else []
    return done[-1] if done else None


# -- preparing a run --------------------------------------------------------------------------------
@dataclass
class RunInputs:
    """What a trainer needs, resolved from a config: model, pairs, held-out problems, units."""

    base: LoadedModel
    pairs: list
    eval_problems: list[Problem]
    exact_problems: list[Problem]
    units: list[Unit] = field(default_factory=list)
    scores: list[float | None] | None = None
    saes: dict[str, Any] = field(default_factory=dict)  # sae_id -> LoadedSAE, for the features in ``units``
    probe_units: list[Unit] | None = None  # the user's set (before any random control), for eval/neuron_margin
    probe_scores: list[float | None] | None = None
    directions: list[int | None] | None = None  # the set's stored unit directions (sign = set), aligned with units
    probe_directions: list[int | None] | None = None


# Generated sources with an ``n`` option (default size) whose first problems do not depend on ``n``.
GROWABLE_SOURCES = {"toy": 200}


def _split_by_template(problems: Sequence[Problem]) -> dict[str, list[Problem]]:
    groups: dict[str, list[Problem]] = {}
    for p in problems:
        key = str(p.meta.get("template", p.id))
        groups.setdefault(key, []).append(p)
    return groups


def resolve_inputs(config: YFPOConfig, base: LoadedModel | None = None,
                   progress: ProgressCallback | None = None) -> RunInputs:
    """Load the model, make or read the pairs, pick held-out problems that share no template with the
    training problems, and read the units (or draw the random control set)."""
    from yfpo_core.models import load_model
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.problems import load_problems
    from yfpo_core.training import pairs as pairs_module

    base = base or load_model(config.model, device=config.device)
    report(progress, 1, 4, "problems")
    eval_seed = config.seed + 1 if config.eval_seed is None else config.eval_seed
    if config.problems == config.eval_problems == "gsm-symbolic":
        # Split by template index, so each side generates only its own templates (generation costs seconds
        # per template) and the held-out problems share no template with the training ones.
        train_templates = list(range(min(config.n_train_templates, 99)))
        train_source = load_problems(config.problems, seed=config.seed, templates=train_templates)
        eval_pool = load_problems(config.eval_problems, seed=eval_seed,
                                  templates=[t for t in range(100) if t not in train_templates])
    else:
        train_source = load_problems(config.problems, seed=config.seed)
        eval_pool = load_problems(config.eval_problems, seed=eval_seed)
    groups = _split_by_template(train_source)
    keys = sorted(groups)
    train_keys, train_problems = [], []
    for key in keys:  # whole templates go to training until there are enough problems
        if len(train_problems) >= config.n_train_problems:
            break
        train_keys.append(key)
        train_problems += groups[key]
    train_problems = train_problems[: config.n_train_problems]
    used = set(train_keys)
    train_ids = {t.id for t in train_problems}

    def held_out(pool: Sequence[Problem]) -> list[Problem]:
        return [p for p in pool if str(p.meta.get("template", p.id)) not in used and p.id not in train_ids]

    eval_pool = held_out(eval_pool)
    wanted = max(config.n_eval_problems, config.n_exact_problems)
    size = GROWABLE_SOURCES.get(config.eval_problems)
    while size and len(eval_pool) < wanted and size < 64 * GROWABLE_SOURCES[config.eval_problems]:
        # A generated source whose first problems are the same for any n: ask for more, so that the
        # template split leaves as many held-out problems as asked (the first ones do not change).
        size *= 2
        eval_pool = held_out(load_problems(config.eval_problems, seed=eval_seed, n=size))
    eval_problems = eval_pool[: config.n_eval_problems]
    exact_problems = eval_pool[: config.n_exact_problems]
    if config.n_eval_problems and not eval_problems:
        raise YfpoError(f"no held-out problems left in {config.eval_problems} after taking {len(train_problems)} "
                        "training problems: lower n_train_problems or use another eval set")
    report(progress, 2, 4, "pairs")
    if config.pairs:
        pairs = pairs_module.load_pairs(config.pairs)
    elif config.pair_source == "on-policy":
        pairs, _ = pairs_module.on_policy_pairs(base, train_problems, seed=config.seed)
    else:
        mode = config.pair_source.split("-", 1)[1]
        pairs = pairs_module.corrupted_pairs(train_problems, base.prompt_format, mode=mode, seed=config.seed)
    report(progress, 3, 4, "units")
    units: list[Unit] = []
    scores = None
    saes: dict[str, Any] = {}
    if config.neuron_set:
        neuron_set = NeuronSet.load(config.neuron_set, base)
        if not len(neuron_set) and config.lam > 0:
            raise YfpoError(f"{config.neuron_set} has no units, so the neuron term has nothing to reward; add units "
                            "to the set, or set lam = 0 for plain DPO")
        units = neuron_set.units_only()
        scores = [su.score for su in neuron_set.units]
        saes = load_set_saes(neuron_set, units, base, config.device, where=config.neuron_set)
        directions = [su.direction for su in neuron_set.units]
        probe_units, probe_scores, probe_directions = list(units), list(scores), list(directions)
        if config.random_units_seed is not None:
            units = random_control_units(units, base, saes, config.random_units_seed)
            scores, directions = None, None
        if config.probe_set and config.probe_set != config.neuron_set:
            probe = NeuronSet.load(config.probe_set, base)
            probe_units = probe.units_only()
            probe_scores = [su.score for su in probe.units]
            probe_directions = [su.direction for su in probe.units]
            saes.update(load_set_saes(probe, probe_units, base, config.device, where=config.probe_set))
    report(progress, 4, 4, "ready")
    if not config.neuron_set:
        return RunInputs(base, pairs, eval_problems, exact_problems, units, scores, saes)
    return RunInputs(base, pairs, eval_problems, exact_problems, units, scores, saes, probe_units, probe_scores,
                     directions, probe_directions)


def load_set_saes(neuron_set: Any, units: Sequence[Unit], base: LoadedModel, device: str = "cpu",
                  where: str = "the neuron set") -> dict[str, Any]:
    """Load the SAE of every feature in ``units`` from the set's ``sae`` section (``path_or_release``), keyed
    by the set's ``sae_id``; raise a :class:`YfpoError` that names the SAE when it cannot be loaded."""
    from yfpo_core.saes.sae import load_sae

    out: dict[str, Any] = {}
    for sae_id in sorted({u.sae_id for u in units if u.kind == "sae_feature" and u.sae_id}):
        info = neuron_set.sae.get(sae_id)
        if info is None:
            raise YfpoError(f"{where}: its features come from SAE {sae_id!r}, which its \"sae\" section does not "
                            "describe; add it with its hook_name, d_sae and path_or_release")
        ref = str(info.get("path_or_release") or "")
        if not ref:
            raise YfpoError(f"{where}: SAE {sae_id!r} has no path_or_release in the set's \"sae\" section, so its "
                            "features cannot be read for training; set it to the SAE's folder (or "
                            "<release>/<sae_id>, or default)")
        try:
            loaded = load_sae(ref, base, device=device)
        except YfpoError as exc:
            raise YfpoError(f"{where}: cannot load SAE {sae_id!r} from {ref!r} to read its features: {exc}") from None
        if loaded.hook_name != info.get("hook_name") or loaded.d_sae != info.get("d_sae"):
            raise YfpoError(f"{where}: SAE {sae_id!r} at {ref!r} reads {loaded.hook_name} with d_sae = {loaded.d_sae}, "
                            f"but the set records {info.get('hook_name')} with d_sae = {info.get('d_sae')}: it is "
                            "another SAE; fix path_or_release")
        out[sae_id] = loaded
    return out


def random_control_units(units: Sequence[Unit], base: LoadedModel, saes: dict[str, Any], seed: int) -> list[Unit]:
    """The random-set control: as many random neurons per hook as ``units`` has, and as many random features
    of each SAE as it has of that SAE, none of the set's own units.

    Neurons are drawn exactly as before features were supported (one :func:`random_unit_sets` call with
    ``seed``); each SAE's features are drawn separately with a seed derived from ``seed`` and the SAE's id
    (``random_unit_sets`` keys widths by hook, and a neuron and a feature can share a hook)."""
    import zlib

    from yfpo_core.analysis.interventions import random_unit_sets

    neurons = [u for u in units if u.kind == "neuron"]
    out: list[Unit] = []
    if neurons:
        widths = {u.hook_name: int(base.model.cfg.d_mlp) for u in neurons}
        out += random_unit_sets(neurons, widths, 1, seed=seed, exclude=neurons)[0]
    for sae_id in sorted({u.sae_id for u in units if u.kind == "sae_feature" and u.sae_id}):
        features = [u for u in units if u.kind == "sae_feature" and u.sae_id == sae_id]
        widths = {features[0].hook_name: int(saes[sae_id].d_sae)}
        sae_seed = seed * 1_000_003 + zlib.crc32(sae_id.encode())
        try:
            out += random_unit_sets(features, widths, 1, seed=sae_seed, exclude=features)[0]
        except ValueError as exc:
            raise YfpoError(f"random-set control: SAE {sae_id!r}: {exc}") from None
    return out


# -- writing a run ----------------------------------------------------------------------------------
class RunWriter:
    """Appends metrics and writes checkpoints and status for one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.lock = threading.Lock()

    def write_inputs(self, config: YFPOConfig, inputs: RunInputs) -> None:
        _atomic_json(self.run_dir / "config.json", config.to_dict())
        self.write_pairs(inputs)
        self.write_units(inputs)

    def repair_inputs(self, inputs: RunInputs) -> list[str]:
        """On resume: rewrite ``pairs.jsonl`` and ``units.json`` where a kill during preparation left them
        missing or torn (they are deterministic functions of the config). Returns the files rewritten."""
        from yfpo_core.training.pairs import load_pairs

        rewritten = []
        try:
            load_pairs(self.run_dir / "pairs.jsonl")
        except YfpoError:
            self.write_pairs(inputs)
            rewritten.append("pairs.jsonl")
        try:
            units = json.loads((self.run_dir / "units.json").read_text(encoding="utf-8"))
            if not isinstance(units, dict) or not isinstance(units.get("units"), list):
                raise ValueError("no units list")
        except (OSError, ValueError):
            self.write_units(inputs)
            rewritten.append("units.json")
        return rewritten

    def write_pairs(self, inputs: RunInputs) -> None:
        lines = [json.dumps(p.to_dict()) for p in inputs.pairs]
        atomic_write_text(self.run_dir / "pairs.jsonl", "\n".join(lines) + "\n")

    def write_units(self, inputs: RunInputs) -> None:
        _atomic_json(self.run_dir / "units.json", {
            "units": [u.label for u in inputs.units], "scores": inputs.scores,
            "eval_problem_ids": [p.id for p in inputs.eval_problems],
            "exact_problem_ids": [p.id for p in inputs.exact_problems],
            "model_fingerprint": inputs.base.fingerprint,
            "saes": {sae_id: loaded.neuron_set_entry() for sae_id, loaded in inputs.saes.items()}})

    def write_directions(self, trainer: Any) -> None:
        """Add the readout the neuron term used (per-unit sign, statistics) to ``units.json``."""
        path = self.run_dir / "units.json"
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
        with self.lock, (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def status(self, state: str, **extra: Any) -> None:
        _atomic_json(self.run_dir / "status.json", {"state": state, "time": time.time(), **extra})

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
        folder = self.run_dir / "checkpoints"
        folder.mkdir(exist_ok=True)
        final = folder / f"step-{step:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:06d}.", dir=folder))
        plain_permissions(tmp, directory=True)
        try:
            save_file({k: v.contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "optimizer.safetensors"))
            _atomic_json(tmp / "state.json", {"step": step, "optimizer_meta": meta,
                                              "trainable": sorted(trainer.trainable_state())})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def truncate_metrics(self, step: int) -> None:
        """Keep the metrics lines of steps ``<= step`` (``-1``: none), so a resumed run adds each step once."""
        rows = [r for r in read_metrics(self.run_dir) if isinstance(r, dict) and isinstance(r.get("step"), int)
                and r["step"] <= step]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_text(self.run_dir / "metrics.jsonl", text)


def load_checkpoint(folder: Path) -> tuple[dict, dict, dict, int]:
    """(trainable tensors, optimizer tensors, optimizer metadata, step) of a checkpoint folder."""
    from safetensors.torch import load_file

    from yfpo_core.training.guard import non_finite_names

    try:
        state = json.loads((folder / "state.json").read_text())
        trainable, optimizer = (load_file(str(folder / "trainable.safetensors")),
                                load_file(str(folder / "optimizer.safetensors")))
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
        for name, value in load_file(str(Path(folder) / "trainable.safetensors")).items():
            params[name].copy_(value.to(params[name].device))
    return base.with_model(model, name=f"{base.name}@{Path(folder).parent.parent.name}/{Path(folder).name}")


# -- running ----------------------------------------------------------------------------------------
def execute(run_dir: Path, config: YFPOConfig, *, base: LoadedModel | None = None, resume: bool = False,
            should_stop=lambda: False, progress: ProgressCallback | None = None, accelerator: Any = None,
            on_metrics=None) -> dict[str, Any]:
    """Prepare, train and record one run in ``run_dir`` (synchronously). Returns the summary.

    The main process holds the run directory's lock throughout (a second writer gets
    :class:`~yfpo_core.runs.lock.RunLockedError` and changes nothing) and leaves ``status.json`` in a known
    state whatever happens: ``finished``/``stopped`` with a summary, ``stopped`` on Ctrl-C, ``failed`` with
    the reason on any error."""
    from yfpo_core.runs.lock import RunLock

    main = accelerator is None or accelerator.is_main_process
    lock = RunLock(run_dir).acquire() if main else None
    try:
        return _execute_locked(Path(run_dir), config, base=base, resume=resume, should_stop=should_stop,
                               progress=progress, accelerator=accelerator, on_metrics=on_metrics)
    finally:
        if lock is not None:
            lock.release()


def _final_status(writer: RunWriter, state: str, **extra: Any) -> None:
    """Best effort: the status of a run that is ending on an error must not hide that error."""
    try:
        writer.status(state, last_checkpoint=str(latest_checkpoint(writer.run_dir) or ""), **extra)
    except OSError:
        pass


def _execute_locked(run_dir: Path, config: YFPOConfig, *, base: LoadedModel | None, resume: bool, should_stop,
                    progress: ProgressCallback | None, accelerator: Any, on_metrics) -> dict[str, Any]:
    writer = RunWriter(run_dir)
    main = accelerator is None or accelerator.is_main_process
    try:
        return _run(writer, config, base=base, resume=resume, should_stop=should_stop, progress=progress,
                    accelerator=accelerator, on_metrics=on_metrics)
    except KeyboardInterrupt:
        if main:
            _final_status(writer, "stopped", reason="interrupted (Ctrl-C); continue with yfpo train --resume "
                                                    f"{run_dir}")
        raise
    except BaseException as exc:
        if main:
            _final_status(writer, "failed", error=user_message(exc) or f"{type(exc).__name__}: {str(exc)[:300]}")
        raise


def _run(writer: RunWriter, config: YFPOConfig, *, base: LoadedModel | None, resume: bool, should_stop,
         progress: ProgressCallback | None, accelerator: Any, on_metrics) -> dict[str, Any]:
    from yfpo_core.training.trainer import YFPOTrainer, fit

    run_dir = writer.run_dir
    main = accelerator is None or accelerator.is_main_process
    if main:
        _atomic_json(Path(run_dir) / "config.json", config.to_dict())
        writer.status("preparing")
    inputs = resolve_inputs(config, base)
    trainer = YFPOTrainer(config, inputs.base, inputs.pairs, inputs.eval_problems, inputs.units, inputs.scores,
                          accelerator=accelerator, exact_problems=inputs.exact_problems, saes=inputs.saes,
                          probe_units=inputs.probe_units, probe_scores=inputs.probe_scores,
                          directions=inputs.directions, probe_directions=inputs.probe_directions)
    start_step = 0
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None:
            trainable, opt, meta, start_step = load_checkpoint(checkpoint)
            trainer.load_state(trainable, opt, meta)
        if main:
            if "units.json" in writer.repair_inputs(inputs):
                writer.write_directions(trainer)
            # Without a checkpoint, fit() starts again at step 0 and logs step 0 again: keep no line.
            writer.truncate_metrics(start_step if start_step > 0 else -1)
    elif main:
        writer.write_inputs(config, inputs)
        writer.write_directions(trainer)
    started = time.perf_counter()

    def record(metrics: dict[str, Any]) -> None:
        metrics["elapsed_s"] = round(time.perf_counter() - started, 3)
        if main:
            writer.append_metrics(metrics)
        if on_metrics:
            on_metrics(metrics)
        report(progress, metrics["step"], config.steps, f"loss {metrics.get('loss', float('nan')):.4f}")

    def save(step: int) -> None:
        if main:
            writer.checkpoint(trainer, step)

    if main:
        writer.status("running", steps=config.steps, start_step=start_step,
                      processes=accelerator.num_processes if accelerator else 1)
    last = fit(trainer, start_step=start_step, should_stop=should_stop, on_metrics=record, on_checkpoint=save)
    state = "finished" if last >= config.steps else "stopped"
    if main and state == "stopped" and last > 0:
        latest = latest_checkpoint(run_dir)
        if latest is None or latest.name != f"step-{last:06d}":
            writer.checkpoint(trainer, last)  # stopping loses no finished step
    if main and trainer.held_out is not None and trainer.held_out.last:
        _atomic_json(Path(run_dir) / EVAL_ROWS_FILE, {"step": last, **trainer.held_out.last})
    rows = read_metrics(run_dir) if main else []
    summary = {"state": state, "last_step": last, "final": rows[-1] if rows else {},
               "initial": rows[0] if rows else {}, "seconds": round(time.perf_counter() - started, 1),
               "processes": accelerator.num_processes if accelerator else 1}
    if accelerator is not None and accelerator.num_processes > 1:
        # Data-parallel replicas must hold identical weights after every step; check it once at the end.
        from accelerate.utils import gather_object

        from yfpo_core.models.base import weights_fingerprint

        prints = gather_object([weights_fingerprint(trainer.model)])
        summary["replica_fingerprints"] = prints
        summary["replicas_agree"] = len(set(prints)) == 1
    if main:
        _atomic_json(Path(run_dir) / "summary.json", summary)
        writer.status(state, last_step=last)
    return summary


class TrainingRun:
    """A run in a background thread: ``start()``, ``stop()``, ``status``, ``error``, ``snapshot()``.

    The thread trains its own copy of the model; the metrics it produces are kept in memory (for the
    UI) and on disk (so closing the tab loses nothing).
    """

    def __init__(self, config: YFPOConfig, run_dir: Path | None = None, base: LoadedModel | None = None,
                 resume: bool = False) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir else new_run_dir("dpo" if config.is_dpo else "yfpo")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.resume = resume
        self.state = "pending"
        self.error: str | None = None
        self.summary: dict[str, Any] | None = None
        self._metrics: list[dict[str, Any]] = read_metrics(self.run_dir) if resume else []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None

    def start(self) -> TrainingRun:
        if self._thread is not None:
            raise RuntimeError("this run was already started")
        self.started_at = time.time()
        self.state = "preparing"
        self._thread = threading.Thread(target=self._work, name=f"yfpo-run-{self.run_dir.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current step (it writes a checkpoint and its summary)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_metrics(self, metrics: dict[str, Any]) -> None:
        with self._lock:
            if self.resume and self._metrics and metrics["step"] <= self._metrics[-1]["step"]:
                self._metrics = [m for m in self._metrics if m["step"] < metrics["step"]]
            self._metrics.append(dict(metrics))
            self.state = "running"

    def _work(self) -> None:
        from yfpo_core.runs.lock import RunLockedError

        try:
            self.summary = execute(self.run_dir, self.config, base=self.base, resume=self.resume,
                                   should_stop=self._stop.is_set, on_metrics=self._on_metrics)
            self.state = self.summary["state"]
        except RunLockedError as exc:  # another writer owns the directory: leave its status alone
            self.error, self.state = user_message(exc), "failed"
        except YfpoError as exc:  # execute() already wrote status.json ("failed", the reason, last checkpoint)
            self.error, self.state = user_message(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - a bug, but the UI must show it, not die
            self.error, self.state = user_message(exc) or f"{type(exc).__name__}: {exc}", "failed"
            _final_status(RunWriter(self.run_dir), "failed", error=self.error, traceback=traceback.format_exc())
        finally:
            self.base = None  # the run holds no model once it has ended

    def snapshot(self) -> dict[str, Any]:
        """A copy of the metrics so far and the progress, safe to read from another thread."""
        with self._lock:
            metrics = [dict(m) for m in self._metrics]
        step = metrics[-1]["step"] if metrics else 0
        elapsed = time.time() - self.started_at if self.started_at else 0.0
        train_rows = [m for m in metrics if m["step"] > 0]
        eta = None
        if train_rows and step < self.config.steps:
            per_step = train_rows[-1].get("elapsed_s", elapsed) / max(len(train_rows), 1)
            eta = per_step * (self.config.steps - step)
        return {"state": self.state, "error": self.error, "step": step, "steps": self.config.steps,
                "metrics": metrics, "eta_s": eta, "run_dir": str(self.run_dir)}


def resume_run(run_dir: Path, base: LoadedModel | None = None) -> TrainingRun:
    """A :class:`TrainingRun` that continues ``run_dir`` from its last checkpoint."""
    return TrainingRun(read_run_config(run_dir), run_dir, base=base, resume=True)
