"""The training loop: steps, evaluation and checkpoints on a schedule, with the caller deciding what to keep.

Like nanoGPT's loop, short enough to read at once; the trainer (:class:`~yfpo_core.training.trainer.YFPOTrainer`)
does the work of a step and the caller (:func:`yfpo_core.runs.execute`) records it.
"""

from __future__ import annotations

from collections.abc import Callable

from yfpo_core.progress import ProgressCallback, phase
from yfpo_core.training import metric_names as M
from yfpo_core.training.trainer import YFPOTrainer


def fit(trainer: YFPOTrainer, *, start_step: int = 0, should_stop: Callable[[], bool] = lambda: False,
        on_metrics: Callable[[dict[str, float]], None] = lambda m: None,
        on_checkpoint: Callable[[int], None] = lambda step: None, progress: ProgressCallback | None = None) -> int:
    """Run steps ``start_step + 1 .. config.steps``; returns the last completed step.

    Metrics of each step (and ``eval/`` metrics at step 0 when starting fresh, every ``eval_every`` steps
    and at the end) go to ``on_metrics``; ``on_checkpoint(step)`` is called every ``checkpoint_every``
    steps and at the end. ``should_stop`` is checked between steps. ``progress`` hears each evaluation
    ("step-0 evaluation", "evaluation at step N") with its count.
    """
    c = trainer.config
    if start_step == 0:
        on_metrics({M.STEP: 0, **trainer.evaluate(exact=c.n_exact_problems > 0 and c.exact_every > 0,
                                                  progress=phase(progress, "step-0 evaluation"))})
    step = start_step
    while step < c.steps and not should_stop():
        step += 1
        metrics = {M.STEP: step, **trainer.train_step(step)}
        last = step == c.steps
        if last or (c.eval_every and step % c.eval_every == 0):
            exact = c.n_exact_problems > 0 and (last or (c.exact_every and step % c.exact_every == 0))
            metrics.update(trainer.evaluate(exact=bool(exact), progress=phase(progress, f"evaluation at step {step}")))
        on_metrics(metrics)
        if last or (c.checkpoint_every and step % c.checkpoint_every == 0):
            on_checkpoint(step)
    return step
