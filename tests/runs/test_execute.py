"""A run's preparation says what it is doing: every phase by name, with its own count, before the first step."""

from __future__ import annotations

from tests.helpers import trainer_config
from yfpo_core.runs.execute import STEP_DONE, execute


def test_execute_reports_each_preparation_phase_then_the_steps(setup):
    """Toy problems, 8 training pairs in batches of 4 (2 batches), 4 held-out problems, 3 steps: the phases
    come in order, each reaching its own total, then one report per step (evaluations within them)."""
    _, tmp_path = setup
    calls = []
    config = trainer_config(tmp_path, steps=3, eval_every=3, checkpoint_every=3, sign="pairs")
    execute(tmp_path / "run", config, progress=lambda done, total, message="": calls.append((done, total, message)))
    phases = list(dict.fromkeys(message.split(":")[0] for _, _, message in calls if message != STEP_DONE))
    assert phases == ["model", "training problems", "held-out problems", "pairs", "units", "copying the model",
                      "frozen prefix", "reference log-probs", "unit signs", "step-0 evaluation",
                      "evaluation at step 3"]

    def last(name):
        return [(d, t) for d, t, m in calls if m.split(":")[0] == name][-1]

    assert last("frozen prefix") == (2, 2) and last("reference log-probs") == (2, 2)
    assert (4, 4) in [(d, t) for d, t, m in calls if m == "step-0 evaluation: answer ranking"]
    assert [(d, t) for d, t, m in calls if m == STEP_DONE] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # Nothing of the preparation comes after the first step's report.
    first_step = calls.index((1, 3, STEP_DONE))
    assert all(m in (STEP_DONE,) or m.startswith("evaluation at step") for _, _, m in calls[first_step:])
