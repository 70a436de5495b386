"""Issue 13's behaviour items, each checked on what the page shows (Streamlit AppTest, the tiny model of
test_app): the new run after Start, last_k bounded with the below-trainable warning, paste versus upload,
z as "n/a" with its reason, AttnLRP by default with a measured time, runs under the user data directory,
and page state kept across pages."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from app import state
from tests.app.test_app import (  # noqa: F401 - tiny_model, runs_dir, no_shipped_saes are fixtures
    ROOT,
    TRAIN,
    located,
    no_shipped_saes,
    run_app,
    runs_dir,
    settle,
    start_training,
    texts,
    tiny_model,
    with_set,
)
from yfpo_core.analysis.interventions import AblationReport
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit

DPO_SHORT = {**TRAIN, state.TRAIN_OBJECTIVE: "DPO (λ = 0)", state.TRAIN_PREFIX + "trainable": "mlp_last_k",
             state.TRAIN_PREFIX + "steps": 2}


def go_to(at: AppTest, url_path: str) -> AppTest:
    """Switch pages as the sidebar's navigation does: Streamlit drops the state of every widget the new
    page does not draw. (``AppTest.switch_page`` takes file pages only; the workbench registers its pages
    as callables under their url path, which ``st.Page`` hashes with ``streamlit.util.calc_hash``.)"""
    at._page_hash = calc_hash(url_path)
    at.run()
    assert not at.exception, at.exception
    return at


def shown_caption(at: AppTest, start: str) -> str:
    return next(c.value for c in at.caption if c.value.startswith(start))


# -- 1. the new run after Start ---------------------------------------------------------------------------------
def test_after_start_the_train_page_shows_the_new_run(tiny_model):
    at = run_app("train", **DPO_SHORT, **{state.TRAIN_RUN_NAME: "first"})
    first = start_training(at)
    first.join(60)
    at.run()
    assert f"run folder `{first.run_dir}`" in texts(at, "caption")
    at.session_state[state.TRAIN_RUN_NAME] = "second"
    at.run()
    second = start_training(at)
    assert at.selectbox(key=state.TRAIN_WATCH).value == str(second.run_dir)  # not the run watched before
    second.join(60)
    at.run()
    assert second.run_dir.name.endswith("second") and at.selectbox(key=state.TRAIN_WATCH).value == str(second.run_dir)
    captions = texts(at, "caption")
    assert f"run folder `{second.run_dir}`" in captions and f"run folder `{first.run_dir}`" not in captions


# -- 2. last_k bounded, and the units it cannot reach --------------------------------------------------------------
def test_last_k_is_bounded_by_the_models_blocks(tiny_model):
    at = run_app("train", **{state.TRAIN_PREFIX + "last_k": 5})  # kept from a deeper model
    assert not at.exception, at.exception
    widget = at.number_input(key=state.TRAIN_PREFIX + "last_k")
    assert (widget.value, widget.max, widget.min) == (2, 2, 1)  # the tiny model has 2 blocks
    assert any("last_k was 5, more than the 2 blocks" in i.value for i in at.info)
    fresh = run_app("train")
    assert fresh.number_input(key=state.TRAIN_PREFIX + "last_k").value == 2  # the default 4, capped


def test_train_warns_when_units_sit_below_the_trainable_blocks(tiny_model):
    settings = {**TRAIN, state.TRAIN_PREFIX + "trainable": "mlp_last_k", state.TRAIN_PREFIX + "last_k": 1}
    at = run_app("train", **with_set(tiny_model), **settings)  # L1N3, L0N5, L1N7; block 1 trains
    warning = " ".join(w.value for w in at.warning)
    assert "1 of the set's 3 units sit below the trainable blocks" in warning
    assert "blocks 1–1 train" in warning and "L0N5" in warning and "L1N3" not in warning
    assert "Raise last_k to 2" in warning
    at.number_input(key=state.TRAIN_PREFIX + "last_k").set_value(2)
    next(b for b in at.button if "Start training" in b.label).click().run()  # the form applies last_k = 2
    assert not any("below the trainable blocks" in w.value for w in at.warning)
    run = at.session_state[state.TRAIN_RUNS][-1]
    run.stop()
    run.join(60)
    assert run.config.last_k == 2
    dpo = run_app("train", **with_set(tiny_model), **{**settings, state.TRAIN_OBJECTIVE: "DPO (λ = 0)"})
    assert not dpo.warning  # DPO does not push the units: nothing to warn about


# -- 3. paste versus upload ------------------------------------------------------------------------------------------
def test_import_never_ignores_the_paste_and_empties_both_after_replace(tiny_model):
    from_file = NeuronSet.create([Unit.neuron(0, 1), Unit.neuron(0, 2)], tiny_model, name="from-file")
    pasted = NeuronSet.create([Unit.neuron(1, 9)], tiny_model, name="pasted")
    at = run_app("neuron-set", **with_set(tiny_model))
    at.file_uploader(key="set_upload_0").set_value(("a.json", from_file.to_json().encode(), "application/json"))
    at.text_area(key="set_paste_0").input(pasted.to_json()).run()
    assert not at.exception, at.exception
    choice = at.radio(key="set_import_which_0")
    assert list(choice.options) == ["the file a.json", "the pasted text"] and choice.value is None
    assert not at.success and not [b for b in at.button if b.key == "set_import_replace"]  # nothing chosen yet
    choice.set_value("the pasted text").run()
    assert any(s.value.startswith("pasted text: a valid set of 1 units") for s in at.success)
    at.button(key="set_import_replace").click().run()
    current = at.session_state[state.NEURON_SETS][tiny_model.fingerprint]
    assert [su.unit.short_label for su in current.units] == ["L1N9"] and current.name == "pasted"
    assert "Imported 1 units." in texts(at, "success")
    assert at.text_input(key=f"set_name_{tiny_model.fingerprint}_1").value == "pasted"  # not the old name
    assert not at.file_uploader(key="set_upload_1").value and at.text_area(key="set_paste_1").value == ""
    assert not [r for r in at.radio if r.key and r.key.startswith("set_import_which")]
    # the file alone imports without a question
    at.file_uploader(key="set_upload_1").set_value(("a.json", from_file.to_json().encode(), "application/json"))
    at.run()
    assert any(s.value.startswith("a.json: a valid set of 2 units") for s in at.success)


# -- 4. z when the random sets have no spread ---------------------------------------------------------------------------
def test_ablation_table_shows_z_as_na_with_the_reason(tiny_model):
    at = located()
    # Hand-made report: gold log-prob effect -1 against random effects -0.1, -0.3, -0.2 (mean -0.2, std 0.1),
    # so z = (-1 + 0.2) / 0.1 = -8; ranking accuracy and margin moved identically under every random set.
    report = AblationReport(n_units=3, intervention="zero",
                            baseline={"ranking_accuracy": 0.5, "gold_logprob": -2.0, "mean_margin": 1.0},
                            tested={"ranking_accuracy": 0.25, "gold_logprob": -3.0, "mean_margin": 0.5},
                            random=[{"ranking_accuracy": 0.5, "gold_logprob": g, "mean_margin": 0.9}
                                    for g in (-2.1, -2.3, -2.2)])
    info = {"tested": "top 3", "intervention": "zero", "n_random": 3, "problems": "6 toy problems"}
    at.session_state[state.ABLATIONS] = {tiny_model.fingerprint: (info, report)}
    at.run()
    assert not at.exception, at.exception
    frame = next(d.value for d in at.dataframe if "z" in d.value.columns)
    z = dict(zip(frame["metric"], frame["z"], strict=True))
    why = dict(zip(frame["metric"], frame["why z is n/a"], strict=True))
    assert z == {"ranking_accuracy": "n/a", "gold_logprob": "-8.00", "mean_margin": "n/a"}
    assert "all 3 random sets changed it by exactly +0" in why["ranking_accuracy"] and why["gold_logprob"] == ""
    assert "exactly -0.1" in why["mean_margin"]
    assert "Infinity" not in frame.to_string() and "inf" not in " ".join(frame["z"])
    assert "matters more than random units (z = -8.00)" in texts(at, "caption")


# -- 5. AttnLRP by default, with a measured time ----------------------------------------------------------------------
def test_attnlrp_is_the_default_method_with_a_time_hint(tiny_model):
    at = run_app("locate", **{state.LOCATE_SOURCE: "toy", state.LOCATE_LIMIT: 6})
    assert at.selectbox(key=state.LOCATE_METHOD).value == "attnlrp"
    hint = shown_caption(at, "**attnlrp** on toy-arith")  # the tiny model is of the toy family
    assert "about 0.011 s per problem (measured with the CLI on a quiet 2-core CPU" in hint
    assert "under a second for 6 problems" in hint
    at.button[0].click().run()
    settle(at)
    result = at.session_state[state.ATTRIBUTIONS][tiny_model.fingerprint][1]
    assert result.method == "attnlrp"
    per = result.params["seconds"] / 6
    hint = shown_caption(at, "**attnlrp** on toy-arith")
    assert f"about {per:.2g} s per problem (measured on your last run here)" in hint


# -- 6. runs under the user data directory ------------------------------------------------------------------------
def test_runs_go_under_the_user_data_directory_unless_overridden(tiny_model, tmp_path, monkeypatch):
    in_repo = sorted(p.name for p in ROOT.iterdir())
    monkeypatch.delenv("YFPO_RUNS_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    at = run_app("train", **DPO_SHORT)
    run = start_training(at)
    run.join(60)
    assert run.run_dir.parent == tmp_path / "xdg" / "yfpo" / "runs"
    runs = run_app("runs")
    assert f"Every run under `{tmp_path / 'xdg' / 'yfpo' / 'runs'}`" in texts(runs, "caption")
    assert list(runs.dataframe[0].value["run"]) == [run.run_dir.name]
    monkeypatch.setenv("YFPO_RUNS_DIR", str(tmp_path / "mine"))
    other = start_training(run_app("train", **DPO_SHORT))
    other.join(60)
    assert other.run_dir.parent == tmp_path / "mine"
    assert f"Every run under `{tmp_path / 'mine'}`" in texts(run_app("runs"), "caption")
    assert sorted(p.name for p in ROOT.iterdir()) == in_repo  # nothing written into the repository


# -- 7. page state kept across pages ------------------------------------------------------------------------------
def test_problems_page_keeps_its_filter_open_problem_and_switches(tiny_model):
    at = settle(run_app(problem_source="toy", problem_limit=30, **with_set(tiny_model)))
    at.text_input(key=state.PROBLEM_FILTER).input("1").run()
    table = at.dataframe[0]
    assert 0 < len(table.value) < 30 and all("1" in q + i for q, i in zip(table.value["question"], table.value["id"],
                                                                            strict=True))
    chosen = table.value["id"].iloc[2]
    assert table.key == "problem_table:toy:30:1"  # the table's key names what it lists
    at.session_state[table.key] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    at.checkbox(key=state.HEATMAP_NORMALIZE).check().run()
    settle(at)
    assert at.subheader[0].value == f"Problem {chosen}"
    go_to(at, "search")
    assert at.title[0].value == "Search"
    go_to(at, "problems")
    settle(at)
    assert at.text_input(key=state.PROBLEM_FILTER).value == "1"
    assert at.subheader[0].value == f"Problem {chosen}"  # still open
    assert at.checkbox(key=state.HEATMAP_NORMALIZE).value is True
    # a new filter that still lists it keeps it open; one that does not opens its first problem
    at.text_input(key=state.PROBLEM_FILTER).input(chosen).run()
    assert at.subheader[0].value == f"Problem {chosen}"
    other = next(i for i in table.value["id"] if i != chosen)
    at.text_input(key=state.PROBLEM_FILTER).input(other).run()
    assert list(at.dataframe[0].value["id"]) == [other] and at.subheader[0].value == f"Problem {other}"


def _fake_run(root: Path, name: str, lam: float) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": "toy-arith", "lam": lam, "steps": 2}))
    (folder / "metrics.jsonl").write_text('{"step": 0, "loss": 0.7}\n{"step": 1, "loss": 0.6}\n')


def test_runs_page_keeps_the_ticked_runs_and_search_keeps_its_text(runs_dir):
    for name, lam in (("2026-01-a", 0.0), ("2026-01-b", 1.0), ("2026-01-c", 3.0)):
        _fake_run(runs_dir, name, lam)
    at = run_app("runs")
    table = at.dataframe[0]
    names = list(table.value["run"])
    at.session_state[table.key] = {"selection": {"rows": [0, 2], "columns": [], "cells": []}}
    at.run()
    assert f"Selected: {names[0]}, {names[2]}" in texts(at, "caption")
    go_to(at, "search")
    at.text_area(key=state.SEARCH_TEXT).input("Q: 2+2\nA: 4").run()
    go_to(at, "runs")
    assert f"Selected: {names[0]}, {names[2]}" in texts(at, "caption")
    go_to(at, "search")
    assert at.text_area(key=state.SEARCH_TEXT).value == "Q: 2+2\nA: 4"
