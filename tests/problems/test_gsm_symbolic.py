"""GSM-Symbolic variants (yfpo_core.problems.gsm_symbolic): real generation on 2 fast templates, slow
templates skipped and bad variants dropped (fake generators), options and a damaged cache."""

from __future__ import annotations

import re
import time

import pytest

from tests.helpers import marked_answer
from yfpo_core.errors import ProblemDataError
from yfpo_core.problems import Problem, gsm_symbolic, load_problems
from yfpo_core.problems.answers import format_number


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
