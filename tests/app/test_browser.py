"""The app in a real headless browser (Debian's Chromium driven by Playwright), end to end.

Runs on the shipped ``toy-arith`` model when its weights are in ``yfpo_core/assets/toy-arith``, else on
the tiny random demo model (``YFPO_APP_DEMO_TINY=1``). With ``YFPO_SCREENSHOT_DIR`` set, every page is
saved there as ``<page>.png`` (``docs/screenshots`` in the repository).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.browser import (
    ROOT,
    box_select,
    browser_page,
    chromium_path,
    goto_nav,
    open_page,
    plotly_points,
    screenshot,
    streamlit_server,
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
    """Locate → box-select units on the plot → add them → download the JSON (it validates) → train with
    them and watch the live chart gain points → stop. Screenshots of every page on the way."""
    from yfpo_core.units.neuron_set import NeuronSet

    chromium_path()
    name, env = app_env(tmp_path)
    with streamlit_server(env) as url, browser_page() as page:
        open_page(page, url + "/locate", "Locate")
        page.get_by_role("button", name="Run attribution").click()
        page.locator(".st-key-locate_scatter .js-plotly-plot").wait_for(timeout=120_000)
        assert plotly_points(page, "locate_scatter") > 10

        # Pick by dragging a box over the left part of the plot.
        box_select(page, "locate_scatter")
        picked = page.get_by_text(re.compile(r"Picked \d+ units? \([1-9]\d* on the plot"))
        picked.wait_for(timeout=30_000)
        n_picked = int(re.search(r"Picked (\d+)", picked.inner_text()).group(1))
        page.get_by_role("button", name=re.compile(r"Add \d+ picked to the set")).click()
        page.get_by_text(f"Added {n_picked} unit", exact=False).wait_for(timeout=30_000)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text(re.compile(rf"Current set:\s*{n_picked} units?")).wait_for(timeout=10_000)

        # The ablation check, one button away.
        page.get_by_role("button", name="Run the ablation check").click()
        page.get_by_text(re.compile(r"On gold log-prob (the tested set .* \(z = |z is n/a: )")).wait_for(timeout=120_000)
        no_traceback(page)
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
        screenshot(page, SCREENSHOTS, "neuron-set")

        goto_nav(page, "Train")
        page.get_by_role("tab", name="Optimisation").click()
        steps = page.get_by_label("steps", exact=True)
        steps.fill("3000")
        steps.press("Tab")
        page.get_by_role("button", name="Start training").click()
        page.locator(".st-key-train_chart .js-plotly-plot").wait_for(timeout=120_000)
        counts, deadline = [plotly_points(page, "train_chart")], time.time() + 90
        while len(set(counts)) < 4 and time.time() < deadline:  # the chart redraws about once a second
            page.wait_for_timeout(400)
            counts.append(plotly_points(page, "train_chart"))
        assert len(set(counts)) >= 4 and counts[-1] > counts[0], counts
        screenshot(page, SCREENSHOTS, "train")
        page.get_by_role("button", name="Stop").click()
        page.get_by_text("stopped", exact=False).first.wait_for(timeout=60_000)
        no_traceback(page)

        goto_nav(page, "Runs")
        page.get_by_text("Final metrics", exact=True).wait_for(timeout=30_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        page.get_by_role("button", name=re.compile(r"Compare \d+ units: base vs step-")).click()
        page.locator(".st-key-runs_before_after .js-plotly-plot").wait_for(timeout=120_000)
        no_traceback(page)
        screenshot(page, SCREENSHOTS, "runs")
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "neuron_set.json").exists() and (runs[0] / "metrics.jsonl").exists()
