"""The corpus dashboard on Unit detail and the Search page, over neurons and SAE features (Streamlit AppTest,
the tiny model and tiny SAE of test_app)."""

from __future__ import annotations

import re

import pytest
import torch

from app import state
from tests.app.test_app import (  # noqa: F401
    no_shipped_saes,
    run_app,
    runs_dir,
    settle,
    texts,
    tiny_model,
    tiny_sae,
)
from yfpo_core.analysis.activation_index import build_index, default_corpus, find_index
from yfpo_core.saes.sae import load_sae
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



# -- Search over the features of an SAE ----------------------------------------------------------------------------
SEARCH_TEXT = "Q: Ann has 3 pens and buys 4.\nA: 3+4=7"
ROW = re.compile(r"^`sae:tiny-sae:(\d+)` · (activation|top contexts on token) \*\*([^*]+)\*\*(.*)$")


def search_features(folder, position: int, **session):
    return run_app("search", **{state.SEARCH_UNIT_TYPE: "SAE features", state.SEARCH_SAE_CHOICE: "a local folder",
                                state.SEARCH_SAE_PATH: str(folder), state.SEARCH_TEXT: SEARCH_TEXT,
                                state.SEARCH_TOKEN: position, **session})


def shown_rows(at) -> list[tuple[int, str, float, str]]:
    """(feature index, what is ranked, value as shown, the rest) of every result row, in page order (values
    are shown to 3 significant digits: compared within that rounding)."""
    rows = [ROW.match(m.value) for m in at.markdown]
    return [(int(r.group(1)), r.group(2), float(r.group(3)), r.group(4)) for r in rows if r]


def feature_acts(model, sae, text: str, position: int) -> torch.Tensor:
    """The SAE's feature activations at one token, computed here without the search: the model's activation
    at the SAE's hook, encoded by the SAE."""
    ids = torch.tensor([model.encode_prompt(text)])
    with torch.no_grad():
        _, cache = model.model.run_with_cache(ids, names_filter=sae.hook_name)
        return sae.sae.encode(cache[sae.hook_name][0, position]).float()


@pytest.fixture
def loaded_sae(tiny_model, tiny_sae):
    return load_sae(str(tiny_sae), tiny_model)


def test_search_page_ranks_the_features_of_an_sae_live_adds_and_opens_them(tiny_model, tiny_sae, loaded_sae):
    position = 9
    at = search_features(tiny_sae, position)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("tiny-sae" in c.value and "16 features" in c.value for c in at.caption)
    assert at.selectbox(key=state.SEARCH_TOKEN).value == position
    rows = shown_rows(at)
    expected = feature_acts(tiny_model, loaded_sae, SEARCH_TEXT, position)
    assert len(rows) == 16 and {r[0] for r in rows} == set(range(16))  # every feature, ranked (k = 20 > 16)
    assert all(kind == "activation" for _, kind, _, _ in rows)
    for index, _, value, _ in rows:
        assert value == pytest.approx(float(expected[index]), rel=6e-3, abs=1e-3), index
    assert rows[0][0] == int(expected.argmax()) and expected.max() > 0
    assert [v for _, _, v, _ in rows] == sorted((v for _, _, v, _ in rows), reverse=True)
    assert [m.value for m in at.markdown if re.fullmatch(r"\*\*\d+\*\*", m.value)][:3] == ["**1**", "**2**", "**3**"]
    # without an index of these features, ranking from it is off (a neuron index would not do)
    assert at.radio(key=state.SEARCH_SOURCE).disabled and at.radio(key=state.SEARCH_RANK_BY).disabled

    top, second = rows[0][0], rows[1][0]
    at.button(key=f"search_add_sae:tiny-sae:{top}").click().run()
    assert not at.exception, at.exception
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert current.units_only() == [Unit("sae_feature", "blocks.1.mlp.hook_post", top, sae_id="tiny-sae")]
    assert current.sae["tiny-sae"]["path_or_release"] == str(tiny_sae) and current.sae["tiny-sae"]["d_sae"] == 16
    assert at.button(key=f"search_add_sae:tiny-sae:{top}").disabled  # in the set now
    at.button(key=f"search_open_sae:tiny-sae:{second}").click().run()
    settle(at)
    assert not at.exception, at.exception
    assert at.title[0].value == "Unit detail"
    assert at.session_state[state.UNIT_TYPED] == f"sae:tiny-sae:{second}"
    assert at.subheader[0].value == f"L1F{second}"


def test_search_page_ranks_features_relative_to_their_index_and_from_it(tiny_model, tiny_sae, loaded_sae):
    build_index(tiny_model, default_corpus(tiny_model)[:40], corpus_name="default")  # neurons: not this one
    assert find_index(tiny_model, loaded_sae) is None
    build_index(tiny_model, default_corpus(tiny_model)[:40], sae=loaded_sae, corpus_name="default")
    maxima = find_index(tiny_model, loaded_sae).whole("max")
    assert len(maxima) == 16
    position = 9
    at = search_features(tiny_sae, position, **{state.SEARCH_RANK_BY: "relative"})
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    rows = shown_rows(at)
    acts = feature_acts(tiny_model, loaded_sae, SEARCH_TEXT, position)
    relative = acts / maxima.clamp_min(1e-6)
    assert len(rows) == 16 and rows[0][0] == int(relative.argmax())
    for index, _, value, rest in rows:
        assert value == pytest.approx(float(acts[index]), rel=6e-3, abs=1e-3)
        assert rest == f" · {float(acts[index] / max(float(maxima[index]), 1e-6)):.0%} of its corpus max"

    at.radio(key=state.SEARCH_SOURCE).set_value("index: top corpus contexts").run()
    assert not at.exception, at.exception
    rows = shown_rows(at)
    assert rows or any("No unit found" in i.value for i in at.info)
    assert all(kind == "top contexts on token" for _, kind, _, _ in rows)


def test_search_page_says_why_it_cannot_search_an_sae(tiny_model, tmp_path):
    (tmp_path / "not-an-sae").mkdir()
    at = run_app("search", **{state.SEARCH_UNIT_TYPE: "SAE features", state.SEARCH_SAE_CHOICE: "a local folder",
                              state.SEARCH_SAE_PATH: str(tmp_path / "not-an-sae")})
    assert not at.exception, at.exception
    assert any("no cfg.json" in e.value for e in at.error)
    assert not [b for b in at.button if b.key.startswith("search_")]
    at = run_app("search", **{state.SEARCH_UNIT_TYPE: "SAE features"})  # the default SAE is not made yet
    assert not at.exception, at.exception
    assert any("not there yet" in w.value for w in at.warning)
    assert any("yfpo sae train" in c.value for c in at.code)
