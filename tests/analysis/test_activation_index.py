"""The activation index (yfpo_core.analysis.activation_index) against brute force on a tiny toy model: exact
statistics, top contexts, samples, an interrupted build, where it lives. Dashboards and search have their own
test modules; the fixtures are in tests/analysis/conftest.py."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import INDEX_TEXTS
from yfpo_core.analysis.activation_index import (
    EDGES,
    INDEX_FILE,
    META_FILE,
    STATE_FILE,
    STATE_META,
    TOP_K,
    TOP_WINDOW,
    build_index,
    find_index,
)


def test_exact_statistics_match_brute_force(index_built, index_brute):
    x = torch.cat([a for _, a in index_brute])
    math_x = torch.cat([a for (_, a), t in zip(index_brute, INDEX_TEXTS) if t.math])
    other_x = torch.cat([a for (_, a), t in zip(index_brute, INDEX_TEXTS) if not t.math])
    assert index_built.n_tokens == len(x) == sum(len(i) for i, _ in index_brute)
    for column in (0, 17, 64 + 5, 127):
        unit = index_built.unit_at(column)
        stats = index_built.stats(unit)
        assert stats.mean == pytest.approx(float(x[:, column].double().mean()), abs=1e-6)
        assert stats.std == pytest.approx(float(x[:, column].double().std(unbiased=False)), abs=1e-5)
        assert stats.max == pytest.approx(float(x[:, column].max()))
        assert stats.min == pytest.approx(float(x[:, column].min()))
        assert stats.density == pytest.approx(float((x[:, column] > 0).double().mean()))
        assert stats.math_mean == pytest.approx(float(math_x[:, column].double().mean()), abs=1e-6)
        assert stats.nonmath_mean == pytest.approx(float(other_x[:, column].double().mean()), abs=1e-6)
        hist = index_built.rows(column, ["hist"])["hist"]
        assert hist.tolist() == torch.bincount(torch.bucketize(x[:, column], EDGES), minlength=len(EDGES) + 1).tolist()


def test_top_contexts_are_the_corpus_top_k_with_their_windows(index_built, index_brute):
    x = torch.cat([a for _, a in index_brute])
    for column in (3, 64 + 40):
        rows = index_built.rows(column, ["top_values", "top_tokens", "top_windows"])
        expected = x[:, column].topk(TOP_K)
        torch.testing.assert_close(rows["top_values"], expected.values)
        for token, window in zip(rows["top_tokens"].tolist(), rows["top_windows"]):
            assert float(x[token, column]) == pytest.approx(float(window[TOP_WINDOW]), abs=1e-2)
            text = index_built.text_of(token)
            lo, hi = text["offset"], text["offset"] + text["length"]
            for j, value in enumerate(window.float().tolist()):
                where = token - TOP_WINDOW + j
                if lo <= where < hi:
                    assert value == pytest.approx(float(x[where, column]), abs=2e-2, rel=2e-3)
                else:
                    assert math.isnan(value)  # never across a text boundary


def test_samples_are_active_tokens_with_their_values(index_built, index_brute):
    x = torch.cat([a for _, a in index_brute])
    for column in range(0, 128, 9):
        rows = index_built.rows(column, ["sample_values", "sample_tokens"])
        tokens = [t for t in rows["sample_tokens"].tolist() if t >= 0]
        assert len(tokens) == min(32, int((x[:, column] > 0).sum())) and len(set(tokens)) == len(tokens)
        for t, v in zip(rows["sample_tokens"].tolist(), rows["sample_values"].tolist()):
            if t >= 0:
                assert x[t, column] > 0 and v == pytest.approx(float(x[t, column]))


def test_an_interrupted_build_resumes_to_the_same_index(index_model, index_built, tmp_path):
    folder = tmp_path / "resumed"
    build_index(index_model, INDEX_TEXTS, folder=folder, stop_after=2)
    assert (folder / STATE_FILE).exists() and not (folder / INDEX_FILE).exists()
    assert json.loads((folder / STATE_META).read_text())["done"] == 2

    def stop_at_4(done, total, message=""):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(index_model, INDEX_TEXTS, folder=folder, progress=stop_at_4)
    assert json.loads((folder / STATE_META).read_text())["done"] == 4
    build_index(index_model, INDEX_TEXTS, folder=folder)
    assert not (folder / STATE_FILE).exists()
    again, first = load_file(str(folder / INDEX_FILE)), load_file(str(index_built.folder / INDEX_FILE))
    assert again.keys() == first.keys()
    for name in first:
        torch.testing.assert_close(again[name], first[name], equal_nan=True, atol=0, rtol=0, msg=name)


def test_index_lives_in_the_user_cache_and_is_found(index_model):
    folder = build_index(index_model, INDEX_TEXTS[:2], corpus_name="two")
    assert "activation-index" in str(folder) and (folder / META_FILE).exists()
    assert find_index(index_model, corpus_name="two").folder == folder
    assert find_index(index_model, corpus_name="other") is None
    assert build_index(index_model, INDEX_TEXTS[:2], corpus_name="two") == folder  # built once
