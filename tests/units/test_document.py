"""A neuron set's JSON document (yfpo_core.units.document): every refusal on load names the file and the fix,
and the schema file. No real model: the fake model of tests/helpers.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import fake_model, load_error
from yfpo_core.units import document
from yfpo_core.units.neuron_set import MAX_FILE_BYTES, MAX_UNITS, NeuronSet, NeuronSetError
from yfpo_core.units.neuronpedia import to_neuronpedia
from yfpo_core.units.unit import Unit


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


@pytest.mark.parametrize("where", ["selection", "problems"])
def test_deep_nesting_inside_a_neuron_set_gets_a_message(where):
    text = NeuronSet.create([Unit.neuron(1, 2)], fake_model()).to_json()
    doc = json.loads(text)
    doc[where] = {"x": json.loads("[" * 200 + "]" * 200)}  # deeper than allowed, shallow enough for json.dumps
    with pytest.raises(NeuronSetError, match="deeper than 64 levels"):
        NeuronSet.from_json(json.dumps(doc), fake_model())
    with pytest.raises(NeuronSetError, match="deeper than 64 levels"):  # the app's paste box hands a dict
        NeuronSet.from_dict(doc, fake_model())


def test_a_lone_surrogate_in_a_label_is_refused_on_load_not_at_export():
    text = NeuronSet.create([Unit.neuron(1, 2)], fake_model()).to_json()
    bad = text.replace('"index": 2', '"index": 2, "label": "\\ud800"')
    with pytest.raises(NeuronSetError, match=r"units\[0\]\.label holds a lone UTF-16 surrogate"):
        NeuronSet.from_json(bad, fake_model())


def test_a_bom_is_accepted_in_a_neuron_set_text():
    text = NeuronSet.create([Unit.neuron(1, 2)], fake_model()).to_json()
    assert len(NeuronSet.from_json("\ufeff" + text, fake_model())) == 1


def test_schema_messages_stay_short_for_huge_values(tmp_path):
    doc = json.loads(NeuronSet.create([Unit.neuron(1, 2)], fake_model()).to_json())
    doc["name"] = ["x" * 9_000_000]  # the schema wants a string; jsonschema quotes the whole value
    path = tmp_path / "set.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(NeuronSetError) as info:
        NeuronSet.load(path)
    assert len(str(info.value)) < 1000
