"""Issue 13's reading and state items in a real headless browser (Debian's Chromium driven by Playwright):
labels drawn in full (no ellipsis) and the Problems page's filter kept across a visit to another page.

Runs on the shipped ``toy-arith`` model when its weights are there, else on the tiny demo model (as
test_browser.py does).
"""

from __future__ import annotations

import re

import pytest

from tests.app.test_browser import app_env, no_traceback
from tests.browser import box_select, browser_page, chromium_path, goto_nav, open_page, streamlit_server, wait_idle

pytestmark = pytest.mark.browser

# Every button and checkbox label of the main area whose text is cut: an element inside it whose content is
# wider than its box while it hides the overflow (Streamlit's single-row labels end in an ellipsis then).
# Boxes of a pixel or two are visually hidden helper text for screen readers, not labels.
CUT_LABELS = """() => Array.from(document.querySelectorAll(
        '[data-testid="stMain"] button, [data-testid="stMain"] [data-testid="stCheckbox"] label'))
    .filter(el => el.offsetParent !== null && el.innerText.trim())
    .filter(el => [el, ...el.querySelectorAll('*')].some(e => e.clientWidth > 2 && e.scrollWidth > e.clientWidth + 1
                                                      && getComputedStyle(e).overflowX !== 'visible'))
    .map(el => el.innerText.trim())"""


def cut_labels(page) -> list[str]:
    wait_idle(page)
    return page.evaluate(CUT_LABELS)


def test_labels_are_drawn_in_full_and_the_problems_filter_survives_a_visit(tmp_path):
    chromium_path()
    _, env = app_env(tmp_path)
    with streamlit_server(env) as url, browser_page(viewport=(1280, 900)) as page:
        open_page(page, url, "Problems")
        page.get_by_label("Filter").fill("1")
        page.get_by_label("Filter").press("Enter")
        shown = ""
        for _ in range(60):  # until the rerun with the filter has drawn the shorter table
            shown = page.get_by_text(re.compile(r"\d+ of \d+ problems")).inner_text()
            listed, total = map(int, re.match(r"(\d+) of (\d+)", shown).groups())
            if listed < total:
                break
            page.wait_for_timeout(500)
        assert 0 < listed < total, shown

        goto_nav(page, "Locate")
        page.get_by_role("button", name="Run attribution").click()
        page.locator(".st-key-locate_scatter .js-plotly-plot").wait_for(timeout=120_000)
        box_select(page, "locate_scatter")
        page.get_by_text(re.compile(r"Picked \d+ units? \([1-9]\d* on the plot")).wait_for(timeout=30_000)
        page.get_by_role("button", name=re.compile(r"Add \d+ picked to the set")).click()
        page.get_by_text("Added", exact=False).first.wait_for(timeout=30_000)
        box_select(page, "locate_scatter")  # the same units again: now they can be removed
        page.get_by_role("button", name=re.compile(r"Remove \d+ picked from the set")).wait_for(timeout=30_000)
        no_traceback(page)
        assert cut_labels(page) == []

        goto_nav(page, "Unit detail")
        page.get_by_role("button", name="Remove from the set").wait_for(timeout=60_000)
        assert cut_labels(page) == []

        goto_nav(page, "Neuron set")
        page.get_by_text("Show the JSON").click()
        exported = page.locator("code").filter(has_text='"yfpo-neuron-set"').first.inner_text()
        page.get_by_label("…or paste its text").fill(exported)
        page.get_by_label("…or paste its text").press("Control+Enter")
        page.get_by_role("button", name=re.compile(r"Replace the current set \(\d+ units\)")).wait_for(
            timeout=30_000)
        assert cut_labels(page) == []

        goto_nav(page, "Problems")
        assert page.get_by_label("Filter").input_value() == "1"
        assert page.get_by_text(re.compile(r"\d+ of \d+ problems")).inner_text() == shown
        no_traceback(page)
