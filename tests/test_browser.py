"""The app in a real headless browser: the Problems page on the toy model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser import browser_page, chromium_path, streamlit_server

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(os.environ["YFPO_SCREENSHOT_DIR"]) if os.environ.get("YFPO_SCREENSHOT_DIR") else None


def test_problems_page_answers_a_problem(tmp_path):
    chromium_path()
    env = {"YFPO_APP_MODEL": "toy-arith", "HF_HUB_OFFLINE": "1", "YFPO_CACHE_DIR": str(tmp_path / "cache")}
    with streamlit_server(env) as url, browser_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_role("heading", name="Problems").wait_for(timeout=60_000)
        page.get_by_text("toy-arith", exact=False).first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Ask the model").click()
        page.get_by_text("Model answer", exact=False).wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
        body = page.inner_text("body")
        assert "Traceback" not in body and "Error" not in body.split("Model answer")[0][-200:]
        assert "correct" in body or "wrong" in body
        page.screenshot(path=str(tmp_path / "problems.png"), full_page=True)
        if SCREENSHOTS:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "problems.png"), full_page=True)
