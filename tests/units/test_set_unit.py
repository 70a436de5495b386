"""One unit of a set with what was said about it (yfpo_core.units.set_unit)."""

from __future__ import annotations

from yfpo_core.units.set_unit import SetUnit, unit_key
from yfpo_core.units.unit import Unit


def test_score_and_direction_are_normalised():
    su = SetUnit(Unit.neuron(1, 2), score=3, direction=-5)
    assert su.score == 3.0 and isinstance(su.score, float) and su.direction == -1
    assert SetUnit(Unit.neuron(1, 2), direction=2).direction == 1
    assert SetUnit(Unit.neuron(1, 2)).score is None and SetUnit(Unit.neuron(1, 2)).direction is None


def test_a_feature_is_keyed_by_its_sae_not_its_hook():
    typed = Unit.parse("sae:res2:3")  # no hook yet
    loaded = Unit("sae_feature", "blocks.2.hook_resid_post", 3, sae_id="res2")
    assert unit_key(typed) == unit_key(loaded) == ("sae_feature", "res2", 3)
    assert SetUnit(loaded).key == ("sae_feature", "res2", 3)
    assert SetUnit(Unit.neuron(2, 3)).key == ("neuron", "blocks.2.mlp.hook_post", 3)
