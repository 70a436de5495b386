"""The research pages in a real headless browser (Debian's Chromium driven by Playwright): a Search whose top
unit is checked against the model run here, Add and Open from its results, a steered generation beside the
plain one on Unit detail, and the faithfulness chart on Locate.

Runs on the shipped ``toy-arith`` model when its weights are there, else on the tiny demo model (as
test_browser.py does); the smallest settings the pages allow keep each test well under a minute there.
"""

from __future__ import annotations

import re

import pytest
import torch

from tests.app.test_browser import app_env, loaded_model, no_traceback
from tests.browser import browser_page, chromium_path, open_page, streamlit_server, wait_idle

pytestmark = pytest.mark.browser

TEXT = "Q: Ann has 3 pens and buys 4.\nA: 3+4=7"
NEURON = re.compile(r"^L(\d+)N(\d+)$")


def top_neuron(name: str, text: str) -> tuple[int, str, float]:
    """(position of the last '+', label of the most active MLP neuron there, its activation), computed here
    from the same model the server loads, without the search code: every layer's hook_post at that token."""
    model = loaded_model(name)
    ids = model.encode_prompt(text)
    position = max(i for i, t in enumerate(ids) if model.decode([t]) == "+")
    hooks = [f"blocks.{layer}.mlp.hook_post" for layer in range(model.model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n in hooks)
    acts = torch.stack([cache[h][0, position] for h in hooks]).float()  # [layers, d_mlp]
    layer, index = divmod(int(acts.argmax()), acts.shape[1])
    return position, f"L{layer}N{index}", float(acts[layer, index])


def shown_units(page) -> list[str]:
    wait_idle(page)
    return [t.strip() for t in page.locator('[data-testid="stMain"] code').all_inner_texts() if NEURON.match(t.strip())]


def side_by_side(page, title: str) -> tuple[str, str]:
    """The plain and the steered answer of the comparison titled ``title``, checked to be drawn in two
    columns next to each other; returns their texts."""
    row = page.locator('[data-testid="stHorizontalBlock"]').filter(has_text="Plain").filter(has_text=title).last
    row.wait_for(timeout=120_000)
    columns = row.locator('[data-testid="stColumn"]')
    left, right = columns.nth(0), columns.nth(1)
    for column in (left, right):  # each answer's verdict is drawn once the generation has finished
        column.get_by_text(re.compile(r"^answer ")).wait_for(timeout=120_000)
    assert "Plain" in left.inner_text() and title in right.inner_text()
    a, b = left.bounding_box(), right.bounding_box()
    assert a["x"] + a["width"] <= b["x"] + 1 and abs(a["y"] - b["y"]) < 5, (a, b)  # side by side, same top
    plain, steered = left.locator("code").inner_text(), right.locator("code").inner_text()
    assert plain.strip() and steered.strip()
    return plain, steered


def set_number(page, key: str, value: str) -> None:
    box = page.locator(f".st-key-{key} input")
    box.fill(value)
    box.press("Tab")
    wait_idle(page)


def test_search_add_open_then_steer_on_unit_detail(tmp_path):
    chromium_path()
    name, env = app_env(tmp_path)
    position, expected, value = top_neuron(name, TEXT)
    with streamlit_server(env) as url, browser_page() as page:
        open_page(page, url + "/search", "Search")
        text = page.locator(".st-key-search_text textarea")
        text.fill(TEXT)
        text.press("Control+Enter")
        wait_idle(page)
        page.locator(".st-key-search_token").click()
        page.keyboard.type(f"{position}: +")  # the list is long and drawn lazily: filter it, as a user would
        page.get_by_role("option", name=re.compile(rf"^{position}: ")).click()
        units: list[str] = []
        for _ in range(60):  # until the rerun on the picked token has drawn its ranking
            units = shown_units(page)
            if units and units[0] == expected:
                break
            page.wait_for_timeout(500)
        assert units and units[0] == expected, (units[:5], expected)
        assert len(units) == 20 and len(set(units)) == 20
        first_row = page.locator('[data-testid="stHorizontalBlock"]').filter(has=page.locator(
            "code", has_text=re.compile(rf"^{expected}$"))).first
        shown = float(re.search(r"activation\s+([-\d.e+]+)", first_row.inner_text()).group(1))
        assert shown == pytest.approx(value, rel=6e-3, abs=1e-3)

        first_row.get_by_role("button", name="Add", exact=True).click()
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text(re.compile(r"Current set:\s*1 unit\b")).wait_for(timeout=30_000)
        assert first_row.get_by_role("button", name="Add", exact=True).is_disabled()
        no_traceback(page)
        first_row.get_by_role("button", name="Open", exact=True).click()
        page.get_by_role("heading", name="Unit detail", exact=True).wait_for(timeout=60_000)
        page.get_by_role("heading", name=expected, exact=True).wait_for(timeout=60_000)

        # Steer the unit: strength 0 writes the plain answer again; a large push is drawn beside it.
        page.get_by_role("heading", name="Steer a generation").wait_for(timeout=60_000)
        set_number(page, "unit_steer_tokens", "12")
        set_number(page, "unit_steer_value_add", "0")
        page.get_by_role("button", name=re.compile(rf"Generate plain and steered \(add \+0 on {expected}\)")).click()
        plain, steered = side_by_side(page, "Steered (add +0)")
        assert plain == steered
        page.get_by_text("Identical token for token.").wait_for(timeout=30_000)
        set_number(page, "unit_steer_value_add", "500")
        page.get_by_role("button", name=re.compile(r"Generate plain and steered \(add \+500 on")).click()
        plain_again, pushed = side_by_side(page, "Steered (add +500)")
        assert plain_again == plain  # the plain answer does not depend on the steering
        page.get_by_text(re.compile(r"^(Identical token for token\.|The answers part at new token \d+)")).wait_for(
            timeout=30_000)
        no_traceback(page)


def test_locate_draws_the_faithfulness_chart_one_line_per_method_and_a_random_band(tmp_path):
    chromium_path()
    _, env = app_env(tmp_path)
    with streamlit_server(env) as url, browser_page() as page:
        open_page(page, url + "/locate", "Locate")
        page.get_by_role("heading", name=re.compile("Faithfulness curves")).wait_for(timeout=60_000)
        for key in ("faith_locate", "faith_heldout", "faith_random"):  # the smallest the panel allows
            set_number(page, key, "1")
        methods = page.locator(".st-key-faith_methods").inner_text()
        assert "grad_x_act" in methods and "activation" in methods
        page.get_by_role("button", name="Run faithfulness curves").click()
        page.locator(".st-key-faith_chart .js-plotly-plot").wait_for(timeout=180_000)
        traces = page.evaluate("""() => document.querySelector('.st-key-faith_chart .js-plotly-plot').data
            .map(t => ({name: t.name, mode: t.mode || '', fill: t.fill || '', n: t.x ? t.x.length : 0}))""")
        lines = [t for t in traces if t["mode"] == "lines+markers"]
        assert [t["name"] for t in lines] == ["grad_x_act", "activation"], traces
        assert all(t["n"] >= 2 for t in lines)  # k = 0 and at least one k
        band = [t for t in traces if t["fill"] == "toself"]
        assert len(band) == 1 and band[0]["name"].startswith("random same-layer sets"), traces
        assert band[0]["n"] == 2 * (lines[0]["n"] - 1)  # upper edge out, lower edge back, at every k > 0
        page.get_by_text(re.compile(r"1 held-out problems of \w+ \(ranked on 1 others\)")).wait_for(timeout=30_000)
        no_traceback(page)
