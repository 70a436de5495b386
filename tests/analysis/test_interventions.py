"""The ablation check's progress: problems counted across every condition, each condition named."""

from __future__ import annotations

from yfpo_core.analysis.interventions import ablation_test
from yfpo_core.units.unit import Unit


def test_ablation_progress_counts_every_problem_of_every_set(toy, toy_problems):
    """4 problems under 4 conditions (baseline, the tested set, 2 random sets): 16 units of work, each
    condition announced before its first problem and counted problem by problem."""
    calls = []
    ablation_test(toy, toy_problems, [Unit.neuron(1, 0), Unit.neuron(1, 1)], n_random=2, seed=0,
                  progress=lambda done, total, message="": calls.append((done, total, message)))
    assert {total for _, total, _ in calls} == {16}
    dones = [done for done, _, _ in calls]
    assert dones == sorted(dones) and dones[0] == 0 and dones[-1] == 16
    starts = [(done, message) for done, _, message in calls if ":" not in message]
    assert starts == [(0, "baseline"), (4, "tested set"), (8, "random set 1/2"), (12, "random set 2/2")]
    assert sum(1 for done, _, message in calls if message.startswith("random set 2/2: ")) == 4
