"""Interventions and the ablation test (yfpo_core.analysis.interventions), against values computed by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import DRIVER, hand_problems, planted_model
from yfpo_core.analysis.interventions import (
    AblationReport,
    Intervention,
    ablation_test,
    group_by_hook,
    intervened,
    intervention_hooks,
    random_unit_sets,
)
from yfpo_core.units.unit import Unit

HOOK = "blocks.1.mlp.hook_post"


@pytest.mark.parametrize("intervention, expected", [
    (Intervention("zero"), [1.0, 0.0, 3.0, 0.0]),
    (Intervention("scale", factor=2.0), [1.0, 4.0, 3.0, 8.0]),
    (Intervention("clamp", value=5.0), [1.0, 5.0, 3.0, 5.0]),
    (Intervention("add", value=0.5), [1.0, 2.5, 3.0, 4.5]),
    (Intervention("mean", means={HOOK: torch.tensor([10.0, 20.0, 30.0, 40.0])}), [1.0, 20.0, 3.0, 40.0]),
])
def test_each_intervention_changes_only_the_selected_units(intervention, expected):
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])  # [batch, pos, d_mlp]
    ((name, hook),) = intervention_hooks([Unit.neuron(1, 3), Unit.neuron(1, 1)], intervention)
    out = hook(x, SimpleNamespace(name=HOOK))
    assert name == HOOK and out[0, 0].tolist() == expected
    assert x[0, 0].tolist() == [1.0, 2.0, 3.0, 4.0]  # the activation itself is left as it was


def test_units_are_grouped_by_hook_and_features_need_their_sae():
    units = [Unit.neuron(1, 3), Unit.neuron(0, 2), Unit.neuron(1, 0)]
    assert group_by_hook(units) == {HOOK: [3, 0], "blocks.0.mlp.hook_post": [2]}
    with pytest.raises(ValueError, match="is an SAE feature"):
        group_by_hook([Unit("sae_feature", HOOK, 1, sae_id="s")])
    with pytest.raises(ValueError, match="needs the units' means"):
        intervention_hooks(units, Intervention("mean"))
    with pytest.raises(ValueError, match="unknown intervention"):
        Intervention("halve")


def test_intervened_zeroes_the_unit_while_active_and_leaves_no_hook():
    model = planted_model()
    layer, index = DRIVER
    tokens = torch.tensor([model.encode_prompt(model.prompt_format.prompt("Ann has 9 pens. How many?"))])
    with torch.no_grad():
        _, plain = model.model.run_with_cache(tokens, names_filter=HOOK)
        with intervened(model, [Unit.neuron(layer, index)], Intervention("zero")):
            _, ablated = model.model.run_with_cache(tokens, names_filter=HOOK)
    assert plain[HOOK][0, :, index].min() > 0.5  # the planted driver is always on
    assert not ablated[HOOK][0, :, index].any()
    others = [i for i in range(plain[HOOK].shape[-1]) if i != index]
    torch.testing.assert_close(ablated[HOOK][..., others], plain[HOOK][..., others], atol=0, rtol=0)
    assert not any(point.has_hooks() for point in model.model.hook_dict.values())


def test_random_sets_match_the_layers_and_avoid_the_tested_units():
    units = [Unit.neuron(0, 1), Unit.neuron(0, 2), Unit.neuron(1, 5)]
    widths = {"blocks.0.mlp.hook_post": 6, HOOK: 8}
    sets = random_unit_sets(units, widths, 20, seed=3, exclude=units)
    assert len(sets) == 20
    for chosen in sets:
        assert sorted(u.layer for u in chosen) == [0, 0, 1] and len(set(chosen)) == 3
        assert not set(chosen) & set(units) and all(u.index < widths[u.hook_name] for u in chosen)
    assert random_unit_sets(units, widths, 20, seed=3, exclude=units) == sets  # the seed fixes them
    assert random_unit_sets(units, widths, 20, seed=4, exclude=units) != sets
    with pytest.raises(ValueError, match="has only 1 units outside the set; cannot draw 2"):
        random_unit_sets(units[:2], {"blocks.0.mlp.hook_post": 3}, 1, exclude=units)


def test_z_score_by_hand():
    metrics = ("ranking_accuracy", "gold_logprob", "mean_margin")
    report = AblationReport(n_units=2, intervention="zero", baseline=dict.fromkeys(metrics, 0.5),
                            tested=dict.fromkeys(metrics, 0.1),
                            random=[dict.fromkeys(metrics, v) for v in (0.5, 0.4, 0.6)])
    # effects: tested 0.1 - 0.5 = -0.4; random 0, -0.1, 0.1: mean 0, sample std 0.1 -> z = -4
    assert report.effect("gold_logprob") == pytest.approx(-0.4)
    assert report.random_effects("gold_logprob") == pytest.approx([0.0, -0.1, 0.1])
    assert report.z_score("gold_logprob") == pytest.approx(-4.0)
    row = report.rows()[1]
    assert row["metric"] == "gold_logprob" and row["random_effect_std"] == pytest.approx(0.1)
    flat = AblationReport(2, "zero", {"m": 0.5}, {"m": 0.4}, [{"m": 0.5}, {"m": 0.5}])
    assert flat.z_score("m") == -math.inf  # no spread among the random sets: any gap is infinitely far
    assert math.isnan(AblationReport(2, "zero", {"m": 0.5}, {"m": 0.4}, [{"m": 0.5}]).z_score("m"))


def test_ablating_the_planted_driver_matters_more_than_random_neurons():
    """The planted driver neuron writes towards the gold answer " 9": zeroing it lowers the gold log-prob
    far more than zeroing any of eight random neurons of its layer."""
    model = planted_model()
    report = ablation_test(model, hand_problems(), [Unit.neuron(*DRIVER)], n_random=8, seed=0)
    assert report.n_units == 1 and len(report.random) == 8
    assert report.effect("gold_logprob") < min(report.random_effects("gold_logprob")) - 0.5
    assert report.z_score("gold_logprob") < -3
    with pytest.raises(ValueError, match="at least one unit"):
        ablation_test(model, hand_problems(), [])


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
