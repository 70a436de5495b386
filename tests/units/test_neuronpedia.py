"""Neuronpedia lists (yfpo_core.units.neuronpedia): round trips of neurons and features, a quick list without a
model."""

from __future__ import annotations

import pytest

from tests.helpers import DEMO_SAE, fake_model
from yfpo_core.units.neuron_set import NeuronSet, NeuronSetError, SetUnit
from yfpo_core.units.neuronpedia import from_neuronpedia, to_neuronpedia
from yfpo_core.units.unit import Unit


def test_neuronpedia_round_trip_neurons(model):
    original = NeuronSet.create([SetUnit(Unit.neuron(2, 5), label="carry"), Unit.neuron(0, 7)], model, name="n")
    data = to_neuronpedia(original, "toy-np")
    assert data["features"][0] == {"modelId": "toy-np", "layer": "2", "index": "5", "description": "carry"}
    back = from_neuronpedia(data, model)
    assert back.units_only() == original.units_only() and back.get("L2N5").label == "carry"
    assert back.name == "n" and back.model_fingerprint == model.fingerprint
    assert back.selection == {"method": "neuronpedia-import", "params": {"modelId": "toy-np"}}


def test_neuronpedia_round_trip_features(demo, model):
    data = to_neuronpedia(demo.with_note("sae:res2:3", "tens"), source_suffix="res-jb")
    assert data["features"][2] == {"modelId": "toy", "layer": "2-res-jb", "index": "3", "description": "tens"}
    back = from_neuronpedia(data, model, saes={"res-jb": DEMO_SAE["res2"]})
    assert back.units_only()[2] == Unit("sae_feature", "blocks.2.hook_resid_post", 3, "res-jb")
    assert [u.short_label for u in back.units_only()] == [u.short_label for u in demo.units_only()]
    with pytest.raises(NeuronSetError, match="no SAE is described"):
        from_neuronpedia(data, model)


def test_neuronpedia_quick_list_without_model():
    quick = [{"modelId": "gpt2-small", "layer": "9", "index": 100}, {"modelId": "gpt2-small", "layer": 3,
                                                                     "index": "7"}]
    back = from_neuronpedia(quick, None, model_dims={"n_layers": 12, "d_mlp": 3072})
    assert back.model_name == "gpt2-small" and back.model_fingerprint is None
    assert back.units_only() == [Unit.neuron(9, 100), Unit.neuron(3, 7)]
    with pytest.raises(NeuronSetError, match="model_dims"):
        from_neuronpedia(quick, None)
    with pytest.raises(NeuronSetError, match="d_mlp = 50"):
        from_neuronpedia(quick, None, model_dims=(12, 50))
    with pytest.raises(NeuronSetError, match="mixes models"):
        from_neuronpedia([*quick, {"modelId": "gemma-2-2b", "layer": "1", "index": "1"}], None, model_dims=(12, 99))
    with pytest.raises(NeuronSetError, match=r"features\[0\]"):
        from_neuronpedia([{"modelId": "m", "layer": "x", "index": "1"}], None, model_dims=(12, 99))
    with pytest.raises(NeuronSetError, match="not a Neuronpedia list"):
        from_neuronpedia({"units": []}, None, model_dims=(12, 99))


@pytest.mark.parametrize("index", ["³", "9" * 5000, "-1", "1.5"])
def test_bad_neuronpedia_indices_get_a_short_message(index):
    with pytest.raises(NeuronSetError) as info:
        from_neuronpedia([{"layer": "1", "index": index}], model=fake_model())
    assert "non-negative integer index" in str(info.value) and len(str(info.value)) < 500
