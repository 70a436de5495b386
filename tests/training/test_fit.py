"""The training loop (yfpo_core.training.fit): steps, evaluation and checkpoints on their schedule."""

from __future__ import annotations

from types import SimpleNamespace

from yfpo_core.training import metric_names as M
from yfpo_core.training.fit import fit


class Recorder:
    """A trainer that records what the loop asks of it."""

    def __init__(self, **config):
        base = dict(steps=7, eval_every=3, checkpoint_every=4, n_exact_problems=0, exact_every=0)
        self.config = SimpleNamespace(**{**base, **config})
        self.calls: list[tuple] = []

    def train_step(self, step):
        self.calls.append(("step", step))
        return {M.LOSS: 1.0 / step}

    def evaluate(self, exact, progress=None):
        self.calls.append(("eval", exact))
        return {M.EVAL_RANKING_ACCURACY: 0.5}


def test_the_schedule_of_a_fresh_run():
    trainer, rows, checkpoints = Recorder(), [], []
    last = fit(trainer, on_metrics=rows.append, on_checkpoint=checkpoints.append)
    assert last == 7 and checkpoints == [4, 7]
    assert [r[M.STEP] for r in rows] == list(range(8))
    assert [r[M.STEP] for r in rows if M.EVAL_RANKING_ACCURACY in r] == [0, 3, 6, 7]  # start, every 3rd, end
    assert rows[2][M.LOSS] == 0.5 and M.LOSS not in rows[0]


def test_resume_stop_and_exact_match_at_the_end():
    trainer, rows = Recorder(n_exact_problems=4), []
    assert fit(trainer, start_step=5, on_metrics=rows.append) == 7  # no step-0 evaluation when resuming
    assert [r[M.STEP] for r in rows] == [6, 7] and trainer.calls == [("step", 6), ("eval", False), ("step", 7),
                                                                      ("eval", True)]
    trainer = Recorder(exact_every=2, n_exact_problems=4, eval_every=2)
    stops = iter([False, False, True])
    assert fit(trainer, should_stop=lambda: next(stops)) == 2  # checked between steps
    assert trainer.calls == [("eval", True), ("step", 1), ("step", 2), ("eval", True)]
