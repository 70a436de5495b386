"""Helpers for real-browser tests: serve the app with `streamlit run`, drive Debian's Chromium with Playwright.

Playwright never downloads a browser here (`playwright install` fails offline); it launches
``/usr/bin/chromium`` with the flags that keep it from reaching for the network.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


def chromium_path() -> str:
    """Path of the system Chromium; skips the test if it is missing, unless CI requires it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("YFPO_REQUIRE_BROWSER"):
            pytest.fail("YFPO_REQUIRE_BROWSER is set but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(env: dict[str, str], timeout_s: float = 90) -> Iterator[str]:
    """Start ``streamlit run app/main.py`` headless on a free port; yield its URL once it is healthy."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless=true",
           f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false"]
    log = open(env.get("YFPO_TEST_LOG", os.devnull), "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy (exit code {proc.poll()})")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def browser_page(viewport=(1400, 900)):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


# -- driving the app ---------------------------------------------------------------------------------------
def open_page(page, url: str, heading: str, timeout_ms: int = 90_000) -> None:
    """Go to ``url`` and wait for the page heading, then for the model: it loads in the background while
    the page draws what needs no model; the sidebar's model caption (with the fingerprint) appears once it
    is loaded, and the page swaps in its model parts in the same run."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=timeout_ms)
    wait_model(page, timeout_ms)


def wait_model(page, timeout_ms: int = 90_000) -> None:
    """Wait until the sidebar shows the loaded model's caption (name, layers, fingerprint)."""
    page.locator('[data-testid="stSidebar"]').get_by_text("fingerprint", exact=False).first.wait_for(
        timeout=timeout_ms)


def goto_nav(page, title: str, timeout_ms: int = 120_000) -> None:
    """Switch page with the sidebar navigation (keeps the session, unlike a new URL).

    A click that lands while the page is rerunning can be lost (the rerun redraws the sidebar under it), as
    seen on a loaded machine: the link is clicked again, up to three times, while the heading is awaited."""
    link = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True)
    heading = page.get_by_role("heading", name=title, exact=True)
    for attempt in range(3):
        link.click()
        try:
            heading.wait_for(timeout=timeout_ms // 3)
            return
        except Exception:
            if attempt == 2:
                raise


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until Streamlit has finished the current run (its status widget leaves 'running')."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)


def plotly_points(page, key: str) -> int:
    """Number of data points in the plotly chart drawn with ``st.plotly_chart(..., key=key)``."""
    return page.evaluate(
        """(key) => { const el = document.querySelector(`.st-key-${key} .js-plotly-plot`);
                      if (!el || !el.data) return -1;
                      return el.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0); }""", key)


def box_select(page, key: str, x0: float = 0.02, y0: float = 0.02, x1: float = 0.6, y1: float = 0.98) -> None:
    """Box-select on the keyed plotly chart: the modebar's box-select button, then a mouse drag over the
    plot area between the given fractions of its width and height."""
    chart = page.locator(f".st-key-{key} .js-plotly-plot")
    chart.hover()
    button = chart.locator('.modebar-btn[data-val="select"]')
    if button.count():
        button.first.click()
    box = chart.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
    page.mouse.down()
    steps = 12
    for i in range(1, steps + 1):
        page.mouse.move(box["x"] + box["width"] * (x0 + (x1 - x0) * i / steps),
                        box["y"] + box["height"] * (y0 + (y1 - y0) * i / steps))
    page.mouse.up()


def park_mouse(page) -> None:
    """Move the mouse to the empty middle of the page header, so that no tooltip or modebar of the element
    last clicked shows in a picture."""
    page.mouse.move(page.viewport_size["width"] // 2, 8)


def screenshot(page, folder: Path | None, name: str, width: int = 1400) -> None:
    """A screenshot of the whole page: Streamlit scrolls inside its main block, so the viewport is grown to
    the content's height first, then put back."""
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    try:  # best effort: a page with a live chart reruns every second
        wait_idle(page, timeout_ms=10_000)
    except Exception:  # noqa: BLE001 - a screenshot of a busy page is still a screenshot
        pass
    park_mouse(page)
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]'); return m ? m.scrollHeight : 900; }")
    old = page.viewport_size
    page.set_viewport_size({"width": width, "height": max(900, min(int(height) + 40, 7000))})
    page.wait_for_timeout(600)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    page.set_viewport_size(old)


def plotly_traces(page, key_prefix: str) -> list[dict[str, Any]]:
    """The traces of every plotly chart whose ``st.plotly_chart`` key starts with ``key_prefix``, read from
    the DOM (what the browser draws, not what the server meant to send): one dict per chart with its
    ``title`` (as text: the theme wraps it in ``<b>``) and ``traces`` (``name``, line ``color``, number of
    points ``n``), in page order."""
    return page.evaluate(
        """(prefix) => Array.from(document.querySelectorAll(`[class*="st-key-${prefix}"] .js-plotly-plot`))
            .map(el => ({title: (((el.layout || {}).title || {}).text || '').replace(/<[^>]*>/g, ''),
                         traces: (el.data || []).map(t => ({name: t.name, color: (t.line || {}).color,
                                                            n: t.x ? t.x.length : 0}))}))""", key_prefix)


def dataframe_rows(page, key_prefix: str) -> list[dict[str, str]]:
    """The rows of the first ``st.dataframe`` whose key starts with ``key_prefix``, as text, from the
    accessible table the data grid keeps beside its canvas (the canvas itself has no text). Only the
    columns drawn on screen are there."""
    return page.evaluate(
        """(prefix) => { const t = document.querySelector(`[class*="st-key-${prefix}"] table[role="grid"]`);
                      if (!t) return [];
                      const head = Array.from(t.querySelectorAll('thead th')).map(th => th.innerText.trim());
                      return Array.from(t.querySelectorAll('tbody tr')).map(tr => Object.fromEntries(
                          Array.from(tr.querySelectorAll('td')).map((td, i) => [head[i], td.innerText.trim()]))); }""",
        key_prefix)


def tick_dataframe_row(page, locator, row: int, row_height: float = 35) -> None:
    """Tick the checkbox of data row ``row`` (0 = first) of a selectable ``st.dataframe``: a click in the
    row-marker column, which the grid draws on its canvas (there is no checkbox element to click)."""
    box = locator.bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + row_height * (row + 1.5))


def frame(page, folder: Path | None, name: str, target=None, block: str = "center") -> Path | None:
    """One frame of the loop's animation: the viewport as the user sees it, with ``target`` (a locator)
    scrolled first to the ``block`` of the view (``center``, ``start``). Unlike :func:`screenshot` the size
    is the viewport's, so that every frame of the GIF has the same size. Nothing without ``folder``."""
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    if target is not None:
        target.evaluate("(el, block) => el.scrollIntoView({block})", block)
    park_mouse(page)
    page.wait_for_timeout(500)  # charts animate their first draw
    path = folder / f"{len(list(folder.glob('*.png'))):02d}-{name}.png"
    page.screenshot(path=str(path))
    return path


def caption_font(size: int = 20):
    """DejaVu Sans where the system has it (Debian does): it draws the Greek of the captions (λ), which
    Pillow's built-in font shows as boxes; the built-in font otherwise."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def assemble_gif(frames: Sequence[Path], out: Path, *, seconds_per_frame: float = 2.5, width: int = 960,
                 captions: Sequence[str] | None = None, colors: int = 256) -> Path:
    """Put PNG frames together as a looping GIF at ``out``: each shown ``seconds_per_frame``, scaled to
    ``width`` pixels (height kept in proportion to the first frame; other sizes are fitted onto a white
    canvas of that size), with an optional caption strip on top of each.

    Screenshots of the app are mostly flat colours: an adaptive octree palette of ``colors`` entries
    without dithering keeps text sharp, the runs' line colours true (median cut turned the first run's
    blue to grey) and the file small (about 300 KB for ten frames at 960 px)."""
    from PIL import Image, ImageDraw

    if not frames:
        raise ValueError("no frames to assemble")
    if captions is not None and len(captions) != len(frames):
        raise ValueError(f"{len(captions)} captions for {len(frames)} frames")
    images = []
    size: tuple[int, int] | None = None
    strip = 36 if captions else 0
    font = caption_font() if captions else None
    for i, path in enumerate(frames):
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        if size is None:
            size = (width, round(rgb.height * width / rgb.width))
        rgb.thumbnail(size, Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (size[0], size[1] + strip), "white")
        canvas.paste(rgb, ((size[0] - rgb.width) // 2, strip))
        if captions:
            draw = ImageDraw.Draw(canvas)
            draw.rectangle((0, 0, size[0], strip - 1), fill="#262730")
            draw.text((12, strip // 2), captions[i], fill="white", anchor="lm", font=font)
        images.append(canvas.quantize(colors=colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE))
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=images[1:], duration=round(seconds_per_frame * 1000), loop=0,
                   optimize=True, disposal=1)
    return out
