"""The corpus dashboard on Unit detail and the Search page (Streamlit AppTest, the tiny model of test_app)."""

from __future__ import annotations

from app import state
from tests.app.test_app import no_shipped_saes, run_app, runs_dir, settle, texts, tiny_model  # noqa: F401
from yfpo_core.analysis.activation_index import build_index, default_corpus
from yfpo_core.units.unit import Unit

UNIT_PAGE = {state.UNIT_SOURCE: "type one", state.UNIT_TYPED: "L1N4", state.UNIT_PROBLEM_SOURCE: "toy",
             state.UNIT_PROBLEM_LIMIT: 3}


def test_unit_page_builds_the_index_then_draws_the_corpus_dashboard(tiny_model):
    at = settle(run_app("unit", **UNIT_PAGE))
    assert not at.exception, at.exception
    assert "Over the whole corpus (activation index)" in [s.value for s in at.subheader]
    assert any("No activation index" in i.value for i in at.info)
    at.button(key="index_build").click().run()
    at = settle(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    labels = {m.label for m in at.metric}
    assert {"corpus max", "density (> 0)", "math mean", "non-math mean", "attribution score"} <= labels
    assert any("300 texts" in c.value and "drawn in" in c.value for c in at.caption)
    assert "**Top contexts over the corpus**" in texts(at)
    assert len(at.expander) >= 3  # quantile groups
    html_before = len(at.get("html"))
    at.text_area(key="index_free_text").input("Q: Ann has 3 pens.\nA: 3").run()
    assert not at.exception, at.exception
    assert len(at.get("html")) == html_before + 1


def test_search_page_ranks_units_opens_and_adds_them(tiny_model):
    build_index(tiny_model, default_corpus(tiny_model)[:40], corpus_name="default")
    at = run_app("search")
    assert not at.exception, at.exception
    assert at.title[0].value == "Search"
    assert "activation **" in texts(at)
    add = next(b for b in at.button if b.key.startswith("search_add_"))
    label = add.key.removeprefix("search_add_")
    add.click().run()
    assert Unit.parse(label) in at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    at.radio(key="search_source").set_value("index: top corpus contexts").run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert "top contexts on token" in shown or any("No unit found" in i.value for i in at.info)
    at.radio(key="search_source").set_value("live, on this text").run()
    at.radio(key="search_rank_by").set_value("relative").run()
    assert "of its corpus max" in texts(at)
    next(b for b in at.button if b.key.startswith("search_open_")).click().run()
    assert not at.exception, at.exception
    assert at.session_state[state.UNIT_FOCUS].startswith("blocks.")

