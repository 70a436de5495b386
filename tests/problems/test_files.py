"""Problem files (yfpo_core.problems.files): JSONL, JSON, CSV and Parquet; every bad input names the file,
the row and the fix."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import DEEP
from yfpo_core.errors import ProblemDataError
from yfpo_core.problems import load_problems
from yfpo_core.problems.answers import parse_number
from yfpo_core.problems.files import load_problem_file


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_jsonl_with_solutions_and_bare_numbers(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
            {"question": "What is 1,000 + 200?", "answer": "$1,200", "level": "easy"},
            {"question": "Half of 7?", "answer": 3.5}]
    path.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    problems = load_problems(str(path))
    assert [p.id for p in problems] == ["mine/1", "mine/2", "mine/3"]
    assert [p.answer for p in problems] == ["7", "1200", "3.5"]
    assert problems[0].solution == rows[0]["answer"]
    assert problems[1].solution == "#### 1200"
    assert problems[1].meta == {"level": "easy", "file": str(path), "row": 2, "line": 2}
    assert problems[2].meta["line"] == 4  # a blank line is skipped but lines still count
    assert all(p.source == f"file:{path.resolve()}" for p in problems)
    assert load_problems(str(path), 2) == problems[:2]


def test_json_list_with_ids_and_a_solution_column(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps([
        {"id": "a", "question": "Q1?", "answer": 18, "solution": "9*2=18"},
        {"id": "b", "question": "Q2?", "answer": "5", "solution": "2+3=5\n#### 5"},
    ]))
    first, second = load_problems(str(path))
    assert (first.id, first.answer, first.solution) == ("a", "18", "9*2=18\n#### 18")
    assert (second.id, second.solution) == ("b", "2+3=5\n#### 5")


def test_csv_reads_text_cells_and_matches_columns_case_insensitively(tmp_path):
    path = write(tmp_path / "sheet.csv", '''
        ID,Question,Answer
        007,"Sum of 1,000 and 200?","1,200"
        ,Empty id gets a default?,-4
    ''')
    first, second = load_problems(str(path))
    assert (first.id, first.answer) == ("007", "1200")
    assert (second.id, second.answer, second.solution) == ("sheet/2", "-4", "#### -4")


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "table.parquet"
    pd.DataFrame({"question": ["Q1?", "Q2?"], "answer": [12, 7], "difficulty": [1, 2]}).to_parquet(path)
    problems = load_problems(str(path))
    assert [(p.id, p.answer, p.solution) for p in problems] == [("table/1", "12", "#### 12"),
                                                                ("table/2", "7", "#### 7")]
    assert problems[0].meta["difficulty"] == 1
    json.dumps(problems[0].to_dict())  # meta holds plain Python values


BAD_FILES = [
    # (file name, content, fragments the message must contain)
    ("empty.jsonl", "", ["is empty", "'question'"]),
    ("blank.json", "  \n", ["is empty"]),
    ("empty.csv", "", ["is empty"]),
    ("header_only.csv", "question,answer\n", ["has no rows"]),
    ("columns.csv", "q,a\nWhat?,3\n", ["missing the column(s) 'question', 'answer'", "'q', 'a'", "Rename"]),
    ("columns.jsonl", '{"prompt": "x", "answer": "1"}\n', ["missing the column(s) 'question'", "'prompt'"]),
    ("noquestion.jsonl", '{"question": "Q?", "answer": "1"}\n{"question": "  ", "answer": "2"}\n',
     ["row 2 (line 2)", "question is empty", "fill it in or delete the row"]),
    ("noanswer.csv", "question,answer\nQ1?,1\nQ2?,\n", ["row 2", "answer is empty", "as a number"]),
    ("words.jsonl", '{"question": "Q?", "answer": "eighteen"}\n',
     ["row 1 (line 1)", "'eighteen' has no number", "'#### 18'"]),
    ("nomarker.json", '[{"question": "Q?", "answer": "2 and 3 make 5"}]',
     ["row 1", "holds more than one number", "'#### 18'"]),
    ("emptymarker.jsonl", '{"question": "Q?", "answer": "so... ####"}\n',
     ["row 1", "after '####' cannot be read", "has no number", "'#### 18'"]),
    ("disagree.jsonl", '{"question": "Q?", "answer": "3", "solution": "1+1=2 #### 2"}\n',
     ["row 1", "'#### 2' but the answer is 3", "make them agree"]),
    ("dupes.csv", "id,question,answer\nx,Q1?,1\ny,Q2?,2\nx,Q3?,3\n",
     ["row 3", "'x' is already used by row 1", "give every row its own id"]),
    ("broken.jsonl", '{"question": "Q?", "answer": "1"}\n{"question": "Q2?", "answer": \n',
     ["line 2 is not valid JSON", "fix that line"]),
    ("list.jsonl", '["Q?", "1"]\n', ["line 1 holds a JSON list, not an object", "one object per line"]),
    ("lines.json", '{"question": "Q?", "answer": "1"}\n{"question": "Q2?", "answer": "2"}\n',
     ["is not valid JSON", "rename the file to .jsonl"]),
    ("object.json", '{"question": "Q?", "answer": "1"}', ["not a list", "write a list of objects"]),
    ("items.json", '[{"question": "Q?", "answer": "1"}, "Q2?"]', ["row 2 is a JSON str", "must be an object"]),
    ("notes.txt", "question,answer\n", ["unknown extension '.txt'", ".jsonl, .json, .csv, .parquet"]),
]


@pytest.mark.parametrize("name, content, fragments", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_problem_files_get_a_clear_message(tmp_path, name, content, fragments):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ProblemDataError) as info:
        load_problems(str(path))
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "problems.csv"
    with pytest.raises(ProblemDataError) as info:
        load_problems(str(path))
    assert str(path) in str(info.value) and "does not exist" in str(info.value)


def test_broken_parquet_names_the_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(ProblemDataError) as info:
        load_problems(str(path))
    assert str(path) in str(info.value) and "re-export" in str(info.value)


def test_files_take_no_options(tmp_path):
    path = tmp_path / "ok.jsonl"
    path.write_text('{"question": "Q?", "answer": "1"}\n')
    with pytest.raises(ProblemDataError, match="no option"):
        load_problems(str(path), split="test")


def problems_from(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return load_problem_file(path)


def problem_error(tmp_path, name: str, content: str) -> str:
    with pytest.raises(ProblemDataError) as info:
        problems_from(tmp_path, name, content)
    return str(info.value)


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


def test_a_5000_digit_answer_gets_a_message(tmp_path):
    message = problem_error(tmp_path, "p.jsonl", json.dumps({"question": "Q?", "answer": "9" * 5000}) + "\n")
    assert "5,000 digits" in message and len(message) < 600


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
