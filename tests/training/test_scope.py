"""What a run trains (yfpo_core.training.scope): the parameters and masks of each scope, the lowest trainable
block, and frozen private SAE copies."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import save_tiny_sae, tiny_hooked
from yfpo_core.errors import YfpoError
from yfpo_core.saes.sae import load_sae
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.forward import FROM_TOKENS, UnitLayout
from yfpo_core.training.scope import frozen_saes, trainable_parameters
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
    from tests.helpers import tiny_toy

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
