"""What a run trains (yfpo_core.training.scope): last_k bounded by the model's blocks, and which units sit
below the trainable blocks (issue 13: 10 of 32 units showed a change of exactly 0 after training)."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_toy, trainer_config
from yfpo_core.errors import YfpoError
from yfpo_core.runs import resolve_inputs
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.forward import UnitLayout
from yfpo_core.training.scope import (
    lowest_trainable_layer,
    scope_problem,
    trainable_parameters,
    units_out_of_reach,
)
from yfpo_core.units.unit import Unit

UNITS = [Unit.neuron(0, 1), Unit.neuron(1, 2), Unit.neuron(2, 3)]


def _config(trainable: str, last_k: int = 4) -> YFPOConfig:
    return YFPOConfig(trainable=trainable, last_k=last_k, neuron_set="set.json")


@pytest.mark.parametrize("trainable, last_k, problem", [
    ("mlp_last_k", 3, None),
    ("mlp_last_k", 4, "last_k 4 exceeds the model's 3 blocks; set last_k to at most 3"),
    ("units+mlp_last_k", 7, "last_k 7 exceeds the model's 3 blocks"),
    ("all", 9, None),  # last_k is not read by these scopes
    ("units", 9, None),
])
def test_last_k_is_bounded_by_the_models_blocks(trainable, last_k, problem):
    found = scope_problem(_config(trainable, last_k), n_layers=3)
    assert found == problem if problem is None else problem in found


def test_the_trainer_and_the_run_inputs_refuse_a_last_k_above_the_blocks(setup, tmp_path):
    model, tmp = setup  # a 2-block model
    config = trainer_config(tmp, trainable="mlp_last_k", last_k=3)
    with pytest.raises(YfpoError, match="invalid training config: last_k 3 exceeds the model's 2 blocks"):
        resolve_inputs(config)  # before the pairs are made
    layout = UnitLayout.build([Unit.neuron(1, 0)])
    with pytest.raises(YfpoError, match="last_k 3 exceeds the model's 2 blocks"):
        trainable_parameters(tiny_toy(n_layers=2, d_model=16, n_heads=2, d_mlp=8).model, config, layout)


@pytest.mark.parametrize("trainable, last_k, lowest", [
    ("mlp_last_k", 1, 2), ("mlp_last_k", 3, 0), ("units", 1, 0), ("units+mlp_last_k", 1, 0), ("all", 1, 0),
])
def test_the_lowest_trainable_layer_is_the_one_the_trainer_trains(trainable, last_k, lowest):
    """Read from the config alone (for the Train form), it agrees with the parameters the trainer picks."""
    config = _config(trainable, last_k)
    assert lowest_trainable_layer(config, UNITS, n_layers=3) == lowest
    model = tiny_toy(n_layers=3, d_model=16, n_heads=2, d_mlp=8).model
    _, start = trainable_parameters(model, config, UnitLayout.build(UNITS))
    assert max(start, 0) == lowest  # FROM_TOKENS (-1) when the embeddings train: block 0 and up


def test_units_below_the_trainable_blocks_are_out_of_reach():
    assert units_out_of_reach(_config("mlp_last_k", 1), UNITS, n_layers=3) == UNITS[:2]
    assert units_out_of_reach(_config("mlp_last_k", 2), UNITS, n_layers=3) == UNITS[:1]
    assert units_out_of_reach(_config("mlp_last_k", 3), UNITS, n_layers=3) == []
    # a unit's own weights train in the units scopes: none is out of reach
    assert units_out_of_reach(_config("units+mlp_last_k", 1), UNITS, n_layers=3) == []
    feature = Unit("sae_feature", "blocks.0.mlp.hook_post", 4, sae_id="s")
    assert units_out_of_reach(_config("units+mlp_last_k", 1), [UNITS[2], feature], n_layers=3) == [feature]
