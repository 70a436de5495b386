"""Streamlit AppTest for each page, with a tiny model injected instead of the default one.

Background jobs run in real threads here too: :func:`settle` waits for every job of the session and reruns
the script, which is what the page's one-second fragment does in a browser.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import state
from tests.helpers import save_tiny_sae, tiny_toy
from yfpo_core.analysis.inspection import profile_unit
from yfpo_core.analysis.set_activations import set_token_activations
from yfpo_core.models import register_model
from yfpo_core.problems import load_problems
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.neuronpedia import to_neuronpedia
from yfpo_core.runs import list_runs
from yfpo_core.units.unit import Unit

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "main.py")
TINY = "tiny-app-test"
PAGES = {"problems": "Problems", "locate": "Locate", "unit": "Unit detail", "neuron-set": "Neuron set",
         "train": "Train", "runs": "Runs"}


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    model = tiny_toy(n_layers=2, d_model=16, n_heads=2, d_mlp=32)
    register_model(TINY, lambda device: model)
    return model


@pytest.fixture(scope="module")
def tiny_sae(tmp_path_factory):
    """A tiny SAE (16 features) at the tiny model's blocks.1.mlp.hook_post, saved in sae-lens's folder format
    (random weights: what the app does with it does not depend on training)."""
    return save_tiny_sae(tmp_path_factory.mktemp("saes") / "tiny-sae", d_in=32)


@pytest.fixture(autouse=True)
def no_shipped_saes(tmp_path, monkeypatch):
    """The shipped SAEs may or may not exist while they are being trained: tests see an empty folder."""
    from yfpo_core.saes import sae as saes

    monkeypatch.setattr(saes, "SHIPPED_DIR", tmp_path / "shipped-saes")
    return tmp_path / "shipped-saes"


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setenv("YFPO_RUNS_DIR", str(folder))
    return folder


def run_app(page: str = "problems", **session) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[state.MODEL_NAME] = TINY
    at.session_state[state.START_PAGE] = page
    for key, value in session.items():
        at.session_state[key] = value
    return model_loaded(at.run())


def model_loaded(at: AppTest) -> AppTest:
    """If the run found the model still loading (it loads in a background thread), wait for the load and
    rerun, as the sidebar's one-second fragment does in a browser."""
    load = at.session_state[state.MODEL_LOAD] if state.MODEL_LOAD in at.session_state else None
    if load is not None and not load.done:
        assert load.wait(60), f"{load} did not finish"
        at.run()
    return at


def settle(at: AppTest, rounds: int = 6) -> AppTest:
    """Wait for the session's background jobs and rerun, until a rerun starts no new job."""
    for _ in range(rounds):
        jobs = list(at.session_state[state.JOBS].values())
        running = [j for j in jobs if j.running]
        if not running:
            # A job that ended after the run drew its live progress: the fragment would rerun the page.
            labels = [j.label for j in jobs if j.finished and j.label]
            if any(str(p.proto.text).startswith(label) for p in at.get("progress") for label in labels):
                at.run()
                assert not at.exception, at.exception
                continue
            return at
        for job in running:
            assert job.wait(60), f"{job} did not finish"
        at.run()
        assert not at.exception, at.exception
    return at


def texts(at: AppTest, kind: str = "markdown") -> str:
    return "\n".join(str(e.value) for e in getattr(at, kind))


def plotly_keys(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def with_set(model, units=((1, 3), (0, 5), (1, 7))) -> dict:
    neuron_set = NeuronSet.create([Unit.neuron(layer, i) for layer, i in units], model, scores=[0.3, -0.2, 0.1])
    return {state.NEURON_SETS: {model.fingerprint: neuron_set}}


# -- start-up ----------------------------------------------------------------------------------------------
def test_the_first_page_imports_neither_torch_nor_transformer_lens():
    """The first script run (main.py's modules and the Problems page) draws before PyTorch is imported: the
    model loader's thread imports it (seconds on a small CPU)."""
    code = ("import sys\nsys.path.insert(0, sys.argv[1])\n"
            "import app.nav, app.resources, app.sidebar, app.state, app.views.problems, yfpo_core.models\n"
            "heavy = sorted({'torch', 'transformer_lens', 'transformers'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_on_a_fresh_server_the_load_starts_after_the_page_even_when_it_stops(tiny_model, monkeypatch):
    """In a process without torch the load starts only after the first run; a page that stops early (Locate
    while the model loads) must still start it."""
    from app import sidebar

    monkeypatch.setattr(sidebar, "torch_imported", lambda: False)
    monkeypatch.setattr(sidebar, "COLD_START_DELAY_S", 0.05)
    register_model("cold-app-test", lambda device: tiny_model)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[state.MODEL_NAME] = "cold-app-test"
    at.session_state[state.START_PAGE] = "locate"
    at.run()
    assert not at.exception, at.exception
    assert any("is loading" in i.value and "this page appears once it is ready" in i.value for i in at.info)
    assert at.session_state[state.MODEL_LOAD].wait(30), "the load was never started"
    at.run()
    assert not at.exception, at.exception
    assert not at.info or not any("is loading" in i.value for i in at.info)
    assert any("Run attribution" in b.label for b in at.button)


# -- every page --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders(page, tiny_model):
    at = settle(run_app(page, **with_set(tiny_model)))
    assert not at.exception, at.exception
    assert at.title[0].value == PAGES[page]
    assert "**Current set:** 3 units" in texts(at)


# -- problems --------------------------------------------------------------------------------------------
def test_problems_page_lists_problems_and_answers_one(tiny_model):
    at = run_app(problem_source="toy", problem_limit=12)
    assert not at.exception, at.exception
    assert at.title[0].value == "Problems"
    problems = load_problems("toy", limit=12)
    assert len(at.dataframe) == 1 and list(at.dataframe[0].value["id"]) == [p.id for p in problems]
    assert at.subheader[0].value == f"Problem {problems[0].id}" and f"`{problems[0].answer}`" in texts(at)
    at.button(key="ask_model").click().run()
    settle(at)
    assert not at.exception, at.exception
    body = texts(at)
    answer = at.session_state[state.MODEL_ANSWERS][(tiny_model.fingerprint, problems[0].id)]
    generation, ranking = answer["generation"], answer["ranking"]
    assert f"**Model answer:** `{generation['predicted']}`" in body
    assert f"(margin {ranking['margin']:+.2f} nats over the best wrong answer, {ranking['best_wrong']})" in body
    assert any(c.value == generation["output"] for c in at.code)


def test_problems_page_filters():
    at = run_app(problem_source="toy", problem_limit=30)
    at.text_input(key="problem_filter").input("zzzz-no-such-text").run()
    assert not at.exception
    assert any("No problem matches" in i.value for i in at.info)


def test_problems_page_shows_the_sets_activations_on_the_solution(tiny_model):
    at = settle(run_app(problem_source="toy", problem_limit=5, **with_set(tiny_model)))
    assert not at.exception, at.exception
    assert "Units on the gold solution" in texts(at, "subheader")
    assert plotly_keys(at) >= 1 and len(at.get("html")) >= 1
    at.selectbox(key="heatmap_unit").select("L1N3").run()
    assert not at.exception, at.exception
    # the text strip is shaded by L1N3's activation: each token's hover title carries its value
    problem = load_problems("toy", limit=5)[0]
    values = set_token_activations(tiny_model, [Unit.neuron(1, 3)], problem).response().values[:, 0]
    strip = next(h.value for h in at.get("html") if "<span title=" in h.value)
    assert strip.count("<span title=") == len(values)
    assert all(f": {float(v):.3g}\"" in strip for v in values)


def test_bad_model_name_shows_an_error_not_a_traceback():
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["model_name"] = "no-such-model-anywhere"
    model_loaded(at.run())
    assert not at.exception
    assert any("not a built-in model" in e.value for e in at.error)
    assert len(at.dataframe) == 1  # the problems need no model: the table is there all the same


def test_first_run_draws_the_problems_page_while_the_model_loads(tiny_model):
    """The model loads in a background thread: the first run draws the problem table and text at once,
    with "loading" notes in place of the model's parts; a rerun after the load shows them."""
    release = threading.Event()

    def slow_loader(device):
        release.wait(120)
        return tiny_model

    register_model("slow-app-test", slow_loader)
    try:
        at = AppTest.from_file(APP, default_timeout=30)
        at.session_state[state.MODEL_NAME] = "slow-app-test"
        at.session_state[state.PROBLEM_SOURCE] = "toy"
        at.session_state[state.PROBLEM_LIMIT] = 12
        started = time.perf_counter()
        at.run()
        assert time.perf_counter() - started < 25  # did not wait for the loader (it waits for `release`)
        assert not at.exception, at.exception
        assert at.title[0].value == "Problems"
        assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 12
        assert "**Question.**" in texts(at)
        assert any("Loading **slow-app-test**" in c.value for c in at.sidebar.caption)
        assert any("appears once the model is loaded" in i.value for i in at.info)
        assert not [b for b in at.button if b.key == "ask_model"]
        assert "not loaded yet" in texts(at)
        load = at.session_state[state.MODEL_LOAD]
        assert not load.done

        release.set()
        assert load.wait(30) and load.model is tiny_model
        at.run()
        assert not at.exception, at.exception
        assert any(f"fingerprint `{tiny_model.fingerprint}`" in c.value for c in at.sidebar.caption)
        assert not any("Loading" in c.value for c in at.sidebar.caption)
        assert at.button(key="ask_model").label == "Ask the model"
        assert not any("appears once the model is loaded" in i.value for i in at.info)
        assert len(at.dataframe[0].value) == 12
    finally:
        release.set()


# -- locate ------------------------------------------------------------------------------------------------
def located(**session) -> AppTest:
    at = run_app("locate", **{state.LOCATE_SOURCE: "toy", state.LOCATE_LIMIT: 6, **session})
    at.button[0].click().run()  # the form's submit button is the page's first button
    return settle(at)


def test_locate_runs_in_the_background_and_fills_the_table(tiny_model):
    at = located()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == 64 and {"unit", "layer", "index", "score", "in set"} <= set(table.columns)
    assert table["score"].abs().is_monotonic_decreasing  # ranked by |score| by default
    assert "**attnlrp** / answer_logprob" in texts(at)  # the default method (issue 13)
    # The same settings again come from the cache, without a job.
    at.session_state[state.JOBS].clear()
    at.button[0].click().run()
    assert any("cached" in s.value for s in at.success)
    assert not at.session_state[state.JOBS]


def test_picking_on_the_plot_and_in_the_table_adds_to_the_set(tiny_model):
    at = located()
    table = at.dataframe[0].value
    at.session_state["locate_table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.session_state["locate_scatter"] = {"selection": {
        "points": [{"x": 1, "y": 1, "customdata": "blocks.1.mlp.hook_post:1"}], "point_indices": [0],
        "box": [], "lasso": []}}
    at.run()
    assert "Picked 3 units (1 on the plot, 2 in the table)" in texts(at, "caption")
    at.button(key="locate_add").click().run()
    settle(at)
    assert not at.exception, at.exception
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert [su.unit.label for su in current.units] == ["blocks.1.mlp.hook_post:1", *table["label"][:2]]
    assert current.units[1].score == pytest.approx(table["score"][0])
    assert current.selection["method"] == "attnlrp" and current.problems["n"] == 6
    assert "Added 3 units" in texts(at, "success")
    assert "**Current set:** 3 units" in texts(at)
    assert at.dataframe[0].value["in set"][:2].all()
    at.button(key="locate_add_top").click().run()  # the top 10 by default, some of them in already
    expected = {*table["label"][:10], "blocks.1.mlp.hook_post:1"}
    assert {su.unit.label for su in at.session_state[state.NEURON_SETS][tiny_model.fingerprint].units} == expected


def test_ablation_check_reports_effect_random_spread_and_z():
    at = located(**{state.ABLATE_K: 5, state.ABLATE_RANDOM: 3})
    at.button(key="ablate_run").click().run()
    settle(at)
    assert not at.exception, at.exception
    frame = next(d.value for d in at.dataframe if "z" in d.value.columns)
    assert list(frame["metric"]) == ["ranking_accuracy", "gold_logprob", "mean_margin"]
    assert frame["random sets: effect"].str.contains("±").all()
    assert "top 5 by largest |score|" in texts(at)


# -- SAE features ------------------------------------------------------------------------------------------------
def located_features(folder: Path, **session) -> AppTest:
    return located(**{state.LOCATE_UNIT_TYPE: "SAE features", state.LOCATE_SAE_CHOICE: "a local folder",
                      state.LOCATE_SAE_PATH: str(folder), **session})


def feature(index: int) -> Unit:
    return Unit("sae_feature", "blocks.1.mlp.hook_post", index, sae_id="tiny-sae")


def test_locate_over_sae_features_pick_inspect_and_ablate(tiny_model, tiny_sae):
    at = located_features(tiny_sae, **{state.ABLATE_K: 3, state.ABLATE_RANDOM: 3})
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("tiny-sae" in c.value and "16 features" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert len(table) == 16 and set(table["layer"]) == {1}
    assert all(label.startswith("sae:tiny-sae:") for label in table["label"])
    assert table["score"].abs().is_monotonic_decreasing
    assert "features of SAE `tiny-sae`" in texts(at)
    assert plotly_keys(at) >= 2  # the scatter and the feature grid

    # pick two rows and add them: the set records the features' SAE
    at.session_state["locate_table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.run()
    at.button(key="locate_add").click().run()
    assert not at.exception, at.exception
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert [su.unit.label for su in current.units] == list(table["label"][:2])
    assert all(su.unit.kind == "sae_feature" and su.unit.hook_name == "blocks.1.mlp.hook_post" for su in current.units)
    assert current.sae["tiny-sae"]["d_sae"] == 16 and current.sae["tiny-sae"]["path_or_release"] == str(tiny_sae)
    assert current.selection["params"]["sae"] == "tiny-sae"

    # the ablation check draws random sets among the SAE's other features
    at.button(key="ablate_run").click().run()
    settle(at)
    assert not at.exception, at.exception
    frame = next(d.value for d in at.dataframe if "z" in d.value.columns)
    assert list(frame["metric"]) == ["ranking_accuracy", "gold_logprob", "mean_margin"]
    assert "features of SAE tiny-sae" in texts(at)
    at.session_state[state.ABLATE_WHAT] = "the current set"
    at.run()
    at.button(key="ablate_run").click().run()
    settle(at)
    assert not at.exception, at.exception
    assert "the current set (2 units)" in texts(at)

    # inspect the first picked feature: the Unit page opens on it
    at.session_state["locate_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    at.button(key="locate_inspect").click().run()
    settle(at)
    assert not at.exception, at.exception
    assert at.title[0].value == "Unit detail"
    first = Unit.parse(table["label"][0])
    assert at.subheader[0].value == f"L1F{first.index}"
    assert at.session_state[state.UNIT_TYPED] == f"sae:tiny-sae:{first.index}"


def test_unit_page_profiles_a_feature_and_measures_interventions(tiny_model, tiny_sae):
    neuron_set = NeuronSet.create([feature(5)], tiny_model, scores=[0.2], sae={"tiny-sae": {
        "hook_name": "blocks.1.mlp.hook_post", "d_sae": 16, "path_or_release": str(tiny_sae)}})
    at = settle(run_app("unit", **{state.NEURON_SETS: {tiny_model.fingerprint: neuron_set},
                                   state.UNIT_SOURCE: "the set", state.UNIT_PROBLEM_SOURCE: "toy",
                                   state.UNIT_PROBLEM_LIMIT: 6}))
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.subheader[0].value == "L1F5"
    assert "feature of SAE `tiny-sae`" in texts(at, "caption")
    assert {m.label for m in at.metric} >= {"mean activation", "std", "max"}
    assert len(at.get("html")) >= 6 + 2  # top examples + activation and relevance on one problem
    assert plotly_keys(at) >= 2  # histogram, logit effect of the decoder direction
    at.button(key="unit_effect_run").click().run()
    settle(at)
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["intervention"]) == ["none", "zero", "scale x2"]


def test_unit_page_reads_a_typed_feature_and_adds_it_with_its_sae(tiny_model, tiny_sae):
    at = settle(run_app("unit", **{state.UNIT_SOURCE: "type one", state.UNIT_TYPED: f"sae:{tiny_sae}:7",
                                   state.UNIT_PROBLEM_SOURCE: "toy", state.UNIT_PROBLEM_LIMIT: 4}))
    assert not at.exception, at.exception
    assert at.subheader[0].value == "L1F7"
    at.button(key="unit_add").click().run()
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert current.units_only() == [feature(7)] and "tiny-sae" in current.sae
    at.text_input(key=state.UNIT_TYPED).input("sae:tiny-sae:99").run()  # known by id now; out of range
    assert any("out of range" in e.value and "16 features" in e.value for e in at.error)
    at.text_input(key=state.UNIT_TYPED).input("sae:/no/such/sae:1").run()
    assert not at.exception, at.exception
    assert any("There is no folder /no/such/sae" in e.value for e in at.error)
    at.text_input(key=state.UNIT_TYPED).input("sae:nothing-here:1").run()
    assert any("neither a folder" in e.value for e in at.error)


def test_locate_with_a_missing_default_sae_says_how_to_make_it(tiny_model, no_shipped_saes):
    at = run_app("locate", **{state.LOCATE_UNIT_TYPE: "SAE features"})
    assert not at.exception, at.exception
    assert tiny_model.name == "toy-arith"  # a model with a default SAE (toy-arith-L1-mlp-w1024)
    assert any("not there yet" in w.value and "toy-arith-L1-mlp-w1024" in w.value for w in at.warning)
    command = next(c.value for c in at.code if "yfpo sae train" in c.value)
    assert "--model toy-arith --hook blocks.1.mlp.hook_post --width 1024" in command
    assert str(no_shipped_saes / "toy-arith-L1-mlp-w1024") in command
    at.button[0].click().run()  # running anyway is refused in words
    assert not at.exception, at.exception
    assert any("Choose an SAE that loads" in e.value for e in at.error)
    assert not at.session_state[state.JOBS]


def test_locate_uses_the_default_sae_when_it_is_there(tiny_sae, no_shipped_saes, monkeypatch):
    from yfpo_core.saes import sae as saes

    monkeypatch.setattr(saes, "SHIPPED_DIR", tiny_sae.parent)
    monkeypatch.setitem(saes.DEFAULT_SAES, "toy-arith", tiny_sae.name)
    at = located(**{state.LOCATE_UNIT_TYPE: "SAE features"})
    assert not at.exception, at.exception
    assert any("(found)" in c.value for c in at.caption)
    assert len(at.dataframe[0].value) == 16


def test_locate_with_a_bad_sae_folder_shows_an_error(tmp_path):
    (tmp_path / "not-an-sae").mkdir()
    at = run_app("locate", **{state.LOCATE_UNIT_TYPE: "SAE features", state.LOCATE_SAE_CHOICE: "a local folder",
                              state.LOCATE_SAE_PATH: str(tmp_path / "not-an-sae")})
    assert not at.exception, at.exception
    assert any("no cfg.json" in e.value for e in at.error)


def test_neuron_set_page_shows_the_sae_of_feature_units(tiny_model, tiny_sae):
    neuron_set = NeuronSet.create([Unit.neuron(1, 3), feature(2)], tiny_model, sae={"tiny-sae": {
        "hook_name": "blocks.1.mlp.hook_post", "d_sae": 16, "path_or_release": str(tiny_sae)}})
    at = run_app("neuron-set", **{state.NEURON_SETS: {tiny_model.fingerprint: neuron_set}})
    assert not at.exception, at.exception
    frame = at.data_editor[0].value
    assert list(frame["SAE"]) == ["", "tiny-sae"] and list(frame["unit"]) == ["L1N3", "L1F2"]
    assert any("SAE `tiny-sae`: 1 feature" in c.value for c in at.caption)
    exported = next(c.value for c in at.code if '"yfpo-neuron-set"' in c.value)
    assert NeuronSet.from_json(exported, tiny_model).sae["tiny-sae"]["d_sae"] == 16
    for page in ("problems", "train"):  # pages that read neurons only say so instead of failing
        other = settle(run_app(page, **{state.NEURON_SETS: {tiny_model.fingerprint: neuron_set},
                                        state.PROBLEM_SOURCE: "toy", state.PROBLEM_LIMIT: 3}))
        assert not other.exception, other.exception
        assert not other.error, [e.value for e in other.error]


def test_train_accepts_a_set_with_features(tiny_model, tiny_sae):
    """A set of SAE features trains (its features read through their SAE; trainable=units would refuse, as
    features have no weights of their own)."""
    neuron_set = NeuronSet.create([feature(2), feature(5)], tiny_model, sae={"tiny-sae": {
        "hook_name": "blocks.1.mlp.hook_post", "d_sae": 16, "path_or_release": str(tiny_sae)}})
    at = run_app("train", **{state.NEURON_SETS: {tiny_model.fingerprint: neuron_set}},
                 **{**TRAIN, state.TRAIN_PREFIX + "trainable": "mlp_last_k", state.TRAIN_PREFIX + "steps": 4})
    next(b for b in at.button if "Start training" in b.label).click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    run = at.session_state[state.TRAIN_RUNS][-1]
    run.join(60)
    assert run.state == "finished", run.error
    assert len(list_runs()) == 1
    assert json.loads((run.run_dir / "units.json").read_text())["units"] == ["sae:tiny-sae:2", "sae:tiny-sae:5"]


# -- unit detail -------------------------------------------------------------------------------------------------
def test_unit_page_profiles_a_typed_unit_and_measures_interventions(tiny_model):
    at = settle(run_app("unit", **{state.UNIT_SOURCE: "type one", state.UNIT_TYPED: "L1N4",
                                   state.UNIT_PROBLEM_SOURCE: "toy", state.UNIT_PROBLEM_LIMIT: 6}))
    assert not at.exception, at.exception
    assert at.subheader[0].value == "L1N4"
    profile = profile_unit(tiny_model, Unit.neuron(1, 4), load_problems("toy", limit=6), top_n=8)
    shown = {m.label: m.value for m in at.metric}
    assert (shown["mean activation"], shown["std"], shown["max"]) == (f"{profile.mean:.3g}", f"{profile.std:.3g}",
                                                                      f"{profile.max:.3g}")
    assert len(at.get("html")) >= 6 + 2  # top examples + activation and relevance on one problem
    assert plotly_keys(at) >= 2  # histogram, logit effect
    at.button(key="unit_effect_run").click().run()
    settle(at)
    frame = at.dataframe[0].value
    assert list(frame["intervention"]) == ["none", "zero", "scale x2"]
    at.button(key="unit_add").click().run()
    assert Unit.parse("L1N4") in at.session_state[state.NEURON_SETS][tiny_model.fingerprint]


def test_unit_page_rejects_a_bad_unit_in_words():
    at = run_app("unit", **{state.UNIT_SOURCE: "type one", state.UNIT_TYPED: "L9N4"})
    assert not at.exception
    assert any("out of range" in e.value for e in at.error)
    at.text_input(key=state.UNIT_TYPED).input("neuron four").run()
    assert any("cannot read a unit" in e.value for e in at.error)


# -- neuron set ------------------------------------------------------------------------------------------------
def test_neuron_set_export_validates_and_edits_apply(tiny_model):
    at = run_app("neuron-set", **with_set(tiny_model))
    assert not at.exception, at.exception
    exported = next(c.value for c in at.code if '"yfpo-neuron-set"' in c.value)
    parsed = NeuronSet.from_json(exported, tiny_model)
    assert [su.unit.short_label for su in parsed.units] == ["L1N3", "L0N5", "L1N7"]
    assert len(at.get("download_button")) == 2
    editor_key = at.data_editor[0].key
    assert editor_key.startswith("set_editor_")
    at.session_state[editor_key] = {"edited_rows": {1: {"label": "carry", "note": "fires on +"}},
                                    "added_rows": [], "deleted_rows": []}
    at.run()
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert (current.units[1].label, current.units[1].note) == ("carry", "fires on +")
    at.selectbox(key="set_move_unit").select(Unit.neuron(1, 7)).run()
    at.button(key="set_move_top").click().run()
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert [su.unit.short_label for su in current.units] == ["L1N7", "L1N3", "L0N5"]
    assert NeuronSet.from_json(next(c.value for c in at.code if '"yfpo-neuron-set"' in c.value), tiny_model).units[1] \
        == current.units[1]


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not valid JSON"),
    ('{"format": "yfpo-neuron-set", "schema_version": 7, "units": []}', "schema_version"),
    ("[" * 100_000 + "]" * 100_000, "deeper than 64 levels"),  # issue 11: was a RecursionError in the page
    ('[{"layer": "1", "index": "' + "9" * 5000 + '"}]', "non-negative integer index"),  # issue 11: ValueError
])
def test_neuron_set_import_of_a_bad_text_shows_the_validation_message(text, message, tiny_model):
    at = run_app("neuron-set")
    at.text_area(key="set_paste_0").input(text).run()
    assert not at.exception, at.exception
    assert any(message in e.value for e in at.error), [e.value for e in at.error]


def test_neuron_set_import_of_a_bad_file_shows_the_validation_message(tiny_model):
    other = NeuronSet.create([Unit.neuron(0, 1)], tiny_model).to_dict()
    other["units"][0]["index"] = 999  # out of range for d_mlp = 32
    at = run_app("neuron-set")
    at.file_uploader(key="set_upload_0").set_value(("picks.json", json.dumps(other).encode(), "application/json")).run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "picks.json" in errors and "999" in errors and "out of range" in errors


def test_neuron_set_import_replaces_and_neuronpedia_round_trips(tiny_model):
    source = NeuronSet.create([Unit.neuron(1, 2), Unit.neuron(0, 9)], tiny_model, name="np")
    at = run_app("neuron-set", **with_set(tiny_model))
    at.text_area(key="set_paste_0").input(json.dumps(to_neuronpedia(source))).run()
    assert any("a valid set of 2 units" in s.value for s in at.success)
    at.button(key="set_import_replace").click().run()
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert [su.unit.short_label for su in current.units] == ["L1N2", "L0N9"]
    at.button(key="set_undo").click().run()
    assert len(at.session_state[state.NEURON_SETS][tiny_model.fingerprint]) == 3


# -- train and runs ------------------------------------------------------------------------------------------------
TRAIN = {state.TRAIN_PREFIX + "steps": 30, state.TRAIN_PREFIX + "n_train_problems": 8,
         state.TRAIN_PREFIX + "n_eval_problems": 4, state.TRAIN_PREFIX + "batch_pairs": 2,
         state.TRAIN_PREFIX + "eval_every": 5, state.TRAIN_PREFIX + "checkpoint_every": 10,
         state.TRAIN_PREFIX + "trainable": "units", state.TRAIN_PREFIX + "lr": 0.01}


def start_training(at: AppTest):
    next(b for b in at.button if "Start training" in b.label).click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    if not at.session_state[state.TRAIN_RUNS]:
        # The model was busy (another tab's run copying it): the start waits for the lock in a background
        # job (test_train_waits_for_a_busy_model_without_freezing_the_page); the run appears once it ends.
        settle(at)
    return at.session_state[state.TRAIN_RUNS][-1]


def test_train_waits_for_a_busy_model_without_freezing_the_page(tiny_model):
    """While another tab's analysis holds the model lock, the run starts from a background job once the
    lock is free (the trainer's deep copy must not catch that analysis's hooks)."""
    at = run_app("train", **{**TRAIN, state.TRAIN_OBJECTIVE: "DPO (λ = 0)", state.TRAIN_PREFIX + "steps": 2,
                             state.TRAIN_PREFIX + "trainable": "mlp_last_k"})
    with tiny_model.lock:
        next(b for b in at.button if "Start training" in b.label).click().run()
        assert not at.exception and not at.error, at.exception or at.error
        job = at.session_state[state.JOBS]["train_start"]
        time.sleep(0.2)
        assert job.running and not at.session_state[state.TRAIN_RUNS]
    settle(at)
    run = at.session_state[state.TRAIN_RUNS][-1]
    run.join(60)
    assert run.state == "finished", run.error


def test_train_starts_a_run_whose_snapshot_gains_points_and_runs_lists_it(tiny_model, runs_dir):
    at = run_app("train", **with_set(tiny_model), **TRAIN, **{state.TRAIN_RUN_NAME: "app test"})
    run = start_training(at)
    seen = [len(run.snapshot()["metrics"])]
    deadline = time.time() + 60
    while run.alive and time.time() < deadline:
        time.sleep(0.05)
        seen.append(len(run.snapshot()["metrics"]))
    assert not run.alive and run.state == "finished", run.error
    assert seen[-1] > seen[0] and len(set(seen)) >= 3  # points arrived while it ran
    at.run()
    assert not at.exception, at.exception
    assert "31 points" in texts(at, "caption")
    assert {m.label for m in at.metric} >= {"rewards/margins", "yfpo/neuron_margin", "eval/ranking_accuracy",
                                            "yfpo/aux_share", "eval/neuron_margin"}  # the lever, live
    shares = [row["yfpo/aux_share"] for row in run.snapshot()["metrics"] if "yfpo/aux_share" in row]
    assert shares and all(0 < s < 1 for s in shares)
    # The run folder holds the set that was current, and the config points at it.
    folder = run.run_dir
    assert folder.parent == runs_dir and folder.name.endswith("app-test")
    config = json.loads((folder / "config.json").read_text())
    # lambda defaults to the config's default (1.0, chosen by the training-split sweep in the README)
    assert config["neuron_set"] == str(folder / "neuron_set.json") and config["lam"] == pytest.approx(1.0)
    assert len(NeuronSet.load(folder / "neuron_set.json", tiny_model)) == 3

    runs = settle(run_app("runs", **with_set(tiny_model)))
    assert not runs.exception, runs.exception
    table = runs.dataframe[0].value
    assert list(table["run"]) == [folder.name] and table["state"][0] == "finished"
    final = runs.dataframe[1].value  # the final metrics say what the run optimised
    assert list(final["run"]) == [folder.name] and list(final["objective"]) == ["YFPO lam=1"]
    assert plotly_keys(runs) >= 2  # the default metrics, overlaid
    runs.button(key="runs_ba_go").click().run()
    settle(runs)
    assert not runs.exception, runs.exception
    frame = runs.dataframe[-1].value
    assert "Δ" in frame.columns and len(frame) == 3


def test_train_can_be_stopped_and_errors_are_words(tiny_model):
    at = run_app("train", **{**TRAIN, state.TRAIN_PREFIX + "trainable": "mlp_last_k"})
    next(b for b in at.button if "Start training" in b.label).click().run()  # YFPO with an empty set
    assert any("lam > 0 needs a neuron_set" in e.value for e in at.error)
    assert not list_runs()
    at.session_state[state.TRAIN_PREFIX + "max_length"] = 4096  # more than the model's n_ctx (256)
    at.session_state[state.TRAIN_OBJECTIVE] = "DPO (λ = 0)"
    at.run()
    next(b for b in at.button if "Start training" in b.label).click().run()
    assert any("exceeds the model's context of 256" in e.value for e in at.error)
    at.session_state[state.TRAIN_PREFIX + "max_length"] = 256
    at.session_state[state.TRAIN_PREFIX + "steps"] = 5000
    at.run()
    run = start_training(at)
    while run.snapshot()["step"] < 2 and run.alive:
        time.sleep(0.05)
    at.button(key="train_stop").click().run()
    run.join(60)
    assert run.state == "stopped" and 2 <= run.snapshot()["step"] < 5000
    at.run()
    assert any("**stopped**" in p.proto.text for p in at.get("progress"))


def test_runs_page_shows_an_experiment_table(runs_dir):
    exp = runs_dir / "exp-1"
    exp.mkdir(parents=True)
    (exp / "experiment.md").write_text("| arm | seeds |\n|---|---|\n| dpo | 2 |\n")
    (exp / "experiment.csv").write_text("arm,seed,run\ndpo,0,dpo-s0\n")
    arm = exp / "dpo-s0"
    arm.mkdir()
    (arm / "config.json").write_text(json.dumps({"model": TINY, "lam": 0, "steps": 2}))
    (arm / "metrics.jsonl").write_text('{"step": 0, "eval/ranking_accuracy": 0.5}\n{"step": 1, "loss": 0.69}\n')
    at = run_app("runs")
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["run"]) == ["exp-1/dpo-s0"]
    assert "Experiments" in texts(at, "subheader")
    assert any(list(d.value.columns) == ["arm", "seed", "run"] for d in at.dataframe)


def test_two_tabs_train_independently_and_the_runs_page_shows_both(runs_dir):
    settings = {**TRAIN, state.TRAIN_OBJECTIVE: "DPO (λ = 0)", state.TRAIN_PREFIX + "trainable": "mlp_last_k",
                state.TRAIN_PREFIX + "steps": 4}
    tabs = [run_app("train", **settings, **{state.TRAIN_RUN_NAME: name}) for name in ("tab-a", "tab-b")]
    runs = [start_training(at) for at in tabs]
    for run in runs:
        run.join(60)
        assert run.state == "finished", run.error
    for at, run in zip(tabs, runs, strict=True):
        assert at.session_state[state.TRAIN_RUNS] == [run]  # each tab sees only its own run
        at.run()
        assert f"run folder `{run.run_dir}`" in texts(at, "caption")
    listed = run_app("runs").dataframe[0].value
    assert sorted(listed["run"]) == sorted(r.run_dir.name for r in runs)
