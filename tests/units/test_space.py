"""The one answer to "does this unit exist here?": a neuron in a model, a feature among its SAE's features."""

from __future__ import annotations

import pytest

from yfpo_core.units.space import check, neuron_space, unit_problem
from yfpo_core.units.unit import Unit


def test_neurons_are_checked_against_the_model(toy):
    assert check(Unit.neuron(1, 63), toy) == Unit.neuron(1, 63)
    assert unit_problem(Unit.neuron(1, 63), toy.model) is None  # a bare HookedTransformer works too
    for unit in (Unit.neuron(2, 0), Unit.neuron(0, 64)):
        problem = unit_problem(unit, toy)
        assert "out of range" in problem and "2 layers x 64 neurons" in problem
        with pytest.raises(ValueError, match="out of range"):
            check(unit, toy)


def test_features_are_checked_against_their_sae():
    feature = Unit("sae_feature", "blocks.1.mlp.hook_post", 16, sae_id="tiny-sae")
    assert "16 features" in unit_problem(feature, None, d_sae=16)
    assert unit_problem(feature, None, d_sae=17) is None
    assert "give its SAE" in unit_problem(feature, None)


def test_neuron_space_covers_the_chosen_layers(toy):
    space = neuron_space(toy.model, layers=[1])
    assert space.hook_names == ("blocks.1.mlp.hook_post",) and space.width == 64
    with pytest.raises(ValueError, match="out of range"):
        neuron_space(toy.model, layers=[2])
