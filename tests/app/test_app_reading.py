"""Issue 13's reading items, checked on the figures and texts the pages send (Streamlit AppTest, the tiny
model of test_app): the units x tokens heatmap's values, labels, normalisation and clustering; wrapped
solution and answer text; one colour per run with one key outside the charts; a DPO run's units; full
labels."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from app import state
from app.components import visible_token
from tests.app.test_app import (  # noqa: F401 - tiny_model, runs_dir, no_shipped_saes are fixtures
    located,
    no_shipped_saes,
    run_app,
    runs_dir,
    settle,
    texts,
    tiny_model,
    with_set,
)
from yfpo_core.analysis.set_activations import set_token_activations
from yfpo_core.problems import load_problems
from yfpo_core.units.unit import Unit


def figure(at, key: str) -> dict:
    """The plotly figure the page sent under ``key`` (its JSON spec)."""
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))
    return json.loads(chart.proto.spec)


def z_of(fig: dict) -> np.ndarray:
    """The heatmap's values: a list of lists, or plotly's typed array (``{"dtype", "bdata", "shape"}``)."""
    z = fig["data"][0]["z"]
    if isinstance(z, dict):
        shape = tuple(int(n) for n in str(z["shape"]).split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape).astype(float)
    return np.array(z, dtype=float)


def test_problems_heatmap_shows_the_sets_activations_readably(tiny_model):
    at = settle(run_app(problem_source="toy", problem_limit=3, **with_set(tiny_model)))
    assert not at.exception, at.exception
    problem = load_problems("toy", limit=3)[0]
    units = [Unit.neuron(1, 3), Unit.neuron(0, 5), Unit.neuron(1, 7)]
    expected = set_token_activations(tiny_model, units, problem).response()  # what the page must show
    fig = figure(at, "problem_heatmap_chart")
    assert fig["data"][0]["y"] == ["L1N3", "L0N5", "L1N7"]
    np.testing.assert_allclose(z_of(fig), expected.values.T.numpy(), rtol=1e-5, atol=1e-6)
    ticks = fig["layout"]["xaxis"]
    assert ticks["ticktext"] == [f"{visible_token(t)} " for t in expected.tokens]  # a short solution: every token
    assert ticks["tickangle"] == 0  # a few short labels fit upright (a long axis is thinned and slanted)
    assert len(fig["data"][0]["customdata"][0]) == len(expected.tokens)  # hover names every token

    at.checkbox(key=state.HEATMAP_NORMALIZE).check().run()
    settle(at)
    z = z_of(figure(at, "problem_heatmap_chart"))
    np.testing.assert_allclose(np.abs(z).max(axis=1), 1.0)  # every unit on its own scale
    raw = expected.values.T.numpy()
    np.testing.assert_allclose(z, raw / np.abs(raw).max(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)

    at.checkbox(key=state.HEATMAP_CLUSTER).check().run()
    settle(at)
    clustered = figure(at, "problem_heatmap_chart")
    labels = clustered["data"][0]["y"]
    assert sorted(labels) == ["L0N5", "L1N3", "L1N7"]
    for row, label in zip(z_of(clustered), labels, strict=True):  # each row moved with its label
        np.testing.assert_allclose(row, z[["L1N3", "L0N5", "L1N7"].index(label)], rtol=1e-6)


def test_solution_and_answer_text_wrap(tiny_model):
    at = run_app(problem_source="toy", problem_limit=3)
    problem = load_problems("toy", limit=3)[0]
    gold = next(c for c in at.code if c.value == problem.solution)
    assert gold.proto.wrap_lines
    at.button(key="ask_model").click().run()
    settle(at)
    generation = at.session_state[state.MODEL_ANSWERS][(tiny_model.fingerprint, problem.id)]["generation"]
    assert f"**Model answer:** `{generation['predicted']}`" in texts(at)
    answer = next(c for c in at.code if c.value == generation["output"])
    assert answer.proto.wrap_lines


def _run(root: Path, name: str, lam: float, units: int) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": "toy-arith", "lam": lam, "steps": 2}))
    (folder / "metrics.jsonl").write_text(f'{{"step": 0, "loss": 0.7, "eval/ranking_accuracy": {lam / 10}}}\n'
                                          '{"step": 1, "loss": 0.6}\n')
    labels = [f"blocks.1.mlp.hook_post:{i}" for i in range(units)]
    (folder / "units.json").write_text(json.dumps({"units": labels}))


def test_runs_page_colours_each_run_and_keeps_legends_outside(runs_dir):
    _run(runs_dir, "2026-11-30-a-dpo", 0.0, 32)
    _run(runs_dir, "2026-11-30-b-yfpo", 1.0, 32)
    at = run_app("runs")
    assert not at.exception, at.exception
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["2026-11-30-a-dpo", "units"] == "none (DPO)"  # not "32": DPO does not train on units
    assert table.loc["2026-11-30-b-yfpo", "units"] == "32"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "-runs_overlay_" in c.proto.id]
    assert len(charts) >= 1
    for fig in charts:
        colours = [t["line"]["color"] for t in fig["data"]]
        assert len(set(colours)) == len(colours)  # one colour per run
        assert all(t["showlegend"] is False for t in fig["data"])  # no legend eating the plot
    key = next(h.value for h in at.get("html") if "2026-11-30-a-dpo" in h.value)
    assert "2026-11-30-a-dpo (DPO)" in key and "2026-11-30-b-yfpo (YFPO lam=1)" in key
    ranking = figure(at, "runs_overlay_eval/ranking_accuracy")
    assert {t["name"] for t in ranking["data"]} == {"2026-11-30-a-dpo", "2026-11-30-b-yfpo"}
    assert {t["line"]["color"] for t in ranking["data"]} == {"#1f77b4", "#ff7f0e"}


def test_labels_wrap_instead_of_being_cut(tiny_model):
    at = located()
    at.session_state["locate_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    for key in ("locate_add", "locate_remove", "locate_add_top", "locate_inspect", "ablate_run"):
        assert at.button(key=key).proto.wrap, key
    legend = figure(at, "locate_layer_totals")["layout"]["legend"]
    assert legend["y"] > 1 and legend["yanchor"] == "bottom"  # above the plot, not over the layer ticks

    unit = settle(run_app("unit", **with_set(tiny_model), **{state.UNIT_SOURCE: "the set",
                                                            state.UNIT_PROBLEM_SOURCE: "toy",
                                                            state.UNIT_PROBLEM_LIMIT: 3}))
    assert unit.button(key="unit_remove").label == "Remove from the set" and unit.button(key="unit_remove").proto.wrap

    page = run_app("neuron-set", **with_set(tiny_model))
    page.text_area(key="set_paste_0").input(page.session_state[state.NEURON_SETS][tiny_model.fingerprint]
                                            .to_json()).run()
    replace = page.button(key="set_import_replace")
    assert replace.label == "Replace the current set (3 units)" and replace.proto.wrap
    assert page.checkbox(key="set_allow_other").proto.wrap
