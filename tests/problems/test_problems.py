"""The registry of problem sources (yfpo_core.problems.load_problems, list_sources): names, options, limits,
progress. Each source has its own test module (test_gsm, test_gsm_symbolic, test_files, test_hub, ...)."""

from __future__ import annotations

import pytest

from yfpo_core.errors import ProblemDataError
from yfpo_core.problems import SourceInfo, list_sources, load_problems

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
