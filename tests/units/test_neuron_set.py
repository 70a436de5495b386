"""Neuron-set files: round trips, editing, every refusal on load, the schema file, Neuronpedia lists.

No real model: a ``SimpleNamespace`` with the attributes a neuron set reads from a ``LoadedModel``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from yfpo_core import atomic
from yfpo_core.errors import YfpoError
from yfpo_core.units import document
from yfpo_core.units.neuron_set import MAX_FILE_BYTES, MAX_UNITS, NeuronSet, NeuronSetError, SetUnit
from yfpo_core.units.neuronpedia import from_neuronpedia, to_neuronpedia
from yfpo_core.units.unit import Unit

SAE = {"res2": {"hook_name": "blocks.2.hook_resid_post", "d_sae": 1024, "path_or_release": "saes/res2"}}


def fake_model(name: str = "toy", fingerprint: str = "abc123", n_layers: int = 3, d_mlp: int = 512):
    return SimpleNamespace(name=name, fingerprint=fingerprint,
                           model=SimpleNamespace(cfg=SimpleNamespace(n_layers=n_layers, d_mlp=d_mlp)))


@pytest.fixture
def model():
    return fake_model()


@pytest.fixture
def demo(model) -> NeuronSet:
    units = [Unit.neuron(2, 5), Unit.neuron(0, 7), Unit("sae_feature", "blocks.2.hook_resid_post", 3, "res2")]
    return NeuronSet.create(units, model, scores=[0.5, -1.25, None], sae=SAE, name="demo", description="d",
                            selection={"method": "attribution", "target": "answer logprob", "params": {"a": 1},
                                       "top_k": 3},
                            problems={"source": "synthetic", "n": 10, "ids": [1, "x"]})


def write_doc(tmp_path, doc, name="set.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def load_error(tmp_path, doc, model=None, **kwargs) -> str:
    path = write_doc(tmp_path, doc)
    with pytest.raises(NeuronSetError) as info:
        NeuronSet.load(path, model, **kwargs)
    message = str(info.value)
    assert str(path) in message  # every load error names the file
    return message


# -- round trips and editing --------------------------------------------------------------------------------
def test_round_trip_keeps_everything(tmp_path, demo, model):
    edited = demo.with_note("L2N5", "fires on carries").with_label("sae:res2:3", "tens digit").move("L0N7", 0)
    path = edited.save(tmp_path / "sub" / "picks.json")
    loaded = NeuronSet.load(path, model)
    assert loaded == edited
    assert [u.short_label for u in loaded.units_only()] == ["L0N7", "L2N5", "L2F3"]
    assert loaded.get("L2N5").note == "fires on carries"
    assert loaded.get(Unit("sae_feature", "", 3, "res2")).label == "tens digit"
    assert loaded.sae == SAE and loaded.selection["top_k"] == 3 and loaded.problems["ids"] == [1, "x"]
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


# -- refusals on load ------------------------------------------------------------------------------------
def test_not_json_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "format": "yfpo-neuron-set",\n  oops\n}', encoding="utf-8")
    with pytest.raises(NeuronSetError, match=r"not valid JSON \(line 3, column 3") as info:
        NeuronSet.load(path)
    assert "broken.json" in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(NeuronSetError, match="no such file"):
        NeuronSet.load(tmp_path / "nope.json")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(NeuronSetError, match="is empty"):
        NeuronSet.load(tmp_path / "empty.json")


def test_not_a_neuron_set(tmp_path, demo):
    doc = demo.to_dict()
    del doc["format"]
    assert 'no "format": "yfpo-neuron-set"' in load_error(tmp_path, doc)
    assert "Neuronpedia list" in load_error(tmp_path, to_neuronpedia(demo))


def test_unknown_schema_version(tmp_path, demo):
    message = load_error(tmp_path, {**demo.to_dict(), "schema_version": 2})
    assert "schema_version 2" in message and "reads schema_version 1" in message and "upgrade" in message


def test_schema_violation_names_the_json_path(tmp_path, demo):
    doc = demo.to_dict()
    doc["units"][1]["index"] = "seven"
    assert "$.units[1].index" in load_error(tmp_path, doc)
    doc = demo.to_dict()
    doc["units"][0]["socre"] = 1.0
    assert "'socre' was unexpected" in load_error(tmp_path, doc)
    doc = demo.to_dict()
    del doc["model"]["d_mlp"]
    assert "$.model" in load_error(tmp_path, doc)


def test_quick_unit_check_agrees_with_the_schema(tmp_path, demo):
    doc = demo.to_dict()
    doc["units"][1]["index"] = 7.0  # an integer to JSON Schema, though not to Python
    assert NeuronSet.from_dict(doc) == demo
    doc["units"][2]["sae_id"] = ""
    assert "$.units[2].sae_id" in load_error(tmp_path, doc)
    doc = demo.to_dict()
    doc["units"][0]["hook_name"] = "blocks.2.mlp.hook_post\n"  # Python's "$" would let this through
    assert "not an MLP neuron hook" in load_error(tmp_path, doc)


def test_duplicate_json_keys_are_refused(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"format": "yfpo-neuron-set", "format": "x"}', encoding="utf-8")
    with pytest.raises(NeuronSetError, match="appears twice"):
        NeuronSet.load(path)


def test_file_too_large_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:  # sparse: no real 10 MB written
        handle.truncate(MAX_FILE_BYTES + 1)

    def no_reading(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr(type(path), "open", no_reading)
    with pytest.raises(NeuronSetError, match="10 MB") as info:
        NeuronSet.load(path)
    assert "huge.json" in str(info.value)


def test_too_many_units(demo):
    doc = demo.to_dict()
    doc["units"] = [doc["units"][0]] * (MAX_UNITS + 1)
    with pytest.raises(NeuronSetError, match="100,001 units, more than the 100,000"):
        NeuronSet.from_dict(doc)


def test_duplicate_units_are_named(tmp_path, demo):
    doc = demo.to_dict()
    doc["units"].append(dict(doc["units"][1], note="again"))
    message = load_error(tmp_path, doc)
    assert "duplicate units: blocks.0.mlp.hook_post:7 (units[1], units[3])" in message


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_scores(tmp_path, demo, value):
    text = demo.to_json().replace('"score": -1.25', f'"score": {value}')
    path = tmp_path / "nan.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(NeuronSetError, match=r"units\[1\] \(blocks.0.mlp.hook_post:7\): score is .*not a finite"):
        NeuronSet.load(path)


def test_index_and_layer_out_of_range(tmp_path, demo):
    doc = demo.to_dict()
    doc["units"][0]["index"] = 512
    message = load_error(tmp_path, doc)
    assert "units[0]" in message and "neuron index 512" in message and "d_mlp = 512" in message
    doc = demo.to_dict()
    doc["units"][0].update(hook_name="blocks.3.mlp.hook_post", layer=3)
    message = load_error(tmp_path, doc)
    assert "layer 3 is out of range" in message and "n_layers = 3" in message
    doc = demo.to_dict()
    doc["units"][2]["index"] = 1024
    message = load_error(tmp_path, doc)
    assert "feature index 1024" in message and "d_sae = 1024" in message and "sae:res2:1024" in message


def test_hook_name_and_layer_must_agree(tmp_path, demo):
    doc = demo.to_dict()
    doc["units"][0]["layer"] = 1
    message = load_error(tmp_path, doc)
    assert '"layer" is 1' in message and "blocks.2.mlp.hook_post" in message and "layer 2" in message
    doc = demo.to_dict()
    doc["units"][0]["hook_name"] = "blocks.2.attn.hook_z"
    assert "$.units[0].hook_name" in load_error(tmp_path, doc)


def test_feature_with_unknown_sae(tmp_path, demo):
    doc = demo.to_dict()
    doc["units"][2]["sae_id"] = "mystery"
    message = load_error(tmp_path, doc)
    assert "SAE 'mystery' is not described" in message and "'res2'" in message


def test_wrong_model(tmp_path, demo):
    path = demo.save(tmp_path / "set.json")
    other = fake_model(name="smollm2", fingerprint="fff", n_layers=30, d_mlp=1536)
    with pytest.raises(NeuronSetError) as info:
        NeuronSet.load(path, other)
    message = str(info.value)
    assert "made for model 'toy'" in message and "'smollm2'" in message and "--allow-other-model" in message
    assert NeuronSet.load(path, other, allow_other_model=True) == demo  # keeps its record
    finetune = fake_model(fingerprint="changed")
    with pytest.raises(NeuronSetError, match="fingerprint changed"):
        NeuronSet.load(path, finetune)
    assert NeuronSet.load(path, fake_model(name="/path/to/toy")) == demo  # same weights, other name


def test_allow_other_model_still_range_checks(tmp_path, demo):
    path = demo.save(tmp_path / "set.json")
    narrow = fake_model(name="small", fingerprint="s", n_layers=3, d_mlp=6)
    with pytest.raises(NeuronSetError, match="does not fit the loaded model.*d_mlp = 6"):
        NeuronSet.load(path, narrow, allow_other_model=True)
    rebound = demo.remove("L0N7").rebind(fake_model(name="wide", fingerprint="w", n_layers=4, d_mlp=600))
    assert (rebound.model_name, rebound.d_mlp) == ("wide", 600)


# -- the schema file ---------------------------------------------------------------------------------------
def test_documented_example_loads():
    text = (Path(__file__).parents[2] / "docs" / "neuron-set-format.md").read_text(encoding="utf-8")
    example = re.search(r"```json\n(.*?)```", text, re.S).group(1)
    loaded = NeuronSet.from_json(example, fake_model("smollm2-135m-instruct", "3f9a1c2b7d4e5f60", 30, 1536))
    assert [u.short_label for u in loaded.units_only()] == ["L20N1234", "L17N88", "L20F5021"]


def test_schema_file_is_valid_json_schema(demo):
    import jsonschema

    schema = document.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(demo.to_dict())


# -- Neuronpedia -------------------------------------------------------------------------------------------
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
    back = from_neuronpedia(data, model, saes={"res-jb": SAE["res2"]})
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
