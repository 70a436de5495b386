"""The one place that finds the SAE of a set's features or of a typed feature (yfpo_core.saes.set_saes)."""

from __future__ import annotations

import pytest

from tests.helpers import save_tiny_sae, tiny_toy
from yfpo_core.errors import YfpoError
from yfpo_core.saes.sae import load_sae
from yfpo_core.saes.set_saes import (
    feature_sae_ids,
    load_set_sae,
    load_set_saes,
    set_sae_ref,
    single_set_sae,
    typed_feature,
)
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit

HOOK = "blocks.1.mlp.hook_post"


@pytest.fixture(scope="module")
def model():
    return tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("saes")
    return save_tiny_sae(root / "sae-a"), save_tiny_sae(root / "sae-b", d_sae=8)


def entry(folder, d_sae: int = 16, hook: str = HOOK) -> dict:
    return {"hook_name": hook, "d_sae": d_sae, "path_or_release": str(folder)}


def never(ref: str):
    raise AssertionError(f"loaded {ref} although the SAE was given")


def test_set_sae_ref_names_what_is_missing():
    assert set_sae_ref({"a": {"path_or_release": "saes/a"}}, "a") == "saes/a"
    with pytest.raises(YfpoError, match="my.json: its features come from SAE 'b', which its \"sae\" section"):
        set_sae_ref({"a": {"path_or_release": "x"}}, "b", where="my.json")
    with pytest.raises(YfpoError, match="SAE 'a' has no path_or_release"):
        set_sae_ref({"a": {"hook_name": HOOK, "d_sae": 16, "path_or_release": ""}}, "a")


def test_load_set_sae_loads_the_recorded_sae_and_refuses_another(model, folders):
    a, b = folders
    loaded = load_set_sae({"sae-a": entry(a)}, "sae-a", model)
    assert (loaded.sae_id, loaded.hook_name, loaded.d_sae) == ("sae-a", HOOK, 16)
    with pytest.raises(YfpoError, match="reads blocks.1.mlp.hook_post with d_sae = 8, but the set records "
                                        "blocks.1.mlp.hook_post with d_sae = 16: it is another SAE"):
        load_set_sae({"sae-a": entry(b)}, "sae-a", model)  # the entry points at an 8-feature SAE
    with pytest.raises(YfpoError, match="cannot load SAE 'sae-a' from .*There is no folder"):
        load_set_sae({"sae-a": entry("/no/such/sae")}, "sae-a", model)


def test_load_set_saes_takes_given_saes_as_they_are(model, folders):
    a, b = folders
    units = [Unit.neuron(0, 1), Unit("sae_feature", HOOK, 2, sae_id="sae-a"), Unit("sae_feature", HOOK, 5,
                                                                                  sae_id="sae-b")]
    neuron_set = NeuronSet.create(units, model, sae={"sae-a": entry(a), "sae-b": entry(b, d_sae=8)})
    assert feature_sae_ids(neuron_set.units_only()) == ["sae-a", "sae-b"]
    mine = load_sae(str(a), model)
    out = load_set_saes(neuron_set, neuron_set.units_only(), model, given={"sae-a": mine})
    assert out["sae-a"] is mine and out["sae-b"].d_sae == 8
    both = {"sae-a": mine, "sae-b": out["sae-b"]}
    assert load_set_saes(neuron_set, neuron_set.units_only(), model, given=both, load=never) == both
    # a given SAE is still checked against the set's record
    with pytest.raises(YfpoError, match="it is another SAE"):
        load_set_saes(neuron_set, neuron_set.units_only(), model, given={"sae-a": out["sae-b"], "sae-b": mine})
    assert load_set_saes(neuron_set, [Unit.neuron(0, 1)], model, load=never) == {}


def test_single_set_sae_for_ablation_and_steering(model, folders):
    a, b = folders
    neurons = NeuronSet.create([Unit.neuron(0, 1)], model, sae={"sae-a": entry(a)})
    assert single_set_sae(neurons, model, load=never) is None  # a set of neurons needs no SAE
    one = NeuronSet.create([Unit("sae_feature", HOOK, 3, sae_id="sae-a")], model, sae={"sae-a": entry(a)})
    assert single_set_sae(one, model).sae_id == "sae-a"
    two = NeuronSet.create([Unit("sae_feature", HOOK, 3, sae_id="sae-a"), Unit("sae_feature", HOOK, 1,
                                                                                sae_id="sae-b")],
                           model, sae={"sae-a": entry(a), "sae-b": entry(b, d_sae=8)})
    with pytest.raises(YfpoError, match="mixes features of several SAEs"):
        single_set_sae(two, model, load=never)


def test_typed_feature(model, folders):
    a, _ = folders
    unit, sae = typed_feature(f"sae:{a}:7", model)
    assert unit == Unit("sae_feature", HOOK, 7, sae_id="sae-a") and sae.d_sae == 16
    again, same = typed_feature("sae:whatever:3", model, sae=sae, load=never)  # the SAE given is used
    assert same is sae and again.index == 3
    for text in ("sae:default", f"sae:{a}:x", f"L1N2:{a}:3", "sae::3"):
        with pytest.raises(YfpoError, match="write a feature as sae:<ref>:<index>"):
            typed_feature(text, model, load=never)
