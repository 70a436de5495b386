"""What a run trains (yfpo_core.training.scope): the parameters and masks of each scope, the lowest trainable
block, frozen private SAE copies, last_k bounded by the model's blocks, and which units sit below the trainable
blocks (issue 13: 10 of 32 units showed a change of exactly 0 after training)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import save_tiny_sae, tiny_hooked, tiny_toy, trainer_config
from yfpo_core.errors import YfpoError
from yfpo_core.runs import resolve_inputs
from yfpo_core.saes.sae import load_sae
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.forward import FROM_TOKENS, UnitLayout
from yfpo_core.training.scope import (
    frozen_saes,
    lowest_trainable_layer,
    scope_problem,
    trainable_parameters,
    units_out_of_reach,
)
from yfpo_core.units.unit import Unit


def _scope(trainable: str, units=(), family: str = "gpt2", last_k: int = 1):
    model = tiny_hooked(family, n_layers=3)  # d_mlp 48
    config = YFPOConfig(lam=0.0, neuron_set="set.json", trainable=trainable, last_k=last_k)
    out, start = trainable_parameters(model, config, UnitLayout.build(list(units), None, None))
    return model, {name: mask for name, _, mask in out}, start


def test_mlp_last_k_trains_the_last_blocks_mlps_whole():
    model, chosen, start = _scope("mlp_last_k", last_k=2)
    assert start == 1 and set(chosen) == {n for n, _ in model.named_parameters() if n.startswith(
        ("blocks.1.mlp.", "blocks.2.mlp."))}
    assert all(mask is None for mask in chosen.values())
    assert not any(p.requires_grad for n, p in model.named_parameters() if n not in chosen)


def test_units_trains_only_the_units_rows_and_columns():
    model, chosen, start = _scope("units", [Unit.neuron(1, 3), Unit.neuron(1, 7)])
    assert start == 1 and set(chosen) == {"blocks.1.mlp.W_in", "blocks.1.mlp.b_in", "blocks.1.mlp.W_out"}
    assert chosen["blocks.1.mlp.W_in"].sum(0).nonzero().flatten().tolist() == [3, 7]  # W_in: [d_model, d_mlp]
    assert chosen["blocks.1.mlp.W_out"].sum(1).nonzero().flatten().tolist() == [3, 7]  # W_out: [d_mlp, d_model]
    w_in = dict(model.named_parameters())["blocks.1.mlp.W_in"]
    (w_in * torch.arange(48.0)).sum().backward()
    assert w_in.grad.sum(0).nonzero().flatten().tolist() == [3, 7]  # the mask applies to the gradient itself
    _, gated, _ = _scope("units", [Unit.neuron(2, 0)], family="llama")
    assert "blocks.2.mlp.W_gate" in gated  # a gated MLP's unit has a gate column too


def test_units_plus_last_k_keeps_whole_blocks_whole_and_all_trains_from_the_tokens():
    _, chosen, start = _scope("units+mlp_last_k", [Unit.neuron(0, 5), Unit.neuron(2, 1)], last_k=1)
    assert start == 0 and chosen["blocks.2.mlp.W_in"] is None  # block 2 trains whole
    assert chosen["blocks.0.mlp.W_in"].sum().item() == 32  # one column of d_model = 32
    _, everything, start = _scope("all")
    assert start == FROM_TOKENS and "embed.W_E" in everything


def test_features_have_no_weights_to_train_and_their_saes_are_frozen_copies(tmp_path):
    feature = Unit("sae_feature", "blocks.1.mlp.hook_post", 2, sae_id="tiny-sae")
    with pytest.raises(YfpoError, match="trainable=units trains only the selected neurons' own weights"):
        _scope("units", [feature])
    model = tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64)
    loaded = load_sae(str(save_tiny_sae(tmp_path / "tiny-sae")), model)
    frozen = frozen_saes([Unit.neuron(0, 1), feature], {"tiny-sae": loaded})
    assert set(frozen) == {"tiny-sae"} and frozen["tiny-sae"] is not loaded.sae
    assert not any(p.requires_grad for p in frozen["tiny-sae"].parameters()) and not frozen["tiny-sae"].training
    assert torch.equal(frozen["tiny-sae"].W_enc, loaded.sae.W_enc)
    with pytest.raises(YfpoError, match="which the trainer was not given \\(given: none\\)"):
        frozen_saes([feature], {})
    with pytest.raises(YfpoError, match="out of range"):
        frozen_saes([Unit("sae_feature", "blocks.1.mlp.hook_post", 99, sae_id="tiny-sae")], {"tiny-sae": loaded})

UNITS = [Unit.neuron(0, 1), Unit.neuron(1, 2), Unit.neuron(2, 3)]


def _config(trainable: str, last_k: int = 4) -> YFPOConfig:
    return YFPOConfig(trainable=trainable, last_k=last_k, neuron_set="set.json")


@pytest.mark.parametrize("trainable, last_k, problem", [
    ("mlp_last_k", 3, None),
    ("mlp_last_k", 4, None),  # the default: the last four blocks, or all of a smaller model
    ("mlp_last_k", 5, "last_k 5 exceeds the model's 3 blocks; set last_k to at most 3"),
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
