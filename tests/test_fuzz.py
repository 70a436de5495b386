"""Issue 11: property-based fuzzing of every loader of user data (``hypothesis``).

Property: each input is either accepted or refused with the project's error type (:class:`YfpoError` or a
subclass); nothing else may escape (no ``KeyError``, ``RecursionError``, ``UnicodeEncodeError``, ...).
Examples per loader are stated in each ``settings``; the whole file runs in well under a minute on one
core. Strategies mix valid documents with small mutations, so that inputs get past the first checks.
"""

from __future__ import annotations

import json
import string
from fractions import Fraction
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yfpo_core.problems.answers import AnswerFormatError, extract_answer, format_number, parse_final_answer, parse_number
from yfpo_core.errors import YfpoError
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.neuronpedia import from_neuronpedia
from yfpo_core.problems.files import load_problem_file
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.pairs_io import load_pairs
from yfpo_core.units.unit import Unit

FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Text that exercises the edge cases: digits of all kinds, separators, surrogates, controls, U+2028, BOM.
ALPHABET = st.sampled_from(list(string.printable) + ["####", "³", "٣", "\u2028", "\u2029", "\ufeff", "\x1b",
                                                     "\ud800", "\u00a0", "−", "/", "e", "$", "1 000", "1/2"])
TEXT = st.lists(ALPHABET, max_size=30).map("".join)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner,
                                                                                                  max_size=3),
                           max_leaves=10)
ROW_KEYS = st.sampled_from(["question", "answer", "id", "solution", "Question", "ANSWER", "extra", ""])
ROWS = st.lists(st.dictionaries(ROW_KEYS, JSON_VALUES | TEXT.map(lambda t: f"so {t} #### {t}"), max_size=5),
                max_size=4)


def refused_or_accepted(load, *args, **kwargs):
    try:
        return load(*args, **kwargs)
    except YfpoError:
        return None


def _dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


# -- problem files: JSONL, JSON, CSV, Parquet ----------------------------------------------------------------
@settings(max_examples=150, **FAST)
@given(rows=ROWS, suffix=st.sampled_from([".jsonl", ".json"]))
def test_problem_files_json_and_jsonl(tmp_path_factory, rows, suffix):
    path = tmp_path_factory.mktemp("p") / f"f{suffix}"
    text = "\n".join(_dump(r) for r in rows) if suffix == ".jsonl" else _dump(rows)
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    refused_or_accepted(load_problem_file, path)


@settings(max_examples=150, **FAST)
@given(raw=st.binary(max_size=200) | TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
def test_problem_files_raw_bytes(tmp_path_factory, raw, suffix):
    path = tmp_path_factory.mktemp("p") / f"f{suffix}"
    path.write_bytes(raw)
    refused_or_accepted(load_problem_file, path)


@settings(max_examples=40, **FAST)
@given(rows=st.lists(st.fixed_dictionaries({"question": TEXT | st.integers() | st.none(),
                                            "answer": TEXT | st.integers() | st.floats() | st.none()}),
                     min_size=1, max_size=4),
       suffix=st.sampled_from([".csv", ".parquet"]))
def test_problem_files_csv_and_parquet(tmp_path_factory, rows, suffix):
    import pandas as pd

    path = tmp_path_factory.mktemp("p") / f"f{suffix}"
    frame = pd.DataFrame([{k: (v.encode("utf-8", "replace").decode() if isinstance(v, str) else v)
                           for k, v in r.items()} for r in rows])
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.astype(str).to_parquet(path)
    refused_or_accepted(load_problem_file, path)


# -- neuron sets and Neuronpedia lists -----------------------------------------------------------------------
MODEL = SimpleNamespace(name="toy", fingerprint="abc", model=SimpleNamespace(cfg=SimpleNamespace(n_layers=3,
                                                                                                 d_mlp=16)))
VALID_SET = json.loads(NeuronSet.create([Unit.neuron(1, 2), Unit.neuron(0, 3)], MODEL, scores=[1.0, -0.5]).to_json())
SET_KEYS = st.sampled_from(sorted(VALID_SET) + ["units[0]", "model.n_layers", "extra"])


@settings(max_examples=200, **FAST)
@given(key=SET_KEYS, value=JSON_VALUES)
def test_neuron_set_documents_with_one_field_changed(key, value):
    doc = json.loads(json.dumps(VALID_SET))
    if key == "units[0]":
        doc["units"][0] = value
    elif key == "model.n_layers":
        doc["model"]["n_layers"] = value
    else:
        doc[key] = value
    for load in (lambda: NeuronSet.from_dict(doc, MODEL),
                 lambda: NeuronSet.from_json(_dump(doc), MODEL)):
        loaded = refused_or_accepted(load)
        if loaded is not None:
            NeuronSet.from_json(loaded.to_json(), MODEL)  # whatever loads exports and loads back


@settings(max_examples=100, **FAST)
@given(text=TEXT | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_neuron_set_text(text):
    refused_or_accepted(NeuronSet.from_json, text, MODEL)


NP_ITEM = st.fixed_dictionaries({"layer": SCALARS | st.sampled_from(["1", "2-res", "³", "9" * 50]),
                                 "index": SCALARS | st.sampled_from(["3", "³", "-1", "9" * 5000])},
                                optional={"modelId": SCALARS, "description": SCALARS})


@settings(max_examples=150, **FAST)
@given(data=st.lists(NP_ITEM, max_size=4) | st.fixed_dictionaries({"features": st.lists(NP_ITEM, max_size=3)})
       | JSON_VALUES)
def test_neuronpedia_lists(data):
    saes = {"res": {"hook_name": "blocks.2.hook_resid_post", "d_sae": 8, "path_or_release": "x"}}
    refused_or_accepted(from_neuronpedia, data, model_dims={"n_layers": 3, "d_mlp": 16}, saes=saes)


# -- pairs files -------------------------------------------------------------------------------------------
PAIR_ROWS = st.lists(st.dictionaries(st.sampled_from(["question", "prompt", "chosen", "rejected", "id", "meta",
                                                      "answer"]), JSON_VALUES, max_size=6), max_size=3)


@settings(max_examples=150, **FAST)
@given(rows=PAIR_ROWS, raw=st.none() | st.binary(max_size=80))
def test_pairs_files(tmp_path_factory, rows, raw):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_bytes(raw if raw is not None else "\n".join(_dump(r) for r in rows).encode("utf-8", "surrogatepass"))
    refused_or_accepted(load_pairs, path)


# -- training configs ----------------------------------------------------------------------------------------
CONFIG_KEYS = st.sampled_from(
    ["steps", "lr", "beta", "grad_clip", "lam", "gamma", "n_eval_problems", "max_length", "device", "seed",
     "standardize", "trainable", "neuron_set", "random_units_seed", "weight_decay", "unknown"])


@settings(max_examples=300, **FAST)
@given(data=st.dictionaries(CONFIG_KEYS, SCALARS | st.sampled_from([float("inf"), float("nan"), 1e308, -0.0]),
                            max_size=5) | JSON_VALUES)
def test_config_from_dict(data):
    config = refused_or_accepted(YFPOConfig.from_dict, data)
    if config is not None:
        assert YFPOConfig.from_dict(config.to_dict()) == config  # what loads round-trips


# -- answer extraction -------------------------------------------------------------------------------------
@settings(max_examples=500, **FAST)
@given(text=TEXT)
def test_answer_extraction(text):
    value = extract_answer(text)  # never raises: model outputs are graded, not refused
    assert value is None or isinstance(value, Fraction)
    try:
        answer = parse_final_answer(text)
    except AnswerFormatError:
        return
    assert parse_number(format_number(answer)) == answer  # the canonical text reads back exactly
