"""The activation index, its dashboards and search, against brute force on a tiny toy model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import attribution_toy
from yfpo_core.analysis.activation_index import (
    EDGES,
    INDEX_FILE,
    META_FILE,
    STATE_FILE,
    STATE_META,
    TOP_K,
    TOP_WINDOW,
    ActivationIndex,
    CorpusText,
    build_index,
    default_corpus,
    find_index,
    read_corpus,
)
from yfpo_core.attribution.methods import activations
from yfpo_core.units.space import neuron_space
from yfpo_core.analysis.dashboards import shade_text, unit_dashboard
from yfpo_core.errors import YfpoError
from yfpo_core.analysis.unit_search import search_index, search_live, text_tokens
from yfpo_core.units.unit import Unit

TEXTS = [CorpusText("m/0", "Q: Ann has 12 pens. She buys 7 more.\nA: 12+7=19. #### 19\n", True, "t"),
         CorpusText("o/0", "Q: What colour is the sky?\nA: blue\n", False, "t"),
         CorpusText("m/1", "Q: Ben has 30 cats and gives 9 away.\nA: 30-9=21. #### 21\n", True, "t"),
         CorpusText("o/1", "Q: Who wrote the letter?\nA: Ann did, with a pen.\n", False, "t"),
         CorpusText("m/2", "Q: 6 boxes hold 4 eggs each.\nA: 6*4=24. #### 24\n", True, "t")]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return attribution_toy()


@pytest.fixture(scope="module")
def brute(model):
    """Every text's token ids and activations ``[pos, units]``."""
    space = neuron_space(model.model)
    out = []
    with torch.no_grad():
        for t in TEXTS:
            ids = model.encode_prompt(t.text)
            out.append((ids, activations(model, space, tuple(ids)).reshape(len(ids), -1).float()))
    return out


@pytest.fixture(scope="module")
def built(model, tmp_path_factory):
    folder = build_index(model, TEXTS, folder=tmp_path_factory.mktemp("index") / "idx")
    return ActivationIndex(folder)


def test_exact_statistics_match_brute_force(built, brute):
    x = torch.cat([a for _, a in brute])
    math_x = torch.cat([a for (_, a), t in zip(brute, TEXTS) if t.math])
    other_x = torch.cat([a for (_, a), t in zip(brute, TEXTS) if not t.math])
    assert built.n_tokens == len(x) == sum(len(i) for i, _ in brute)
    for column in (0, 17, 64 + 5, 127):
        unit = built.unit_at(column)
        stats = built.stats(unit)
        assert stats.mean == pytest.approx(float(x[:, column].double().mean()), abs=1e-6)
        assert stats.std == pytest.approx(float(x[:, column].double().std(unbiased=False)), abs=1e-5)
        assert stats.max == pytest.approx(float(x[:, column].max())) and stats.min == pytest.approx(float(x[:, column].min()))
        assert stats.density == pytest.approx(float((x[:, column] > 0).double().mean()))
        assert stats.math_mean == pytest.approx(float(math_x[:, column].double().mean()), abs=1e-6)
        assert stats.nonmath_mean == pytest.approx(float(other_x[:, column].double().mean()), abs=1e-6)
        hist = built.rows(column, ["hist"])["hist"]
        assert hist.tolist() == torch.bincount(torch.bucketize(x[:, column], EDGES), minlength=len(EDGES) + 1).tolist()


def test_top_contexts_are_the_corpus_top_k_with_their_windows(built, brute):
    x = torch.cat([a for _, a in brute])
    for column in (3, 64 + 40):
        rows = built.rows(column, ["top_values", "top_tokens", "top_windows"])
        expected = x[:, column].topk(TOP_K)
        torch.testing.assert_close(rows["top_values"], expected.values)
        for token, window in zip(rows["top_tokens"].tolist(), rows["top_windows"]):
            assert float(x[token, column]) == pytest.approx(float(window[TOP_WINDOW]), abs=1e-2)
            text = built.text_of(token)
            lo, hi = text["offset"], text["offset"] + text["length"]
            for j, value in enumerate(window.float().tolist()):
                where = token - TOP_WINDOW + j
                if lo <= where < hi:
                    assert value == pytest.approx(float(x[where, column]), abs=2e-2, rel=2e-3)
                else:
                    assert math.isnan(value)  # never across a text boundary


def test_samples_are_active_tokens_with_their_values(built, brute):
    x = torch.cat([a for _, a in brute])
    for column in range(0, 128, 9):
        rows = built.rows(column, ["sample_values", "sample_tokens"])
        tokens = [t for t in rows["sample_tokens"].tolist() if t >= 0]
        assert len(tokens) == min(32, int((x[:, column] > 0).sum())) and len(set(tokens)) == len(tokens)
        for t, v in zip(rows["sample_tokens"].tolist(), rows["sample_values"].tolist()):
            if t >= 0:
                assert x[t, column] > 0 and v == pytest.approx(float(x[t, column]))


def test_an_interrupted_build_resumes_to_the_same_index(model, built, tmp_path):
    folder = tmp_path / "resumed"
    build_index(model, TEXTS, folder=folder, stop_after=2)
    assert (folder / STATE_FILE).exists() and not (folder / INDEX_FILE).exists()
    assert json.loads((folder / STATE_META).read_text())["done"] == 2

    def stop_at_4(done, total, message=""):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(model, TEXTS, folder=folder, progress=stop_at_4)
    assert json.loads((folder / STATE_META).read_text())["done"] == 4
    build_index(model, TEXTS, folder=folder)
    assert not (folder / STATE_FILE).exists()
    again, first = load_file(str(folder / INDEX_FILE)), load_file(str(built.folder / INDEX_FILE))
    assert again.keys() == first.keys()
    for name in first:
        torch.testing.assert_close(again[name], first[name], equal_nan=True, atol=0, rtol=0, msg=name)


def test_index_lives_in_the_user_cache_and_is_found(model):
    folder = build_index(model, TEXTS[:2], corpus_name="two")
    assert "activation-index" in str(folder) and (folder / META_FILE).exists()
    assert find_index(model, corpus_name="two").folder == folder
    assert find_index(model, corpus_name="other") is None
    assert build_index(model, TEXTS[:2], corpus_name="two") == folder  # built once


def test_dashboard_from_the_index(built, brute, model):
    x = torch.cat([a for _, a in brute])
    unit = Unit.neuron(1, 40)
    column = built.column(unit)
    dash = unit_dashboard(built, unit, model, attribution=0.25, n_top=5)
    assert [e.value for e in dash.top] == pytest.approx(x[:, column].topk(5).values.tolist())
    best = int(x[:, column].argmax())
    ids = torch.cat([torch.tensor(i) for i, _ in brute])
    assert dash.top[0].token == model.decode([int(ids[best])]) and dash.top[0].text_id == built.text_of(best)["id"]
    assert dash.top[0].values[dash.top[0].center] == pytest.approx(dash.top[0].value, abs=1e-2)
    lows = [q["low"] for q in dash.quantiles]
    assert lows == sorted(lows, reverse=True) and all(e.value > 0 for q in dash.quantiles for e in q["examples"])
    assert sum(b["count"] for b in dash.histogram) == built.n_tokens
    assert len(dash.promoted) == 10 and dash.attribution == 0.25
    assert dash.stats["max"] == pytest.approx(float(x[:, column].max()))
    assert json.loads(json.dumps(dash.to_dict()))["unit"] == unit.label
    with pytest.raises(YfpoError, match="out of range"):
        built.column(Unit.neuron(1, 64))
    with pytest.raises(YfpoError, match="not in this index"):
        built.column(Unit.neuron(5, 0))


def test_free_text_shading_equals_the_model_activations(model, brute):
    unit = Unit.neuron(0, 11)
    tokens, values = shade_text(model, unit, TEXTS[2].text)
    ids, acts = brute[2]
    assert tokens == [model.decode([i]) for i in ids] == text_tokens(model, TEXTS[2].text)
    assert values == pytest.approx(acts[:, 11].tolist(), abs=1e-6)


def test_search_live_and_from_the_index(model, built, brute):
    ids, acts = brute[0]
    rows = search_live(model, TEXTS[0].text, 5, k=10)
    assert len(rows) == 10 and rows[0]["activation"] == pytest.approx(float(acts[5].max()))
    assert Unit.parse(rows[0]["label"]) == built.unit_at(int(acts[5].argmax()))
    relative = search_live(model, TEXTS[0].text, 5, k=5, index=built, rank_by="relative")
    assert all(r["of_max"] <= 1.0 + 1e-4 for r in relative)
    assert [r["of_max"] for r in relative] == sorted((r["of_max"] for r in relative), reverse=True)
    with pytest.raises(ValueError, match="outside the text"):
        search_live(model, "Q: hi", 99)
    found = search_index(built, model, "9", k=5)
    x = torch.cat([a for _, a in brute])
    flat_ids = torch.cat([torch.tensor(i) for i, _ in brute])
    for row in found:
        column = built.column(Unit.parse(row["label"]))
        top = x[:, column].topk(TOP_K).indices
        assert row["top_contexts_on_token"] == int((flat_ids[top] == model.encode("9")[0]).sum())
    with pytest.raises(ValueError, match="one token at a time"):
        search_index(built, model, "19", k=5)


def test_default_corpus_and_user_corpus_files(model, tmp_path):
    corpus = default_corpus(model)
    assert {t.math for t in corpus} == {True, False} and len(corpus) == 300
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "Q: 1+1\\nA: 2", "math": true}\n\n{"id": "x", "text": "Q: hi\\nA: yo"}\n')
    texts = read_corpus(path)
    assert [(t.id, t.math) for t in texts] == [("c/1", True), ("x", False)]
    path.write_text('{"txt": 1}\n')
    with pytest.raises(YfpoError, match="line 1"):
        read_corpus(path)


def test_cli_index_build_inspect_and_search(model, tmp_path, capsys):
    from yfpo_core.cli import main
    from yfpo_core.models import register_model

    register_model("tiny-index", lambda device: model)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t.text, "math": t.math, "id": t.id}) for t in TEXTS))
    assert main(["inspect", "--model", "tiny-index", "--unit", "L1N40", "--from-index"]) == 2
    assert "yfpo index build --model tiny-index" in capsys.readouterr().err
    assert main(["index", "build", "--model", "tiny-index", "--corpus", str(corpus)]) == 0
    assert "index of 128 units over 5 texts" in capsys.readouterr().out
    assert main(["inspect", "--model", "tiny-index", "--unit", "L1N40", "--from-index"]) == 0
    out = capsys.readouterr().out
    assert "Top contexts" in out and "Quantile" in out and "math mean" in out and "drawn from the index" in out
    assert main(["search", "--model", "tiny-index", "--text", TEXTS[0].text, "--position", "5", "--k", "3"]) == 0
    assert "Units most active on token 5" in capsys.readouterr().out
    assert main(["search", "--model", "tiny-index", "--token", "9", "--corpus", str(corpus)]) == 0
    assert "top_contexts_on_token" in capsys.readouterr().out
