"""The attribution methods are listed once: attribute() computes each one, the CLI and the app offer them."""

from __future__ import annotations

import pytest

from yfpo_core.attribution import registry
from yfpo_core.attribution.locate import SCORERS
from yfpo_core.attribution.targets import TARGETS


def test_every_listed_method_has_its_computation_and_a_line_of_help():
    assert set(SCORERS) == set(registry.METHODS)
    assert all(m.help and m.name == name for name, m in registry.METHOD_INFO.items())
    assert set(registry.BATCHED_METHODS) <= set(registry.GRADIENT_METHODS) <= set(registry.METHODS)


def test_targets_are_the_registry_s():
    assert TARGETS == registry.TARGETS == tuple(registry.TARGET_HELP)


def test_check_methods_names_the_first_unknown_one():
    registry.check_methods(["attnlrp", "activation"])
    with pytest.raises(ValueError, match=r"^unknown method 'magic'; choose one of attnlrp, grad_x_act, "):
        registry.check_methods(["attnlrp", "magic", "other"])
    with pytest.raises(ValueError, match=r"^unknown method '\(none\)'"):
        registry.check_methods([])
