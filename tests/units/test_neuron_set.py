"""The neuron set (yfpo_core.units.neuron_set): round trips, editing, creation checks, atomic saves, merging.

No real model: the fake model of tests/helpers.py. Refusals on load are tested with the document
(test_document.py), Neuronpedia lists in test_neuronpedia.py."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import DEMO_SAE
from yfpo_core import atomic
from yfpo_core.errors import YfpoError
from yfpo_core.units.neuron_set import NeuronSet, NeuronSetError, SetUnit
from yfpo_core.units.unit import Unit


def test_round_trip_keeps_everything(tmp_path, demo, model):
    edited = demo.with_note("L2N5", "fires on carries").with_label("sae:res2:3", "tens digit").move("L0N7", 0)
    path = edited.save(tmp_path / "sub" / "picks.json")
    loaded = NeuronSet.load(path, model)
    assert loaded == edited
    assert [u.short_label for u in loaded.units_only()] == ["L0N7", "L2N5", "L2F3"]
    assert loaded.get("L2N5").note == "fires on carries"
    assert loaded.get(Unit("sae_feature", "", 3, "res2")).label == "tens digit"
    assert loaded.sae == DEMO_SAE and loaded.selection["top_k"] == 3 and loaded.problems["ids"] == [1, "x"]
    assert loaded.created.endswith("Z") and loaded.model_fingerprint == "abc123"
    assert NeuronSet.from_json(loaded.to_json(indent=None)) == loaded


def test_document_shape_and_one_unit_per_line(demo):
    text = demo.to_json()
    doc = json.loads(text)
    assert doc["format"] == "yfpo-neuron-set" and doc["schema_version"] == 1
    assert doc["model"] == {"name": "toy", "fingerprint": "abc123", "n_layers": 3, "d_mlp": 512}
    assert doc["units"][0] == {"kind": "neuron", "hook_name": "blocks.2.mlp.hook_post", "layer": 2, "index": 5,
                               "score": 0.5}
    assert doc["units"][2]["sae_id"] == "res2" and "score" not in doc["units"][2]
    assert sum('"kind"' in line for line in text.splitlines()) == 3


def test_editing_returns_new_sets(demo):
    added = demo.add(Unit.neuron(1, 9), score=2.0, label="new", position=0)
    assert added.units_only()[0] == Unit.neuron(1, 9) and len(demo) == 3
    assert added.remove("blocks.1.mlp.hook_post:9") == demo
    assert demo.remove(Unit.neuron(2, 5)).units_only() == demo.units_only()[1:]
    assert demo.move("L2N5", -1).units_only()[-1] == Unit.neuron(2, 5)
    assert demo.with_score("L0N7", 3).get("L0N7").score == 3.0
    assert Unit.neuron(0, 7) in demo and "L1N1" not in demo
    assert demo.by_layer() == {"blocks.0.mlp.hook_post": [7], "blocks.2.mlp.hook_post": [5]}
    assert demo.features_by_sae() == {"res2": [3]}
    with pytest.raises(NeuronSetError, match="already in the set"):
        demo.add("L2N5")
    with pytest.raises(NeuronSetError, match="not in the set"):
        demo.remove("L1N1")
    with pytest.raises(NeuronSetError, match="out of range"):
        demo.move("L2N5", 3)
    with pytest.raises(NeuronSetError, match="d_mlp = 512"):
        demo.add(Unit.neuron(0, 512))
    with pytest.raises(NeuronSetError, match="with_sae"):
        demo.add("sae:other:1")
    widened = demo.with_sae("other", hook_name="blocks.1.hook_resid_post", d_sae=8).add("sae:other:1")
    assert widened.units_only()[-1] == Unit("sae_feature", "blocks.1.hook_resid_post", 1, "other")


def test_create_checks(model):
    with pytest.raises(NeuronSetError, match="2 scores for 1 units"):
        NeuronSet.create([Unit.neuron(0, 1)], model, scores=[1.0, 2.0])
    with pytest.raises(NeuronSetError, match="not a finite number"):
        NeuronSet.create([Unit.neuron(0, 1)], model, scores=[math.nan])
    with pytest.raises(NeuronSetError, match="duplicate units: blocks.0.mlp.hook_post:1"):
        NeuronSet.create([Unit.neuron(0, 1), SetUnit(Unit.neuron(0, 1), note="again")], model)
    by_unit = NeuronSet.create([Unit.neuron(0, 1)], model, scores={Unit.neuron(0, 1): 4})
    assert by_unit.units[0].score == 4.0
    assert issubclass(NeuronSetError, YfpoError)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, demo, monkeypatch):
    path = demo.save(tmp_path / "set.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.json"]
    before = path.read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", fail)  # the atomic write's final rename
    with pytest.raises(NeuronSetError, match="No space left"):
        demo.add("L1N1").save(path)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.json"]


def test_merge_appends_new_units_with_their_sae_and_says_when_picks_mix_methods(demo):
    feature = Unit("sae_feature", "blocks.1.hook_resid_post", 9, "res1")
    res1 = {"hook_name": "blocks.1.hook_resid_post", "d_sae": 16, "path_or_release": "saes/res1"}
    merged, added = demo.merge([Unit.neuron(2, 5), Unit.neuron(1, 1), feature], [9.0, 0.25, None],
                               selection={"method": "activation-diff"}, problems={"source": "toy"}, sae={"res1": res1})
    assert added == 2 and merged.units[:3] == demo.units  # L2N5 was there: kept as it was
    assert merged.get("L1N1").score == 0.25 and merged.sae["res1"] == res1
    assert merged.selection == {"method": "mixed", "params": {"methods": ["activation-diff", "attribution"]}}
    assert merged.problems == {"source": "toy"}
    same, none_added = merged.merge([Unit.neuron(1, 1)], selection={"method": "other"})
    assert none_added == 0 and same == merged  # nothing added: where the set came from is unchanged
    with pytest.raises(NeuronSetError, match="not described"):
        demo.merge([Unit("sae_feature", "blocks.1.hook_resid_post", 1, "unknown")])
