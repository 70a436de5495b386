"""Running one training run synchronously in its folder: prepare, train, record, end in a known state.

Every failure ends in a known state: :func:`execute` writes ``failed`` with the reason for any error, and
``stopped`` on Ctrl-C; a process killed outright leaves ``running`` with no lock holder, which
:meth:`~yfpo_core.runs.run_dir.RunDir.state` reports as ``interrupted``. ``--resume`` rewrites a missing or
torn ``pairs.jsonl``/``units.json`` and keeps exactly one metrics line per step.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yfpo_core.errors import user_message
from yfpo_core.models.base import LoadedModel
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.runs.inputs import resolve_inputs
from yfpo_core.runs.run_dir import UNITS_FILE, RunDir, load_checkpoint
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig
from yfpo_core.units.neuron_set import NeuronSet

STEP_DONE = ""  # the progress message after a step: the count says which; a message means work within a step


def execute(run_dir: Path, config: YFPOConfig, *, base: LoadedModel | None = None, resume: bool = False,
            should_stop=lambda: False, progress: ProgressCallback | None = None, accelerator: Any = None,
            on_metrics=None, neuron_set: NeuronSet | None = None,
            saes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Prepare, train and record one run in ``run_dir`` (synchronously). Returns the summary.

    ``neuron_set`` and ``saes``: the set ``config.neuron_set`` names and SAEs of its features, when the caller
    holds them already (see :func:`~yfpo_core.runs.inputs.resolve_inputs`); they are not read again.

    The main process holds the run directory's lock throughout (a second writer gets
    :class:`~yfpo_core.runs.lock.RunLockedError` and changes nothing) and leaves ``status.json`` in a known
    state whatever happens: ``finished``/``stopped`` with a summary, ``stopped`` on Ctrl-C, ``failed`` with
    the reason on any error."""
    from yfpo_core.runs.lock import RunLock

    main = accelerator is None or accelerator.is_main_process
    lock = RunLock(run_dir).acquire() if main else None
    try:
        return _execute_locked(Path(run_dir), config, base=base, resume=resume, should_stop=should_stop,
                               progress=progress, accelerator=accelerator, on_metrics=on_metrics,
                               given={"neuron_set": neuron_set, "saes": saes})
    finally:
        if lock is not None:
            lock.release()


def record_final_status(writer: RunDir, state: str, **extra: Any) -> None:
    """Best effort: the status of a run that is ending on an error must not hide that error."""
    try:
        writer.set_status(state, last_checkpoint=str(writer.latest_checkpoint() or ""), **extra)
    except OSError:
        pass


def _execute_locked(run_dir: Path, config: YFPOConfig, *, base: LoadedModel | None, resume: bool, should_stop,
                    progress: ProgressCallback | None, accelerator: Any, on_metrics,
                    given: dict[str, Any]) -> dict[str, Any]:
    writer = RunDir(run_dir)
    main = accelerator is None or accelerator.is_main_process
    try:
        return _run(writer, config, base=base, resume=resume, should_stop=should_stop, progress=progress,
                    accelerator=accelerator, on_metrics=on_metrics, given=given)
    except KeyboardInterrupt:
        if main:
            record_final_status(writer, "stopped",
                                reason=f"interrupted (Ctrl-C); continue with yfpo train --resume {run_dir}")
        raise
    except BaseException as exc:
        if main:
            record_final_status(writer, "failed",
                                error=user_message(exc) or f"{type(exc).__name__}: {str(exc)[:300]}")
        raise


def _run(writer: RunDir, config: YFPOConfig, *, base: LoadedModel | None, resume: bool, should_stop,
         progress: ProgressCallback | None, accelerator: Any, on_metrics, given: dict[str, Any]) -> dict[str, Any]:
    from yfpo_core.training.fit import fit
    from yfpo_core.training.trainer import YFPOTrainer

    main = accelerator is None or accelerator.is_main_process
    if main:
        writer.write_config(config)
        writer.set_status("preparing")
    # The preparation reports each phase by name (problems, pairs, units, frozen prefix, reference log-probs,
    # unit signs, then fit's step-0 evaluation), each with its own count: a first run takes a while.
    inputs = resolve_inputs(config, base, progress=progress, **given)
    report(progress, 0, 0, "copying the model")
    trainer = YFPOTrainer(config, inputs.base, inputs.pairs, inputs.eval_problems, inputs.units, inputs.scores,
                          accelerator=accelerator, exact_problems=inputs.exact_problems, saes=inputs.saes,
                          probe_units=inputs.probe_units, probe_scores=inputs.probe_scores,
                          directions=inputs.directions, probe_directions=inputs.probe_directions, progress=progress)
    start_step = 0
    if resume:
        checkpoint = writer.latest_checkpoint()
        if checkpoint is not None:
            trainable, opt, meta, start_step = load_checkpoint(checkpoint)
            trainer.load_state(trainable, opt, meta)
        if main:
            if UNITS_FILE in writer.repair_inputs(inputs):
                writer.write_directions(trainer)
            # Without a checkpoint, fit() starts again at step 0 and logs step 0 again: keep no line.
            writer.truncate_metrics(start_step if start_step > 0 else -1)
    elif main:
        writer.write_inputs(config, inputs)
        writer.write_directions(trainer)
    started = time.perf_counter()

    def record(metrics: dict[str, Any]) -> None:
        metrics[M.ELAPSED_S] = round(time.perf_counter() - started, 3)
        if main:
            writer.append_metrics(metrics)
        if on_metrics:
            on_metrics(metrics)
        report(progress, metrics[M.STEP], config.steps, STEP_DONE)

    def save(step: int) -> None:
        if main:
            writer.checkpoint(trainer, step)

    if main:
        writer.set_status("running", steps=config.steps, start_step=start_step,
                          processes=accelerator.num_processes if accelerator else 1)
    last = fit(trainer, start_step=start_step, should_stop=should_stop, on_metrics=record, on_checkpoint=save,
               progress=progress)
    state = "finished" if last >= config.steps else "stopped"
    if main and state == "stopped" and last > 0:
        latest = writer.latest_checkpoint()
        if latest is None or latest.name != f"step-{last:06d}":
            writer.checkpoint(trainer, last)  # stopping loses no finished step
    if main and trainer.held_out is not None and trainer.held_out.last:
        writer.write_eval_rows(last, trainer.held_out.last)
    rows = writer.metrics() if main else []
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
        writer.write_summary(summary)
        writer.set_status(state, last_step=last)
    return summary
