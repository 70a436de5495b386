"""The app in a real headless browser (Debian's Chromium driven by Playwright), end to end.

Runs on the shipped ``toy-arith`` model when its weights are in ``yfpo_core/assets/toy-arith``, else on
the tiny random demo model (``YFPO_APP_DEMO_TINY=1``). With ``YFPO_SCREENSHOT_DIR`` set, every page is
saved there as ``<page>.png`` (``docs/screenshots`` in the repository), and the loop as ``loop.gif``: one
captioned frame per key moment, assembled by :func:`tests.browser.assemble_gif`.
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import pytest

from tests.browser import (
    ROOT,
    assemble_gif,
    box_select,
    browser_page,
    chromium_path,
    dataframe_rows,
    frame,
    goto_nav,
    open_page,
    plotly_points,
    plotly_traces,
    screenshot,
    streamlit_server,
    tick_dataframe_row,
    wait_idle,
)

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(os.environ["YFPO_SCREENSHOT_DIR"]) if os.environ.get("YFPO_SCREENSHOT_DIR") else None
TOY_WEIGHTS = ROOT / "yfpo_core" / "assets" / "toy-arith" / "config.json"


def app_env(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """(model name, environment) for the server: toy-arith if shipped, else the tiny demo model."""
    env = {"HF_HUB_OFFLINE": "1", "YFPO_CACHE_DIR": str(tmp_path / "cache"), "YFPO_RUNS_DIR": str(tmp_path / "runs"),
           "YFPO_APP_TORCH_THREADS": "1", "YFPO_TEST_LOG": str(tmp_path / "streamlit.log")}
    if TOY_WEIGHTS.exists():
        return "toy-arith", {**env, "YFPO_APP_MODEL": "toy-arith"}
    return "tiny-demo", {**env, "YFPO_APP_DEMO_TINY": "1"}


def loaded_model(name: str):
    """The same model the server loads (the demo model is a pure function of its seed)."""
    from yfpo_core.models import load_model

    if name == "tiny-demo":
        from app.resources import register_demo_model

        register_demo_model()
    return load_model(name)


def no_traceback(page) -> None:
    body = page.inner_text("body")
    assert "Traceback" not in body, body[-2000:]


def test_problems_page_answers_a_problem(tmp_path):
    chromium_path()
    name, env = app_env(tmp_path)
    with streamlit_server(env) as url, browser_page() as page:
        open_page(page, url, "Problems")
        page.get_by_text("toy-arith", exact=False).first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Ask the model").click()
        page.get_by_text("Model answer", exact=False).wait_for(timeout=60_000)
        page.locator(".st-key-candidate_chart .js-plotly-plot").wait_for(timeout=30_000)
        body = page.inner_text("body")
        assert "Traceback" not in body and "Error" not in body.split("Model answer")[0][-200:]
        assert "correct" in body or "wrong" in body


def test_locate_pick_on_the_plot_export_and_train_live(tmp_path):
    """Problems → Locate → box-select units on the plot → add them → the ablation check → download the JSON
    (it validates) → train with them and watch the live chart gain points → stop → a second run, plain DPO,
    to its end → Runs: tick both and compare them (one line per run and metric, in the run's own colour; the
    final metrics with each run's objective). Screenshots of every page on the way, and with
    ``YFPO_SCREENSHOT_DIR`` the loop as ``loop.gif`` from a frame at each key moment."""
    from yfpo_core.runs import RunDir
    from yfpo_core.units.neuron_set import NeuronSet

    chromium_path()
    name, env = app_env(tmp_path)
    frames = tmp_path / "frames" if SCREENSHOTS else None
    captions: list[str] = []
    with streamlit_server(env) as url, browser_page() as page:

        def moment(caption: str, name: str, target=None, block: str = "center") -> None:
            """A frame of the GIF (only when screenshots are asked for)."""
            if frame(page, frames, name, target, block) is not None:
                captions.append(f"{len(captions) + 1}. {caption}")

        open_page(page, url, "Problems")
        page.get_by_text(re.compile(r"\d+ of \d+ problems")).wait_for(timeout=30_000)
        moment("Problems: browse a problem set, ask the model", "problems")

        goto_nav(page, "Locate")
        page.get_by_role("button", name="Run attribution").click()
        scatter = page.locator(".st-key-locate_scatter .js-plotly-plot")
        scatter.wait_for(timeout=120_000)
        assert plotly_points(page, "locate_scatter") > 10
        moment("Locate: every unit's attribution score (AttnLRP)", "locate", scatter)

        # Pick by dragging a box over the left part of the plot.
        box_select(page, "locate_scatter")
        picked = page.get_by_text(re.compile(r"Picked \d+ units? \([1-9]\d* on the plot"))
        picked.wait_for(timeout=30_000)
        n_picked = int(re.search(r"Picked (\d+)", picked.inner_text()).group(1))
        moment(f"Box-select on the plot: {n_picked} units picked", "box-select", scatter)
        page.get_by_role("button", name=re.compile(r"Add \d+ picked to the set")).click()
        page.get_by_text(f"Added {n_picked} unit", exact=False).wait_for(timeout=30_000)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text(re.compile(rf"Current set:\s*{n_picked} units?")).wait_for(timeout=10_000)

        # The ablation check, one button away.
        page.get_by_role("button", name="Run the ablation check").click()
        ablation = page.get_by_text(re.compile(r"On gold log-prob (the tested set .* \(z = |z is n/a: )"))
        ablation.wait_for(timeout=120_000)
        no_traceback(page)
        moment("The ablation check: the set vs random same-size sets", "ablation", ablation)
        screenshot(page, SCREENSHOTS, "locate")

        goto_nav(page, "Unit detail")
        page.get_by_text("Top-activating problems", exact=False).wait_for(timeout=60_000)
        page.locator(".st-key-unit_histogram .js-plotly-plot").wait_for(timeout=30_000)
        no_traceback(page)
        screenshot(page, SCREENSHOTS, "unit")

        goto_nav(page, "Problems")
        page.locator(".st-key-problem_heatmap_chart .js-plotly-plot").wait_for(timeout=60_000)
        no_traceback(page)
        screenshot(page, SCREENSHOTS, "problems")

        goto_nav(page, "Neuron set")
        with page.expect_download() as download:
            page.get_by_role("button", name="Neuron set JSON").click()
        exported = Path(download.value.path()).read_text()
        parsed = NeuronSet.from_json(exported, loaded_model(name))
        assert len(parsed) == n_picked and parsed.selection["method"] == "attnlrp"  # the default method
        no_traceback(page)
        moment("Neuron set: labels, notes, export as JSON", "neuron-set")
        screenshot(page, SCREENSHOTS, "neuron-set")

        goto_nav(page, "Train")
        page.get_by_role("tab", name="Optimisation").click()
        steps = page.get_by_label("steps", exact=True)
        steps.fill("3000")
        steps.press("Tab")
        page.get_by_role("button", name="Start training").click()
        page.locator(".st-key-train_chart .js-plotly-plot").wait_for(timeout=120_000)
        runs_heading = page.get_by_role("heading", name="This tab's runs")
        counts, deadline = [plotly_points(page, "train_chart")], time.time() + 90
        while len(set(counts)) < 4 and time.time() < deadline:  # the chart redraws about once a second
            page.wait_for_timeout(400)
            counts.append(plotly_points(page, "train_chart"))
        assert len(set(counts)) >= 4 and counts[-1] > counts[0], counts
        moment("Train: YFPO on the set, live charts", "train-live", runs_heading, "start")
        screenshot(page, SCREENSHOTS, "train")
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("stopped", exact=False).first.wait_for(timeout=60_000)
        no_traceback(page)

        # A second run, plain DPO (λ = 0), short enough to finish: the page switches to it.
        page.get_by_text("DPO (λ = 0)", exact=True).click()
        wait_idle(page)
        page.get_by_role("tab", name="Optimisation").click()
        steps = page.get_by_label("steps", exact=True)
        steps.fill("20")
        steps.press("Tab")
        page.get_by_role("button", name="Start training").click()
        page.get_by_text(re.compile(r"points · run folder .*-dpo")).wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"finished · step 20 of 20")).first.wait_for(timeout=120_000)
        wait_idle(page)
        assert plotly_points(page, "train_chart") > 0
        no_traceback(page)
        moment("A second run: plain DPO (λ = 0), finished", "second-run", runs_heading, "start")

        yfpo_dir, dpo_dir = sorted((tmp_path / "runs").iterdir())  # folder names start with the start time
        assert yfpo_dir.name.endswith("-yfpo") and dpo_dir.name.endswith("-dpo"), (yfpo_dir, dpo_dir)
        lam = RunDir(yfpo_dir).config_dict()["lam"]
        assert lam > 0 and RunDir(dpo_dir).config_dict()["lam"] == 0
        labels = {dpo_dir.name: "DPO", yfpo_dir.name: f"YFPO lam={lam:g}"}

        goto_nav(page, "Runs")
        page.get_by_text("Final metrics", exact=True).wait_for(timeout=30_000)
        table = page.locator('[class*="st-key-runs_table_"] [data-testid="stDataFrame"]')
        # The grid writes its rows into an accessible table beside the canvas once it has drawn them.
        table.locator('table[role="grid"] tbody tr').first.wait_for(state="attached", timeout=30_000)
        listed = [r["run"] for r in dataframe_rows(page, "runs_table_")]
        assert listed == [dpo_dir.name, yfpo_dir.name], listed  # newest first
        for row, ticked in ((0, listed[:1]), (1, listed)):
            tick_dataframe_row(page, table, row)
            page.get_by_text(f"Selected: {', '.join(ticked)}", exact=True).wait_for(timeout=30_000)
        wait_idle(page)
        for run, label in labels.items():  # the one colour key above the charts
            page.get_by_text(f"{run} ({label})", exact=True).wait_for(timeout=10_000)

        # The caption is drawn before the charts in the same run: wait until the charts show both runs too.
        charts, deadline = plotly_traces(page, "runs_overlay_"), time.time() + 30
        while {t["name"] for c in charts for t in c["traces"]} != set(labels) and time.time() < deadline:
            page.wait_for_timeout(300)
            charts = plotly_traces(page, "runs_overlay_")
        wait_idle(page)
        charts = plotly_traces(page, "runs_overlay_")
        assert len(charts) >= 3, charts
        colors: dict[str, str] = {}
        for shown in charts:
            metric = shown["title"]
            expected = {}
            for folder in (dpo_dir, yfpo_dir):
                n = sum(isinstance(r.get(metric), int | float) and math.isfinite(r[metric])
                        for r in RunDir(folder).metrics())
                if n:
                    expected[folder.name] = n
            traces = shown["traces"]
            assert len(traces) == len(expected), (metric, traces)  # one line per run with this metric
            assert {t["name"]: t["n"] for t in traces} == expected, (metric, traces)  # every point drawn
            for t in traces:
                assert colors.setdefault(t["name"], t["color"]) == t["color"], (metric, t)  # the run's colour
        both = [c["title"] for c in charts if len(c["traces"]) == 2]
        assert len(both) >= 3, charts  # both runs log the default metrics: overlaid, not just listed
        assert set(colors) == set(labels) and len(set(colors.values())) == 2, colors

        final_table = page.locator(".st-key-runs_final_table")
        final_table.evaluate("el => el.scrollIntoView({block: 'center'})")  # the grid writes out rows it draws
        final_table.locator('table[role="grid"] tbody tr').nth(1).wait_for(state="attached", timeout=30_000)
        final = {r["run"]: (r["objective"], r["state"]) for r in dataframe_rows(page, "runs_final_table")}
        assert final == {dpo_dir.name: ("DPO", "finished"), yfpo_dir.name: (labels[yfpo_dir.name], "stopped")}
        no_traceback(page)
        moment("Runs: the two runs overlaid, one colour each", "runs-compare",
               page.locator('[class*="st-key-runs_overlay_"]').first)
        moment("Runs: final metrics, DPO vs YFPO", "runs-final", final_table)

        page.get_by_role("button", name=re.compile(r"Compare \d+ units: base vs step-")).click()
        page.locator(".st-key-runs_before_after .js-plotly-plot").wait_for(timeout=120_000)
        no_traceback(page)
        moment("Runs: the units before and after training", "before-after",
               page.locator(".st-key-runs_before_after"))
        screenshot(page, SCREENSHOTS, "runs")
    for run in (yfpo_dir, dpo_dir):
        assert RunDir(run).neuron_set_path.exists() and RunDir(run).metrics()
    if SCREENSHOTS is not None:
        gif = assemble_gif(sorted(frames.glob("*.png")), SCREENSHOTS / "loop.gif", captions=captions)
        assert gif.stat().st_size < 3_000_000
