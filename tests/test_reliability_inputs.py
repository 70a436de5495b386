"""Issue 11, inputs: nothing a user writes is read silently wrong or ends in a traceback.

Covers items 5 (answers after ``####``) and 10 (surrogates, long messages, U+2028, BOM, escape sequences,
over-long questions), and the input causes of item 6 (deep nesting, 5000-digit answers, Neuronpedia
indices). Each test fails on the code before the fix.
"""

from __future__ import annotations

import json
from fractions import Fraction
from types import SimpleNamespace

import pytest

from yfpo_core.problems.answers import extract_answer, parse_number
from yfpo_core.errors import ProblemDataError, YfpoError
from yfpo_core.units.neuron_set import NeuronSet, NeuronSetError
from yfpo_core.units.neuronpedia import from_neuronpedia
from yfpo_core.problems.files import load_problem_file
from yfpo_core.training.pairs import PairDataError
from yfpo_core.training.pairs_io import load_pairs
from yfpo_core.units.unit import Unit

DEEP = "[" * 100_000 + "]" * 100_000


def fake_model():
    return SimpleNamespace(name="toy", fingerprint="abc", model=SimpleNamespace(cfg=SimpleNamespace(n_layers=3,
                                                                                                    d_mlp=512)))


def problems_from(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return load_problem_file(path)


def problem_error(tmp_path, name: str, content: str) -> str:
    with pytest.raises(ProblemDataError) as info:
        problems_from(tmp_path, name, content)
    return str(info.value)


# -- item 5: the answer after #### ---------------------------------------------------------------------------
@pytest.mark.parametrize("answer, canonical", [
    ("#### 1/2", "0.5"),            # was 1
    ("#### 1 000", "1000"),         # was 1
    ("#### 1e3", "1000"),           # was 1
    ("#### 2.5e-1", "0.25"),        # 25/100
    ("#### 1/3", "1/3"),            # not a finite decimal: kept as a fraction
    ("#### $1,234.50.", "1234.5"),  # the usual forms still read
    ("#### 18", "18"),
])
def test_final_answer_forms_are_read_exactly(tmp_path, answer, canonical):
    (problem,) = problems_from(tmp_path, "p.jsonl", json.dumps({"question": "Q?", "answer": f"so {answer}"}) + "\n")
    assert problem.answer == canonical
    assert parse_number(problem.answer) == parse_number(canonical)  # the canonical text reads back


@pytest.mark.parametrize("answer", ["#### 1 2", "#### 18 or 19", "#### 3 - 1"])
def test_ambiguous_final_answers_are_refused_not_cut_to_their_first_number(tmp_path, answer):
    message = problem_error(tmp_path, "p.jsonl", json.dumps({"question": "Q?", "answer": answer}) + "\n")
    assert "row 1" in message and "more than one number" in message


@pytest.mark.parametrize("value, kind", [([18], "a list"), ({"a": 1}, "an object"), (True, "a boolean")])
def test_non_number_json_values_are_refused(tmp_path, value, kind):
    message = problem_error(tmp_path, "p.json", json.dumps([{"question": "Q?", "answer": value}]))
    assert f"the answer is {kind}, not text or a number" in message


def test_model_outputs_with_an_ambiguous_final_line_count_as_no_answer():
    assert extract_answer("... so #### 1/2") == Fraction(1, 2)
    assert extract_answer("#### 1 000 apples") == Fraction(1000)
    assert extract_answer("#### 1 or 2") is None       # was 1: an ambiguous answer is not a right one
    assert extract_answer("x" + "9" * 5000) is None     # was a ValueError (int() of 5000 digits)


def test_a_5000_digit_answer_gets_a_message(tmp_path):
    message = problem_error(tmp_path, "p.jsonl", json.dumps({"question": "Q?", "answer": "9" * 5000}) + "\n")
    assert "5,000 digits" in message and len(message) < 600


# -- item 10 and item 6: file encodings, nesting, characters -------------------------------------------------
def test_jsonl_with_u2028_inside_a_string_loads(tmp_path):
    line = json.dumps({"question": "Two lines\u2028here?", "answer": "3"}, ensure_ascii=False)
    (problem,) = problems_from(tmp_path, "p.jsonl", line + "\n")
    assert problem.question == "Two lines\u2028here?"


@pytest.mark.parametrize("name, body", [
    ("p.json", json.dumps([{"question": "Q?", "answer": "3"}])),
    ("p.jsonl", json.dumps({"question": "Q?", "answer": "3"}) + "\n"),
])
def test_a_utf8_bom_is_accepted_in_json_and_jsonl(tmp_path, name, body):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert [p.answer for p in load_problem_file(path)] == ["3"]


@pytest.mark.parametrize("name, body", [("deep.json", DEEP), ("deep.jsonl", DEEP + "\n"),
                                        ("deep_value.jsonl", '{"question": "Q?", "answer": "1", "x": ' + DEEP + "}\n")])
def test_deeply_nested_problem_files_get_a_message(tmp_path, name, body):
    assert "deeper than 64 levels" in problem_error(tmp_path, name, body)


def test_a_million_character_question_is_refused_not_cut_silently(tmp_path):
    message = problem_error(tmp_path, "p.jsonl", json.dumps({"question": "x" * 1_000_000, "answer": "3"}) + "\n")
    assert "1,000,000 characters" in message and "shorten it" in message


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


@pytest.mark.parametrize("index", ["³", "9" * 5000, "-1", "1.5"])
def test_bad_neuronpedia_indices_get_a_short_message(index):
    with pytest.raises(NeuronSetError) as info:
        from_neuronpedia([{"layer": "1", "index": index}], model=fake_model())
    assert "non-negative integer index" in str(info.value) and len(str(info.value)) < 500


def test_schema_messages_stay_short_for_huge_values(tmp_path):
    doc = json.loads(NeuronSet.create([Unit.neuron(1, 2)], fake_model()).to_json())
    doc["name"] = ["x" * 9_000_000]  # the schema wants a string; jsonschema quotes the whole value
    path = tmp_path / "set.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(NeuronSetError) as info:
        NeuronSet.load(path)
    assert len(str(info.value)) < 1000


def test_pairs_files_with_bom_u2028_and_deep_nesting(tmp_path):
    row = {"question": "Q\u2028?", "chosen": "a #### 1", "rejected": "a #### 2"}
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(row, ensure_ascii=False) + "\n").encode())
    assert load_pairs(path)[0].question == "Q\u2028?"
    path.write_text('{"question": "Q", "chosen": "a", "rejected": "b", "meta": ' + DEEP + "}\n")
    with pytest.raises(PairDataError, match="deeper than 64 levels"):
        load_pairs(path)
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(PairDataError, match="not UTF-8"):
        load_pairs(path)


# -- printing ----------------------------------------------------------------------------------------------
def test_escape_sequences_are_shown_not_sent_to_the_terminal(tmp_path, capsys):
    from yfpo_core.cli import main

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "Q\x1b[2J\x1b]0;pwned\x07?", "answer": "3"}) + "\n")
    assert main(["problems", "--source", str(path)]) == 0
    assert main(["problems", "--source", str(path), "--show", "a"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b[2J" in out


def test_user_messages_are_one_bounded_printable_line():
    from yfpo_core.errors import clip, printable, user_message

    message = user_message(YfpoError("bad\nthing \x1b[31m" + "x" * 10_000 + " fix: do y"))
    assert "\n" not in message and "\x1b" not in message and len(message) <= 400
    assert message.startswith("bad thing") and message.endswith("fix: do y")  # both ends survive
    assert user_message(ValueError("a bug")) is None  # bugs keep their traceback
    assert clip("short") == "short" and printable("a\ud800b") == "a\\ud800b"
