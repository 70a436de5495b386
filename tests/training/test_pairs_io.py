"""Preference pairs on disk (yfpo_core.training.pairs_io)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import DEEP
from yfpo_core.errors import YfpoError
from yfpo_core.models.prompts import PlainPromptFormat
from yfpo_core.problems import load_problems
from yfpo_core.training.pairs import PairDataError, PreferencePair, corrupted_pairs
from yfpo_core.training.pairs_io import load_pairs, save_pairs

FMT = PlainPromptFormat()


@pytest.fixture(scope="module")
def gsm():
    return load_problems("gsm8k-test-100", limit=20)


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


def test_saved_pairs_load_back_identically(tmp_path, gsm):
    pairs = corrupted_pairs(gsm[:5], FMT, mode="mixed")
    pairs.append(PreferencePair(id="x#1", problem_id="x", question="Q? ünïcode", chosen="a = 1", rejected="a = 2",
                                gold_answer="1", source="on-policy", meta={"n": [1, 2], "t": 0.8}))
    path = save_pairs(pairs, tmp_path / "sub" / "pairs.jsonl")
    assert load_pairs(path) == pairs
    assert [PreferencePair.from_dict(p.to_dict()) for p in pairs] == pairs
    save_pairs(pairs[:2], path)  # overwrite in place, no temporary file left behind
    assert load_pairs(path) == pairs[:2] and [f.name for f in path.parent.iterdir()] == ["pairs.jsonl"]


def test_user_rows_get_ids_problem_ids_and_source(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "answer": 4},
            {},  # written below as a blank line
            {"question": "What is 2+2?", "chosen": "2+2=4", "rejected": "2+2=22", "id": "b"}]
    path.write_text("\n".join(json.dumps(r) if r else "   " for r in rows) + "\n")
    first, second = load_pairs(path)
    assert (first.id, first.question, first.gold_answer, first.source) == ("mine/1", "What is 2+2?", "4",
                                                                          f"file:{path}")
    assert second.id == "b" and second.gold_answer == "" and second.meta == {}
    assert first.problem_id == second.problem_id  # same question, same problem: kept together by split_pairs


@pytest.mark.parametrize("content, message", [
    ("", r"empty\.jsonl is empty; give a JSONL file"),
    ("\n  \n", r"empty\.jsonl is empty"),
    ('{"question": "q", "chosen": "a", "rejected": "b"}\n{"question": "q", "chosen": \n',
     r"line 2: not valid JSON .*each line must be one JSON object"),
    ('["q", "a", "b"]\n', r"line 1: expected a JSON object .* got list"),
    ('{"question": "q", "chosen": "a"}\n', r"line 1: missing field 'rejected'"),
    ('{"chosen": "a", "rejected": "b"}\n', r"line 1: missing field 'question' or 'prompt'"),
    ('{"question": "q", "chosen": " ", "rejected": "b"}\n', r"line 1: field 'chosen' must be non-empty text"),
    ('{"question": "q", "chosen": 3, "rejected": "b"}\n', r"line 1: field 'chosen' must be non-empty text"),
    ('{"question": "q", "chosen": "same", "rejected": "same"}\n', r"line 1: 'chosen' and 'rejected' are the same"),
    ('{"question": "q", "chosen": "a", "rejected": "b", "meta": 1}\n', r"line 1: 'meta' must be a JSON object"),
    ('{"id": "p", "question": "q", "chosen": "a", "rejected": "b"}\n\n'
     '{"id": "p", "question": "r", "chosen": "a", "rejected": "b"}\n',
     r"line 3: id 'p' is already used on line 1; ids must be unique"),
])
def test_bad_pair_files_say_where_and_how_to_fix(tmp_path, content, message):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(PairDataError, match=message) as err:
        load_pairs(path)
    assert isinstance(err.value, YfpoError)


def test_missing_pair_file(tmp_path):
    with pytest.raises(PairDataError, match=r"nope\.jsonl does not exist; give a JSONL file"):
        load_pairs(tmp_path / "nope.jsonl")
