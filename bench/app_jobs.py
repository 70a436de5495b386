"""Background work in the app against the same work through the API, side by side in one run.

Three jobs, each done twice: (a) in the app, through its pages, in a real headless browser, and (b) through
the Python API (what the ``yfpo`` commands call) in a separate process with the model already loaded:

* **locate**: AttnLRP over every MLP neuron on 5 problems (the Locate page's form);
* **ablation**: the top 10 units of an AttnLRP ranking on 10 problems against 5 random sets (the Locate
  page's ablation check);
* **held-out evaluation**: the step-0 evaluation of a short DPO run (the Train page; through the API the
  same config, read from the app's run folder, goes through :func:`yfpo_core.runs.execute.execute`).

The API side runs in a fresh process set up as the ``yfpo`` command sets itself up (passive OpenMP waiting,
:mod:`yfpo_core.cpu`).

For the app two times are reported: the job's own clock (the page says "done in N s" for a finished job,
the run's metrics its ``elapsed_s``) and click → result drawn in the browser, which adds the page's polling
and redraw. ``ratio`` is the app's time over the API's. Goal: ≤ 1.2× for each job.

Also timed: **Ask the model** (click → first streamed token on the page, and → the whole answer) and a
**first training run** (click → first metrics line) in a fresh problems cache (``YFPO_CACHE_DIR``; the
converted models are linked into it, so only the problem sets are fresh).

Run through ``python bench/app.py`` (it calls :func:`compare`); ``python bench/app_jobs.py --api ...`` is
the API side, run in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOCATE_N, ABLATION_N, ABLATION_K, RANDOM_SETS, TRAIN_STEPS = 5, 10, 10, 5, 3
SCATTER = ".st-key-locate_scatter .js-plotly-plot"
ABLATION_CHART = ".st-key-ablation_chart .js-plotly-plot"
DONE = re.compile(r"done in ([0-9.]+) s")
# Before a click: note (in the page) the moment the click's run begins (the running indicator, elements
# marked stale, or the old "done in" line gone); the result is drawn once, after that, the page is idle with no
# progress bar and a "done in" line in an element that is not stale.
WATCH_JS = """() => { window.__ran = false; if (window.__watch) window.__watch.disconnect();
    window.__watch = new MutationObserver(() => {
        if (document.querySelector('[data-testid="stStatusWidget"]') || document.querySelector('[data-stale="true"]')
            || !/done in/.test(document.body.innerText)) window.__ran = true; });
    window.__watch.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true}); }"""
DRAWN_JS = """() => window.__ran && !document.querySelector('[data-testid="stStatusWidget"]')
    && !document.querySelector('[data-testid="stProgress"]')
    && [...document.querySelectorAll('[data-testid="stElementContainer"]')].some(
        e => e.getAttribute('data-stale') !== 'true' && /done in/.test(e.innerText))"""


# -- the API side (its own process) ------------------------------------------------------------------------
def api_jobs(model_name: str, source: str, repeats: str = "3", ablation: str = "1") -> dict[str, list[float]]:
    """Seconds of each job through the API, ``repeats`` times, the model loaded first (as the app's is
    before a click) and each job done once before it is timed (as the app's first result is timed apart)."""
    from yfpo_core.analysis.interventions import Intervention, ablation_test
    from yfpo_core.attribution import attribute
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems

    model = load_model(model_name)
    attribute(model, load_problems(source, limit=3), "attnlrp")
    ranking = attribute(model, load_problems(source, limit=ABLATION_N), "attnlrp")
    units = [s.unit for s in ranking.top(ABLATION_K, "abs")]
    out: dict[str, list[float]] = {"locate": [], "ablation": []}
    for _ in range(int(repeats)):  # the problems are loaded inside the timing, as the app's jobs (and the CLI) do
        started = time.perf_counter()
        attribute(model, load_problems(source, limit=LOCATE_N), "attnlrp")
        out["locate"].append(time.perf_counter() - started)
        if ablation != "1":
            continue
        started = time.perf_counter()
        ablation_test(model, load_problems(source, limit=ABLATION_N), units, intervention=Intervention("zero"),
                      n_random=RANDOM_SETS, seed=0)
        out["ablation"].append(time.perf_counter() - started)
    return out


def eval_seconds(rows: list[dict]) -> dict[str, float | list[float]]:
    """The step-0 evaluation (fit's first call: ``elapsed_s`` of step 0 is counted from just before it), and
    each later one (a row's time less the row before it and the step's own work)."""
    from yfpo_core.training import metric_names as M

    later = [float(b[M.ELAPSED_S]) - float(a[M.ELAPSED_S]) - float(b[M.STEP_SECONDS]) for a, b in zip(rows, rows[1:])
             if M.EVAL_RANKING_ACCURACY in b]
    return {"eval_step0": float(rows[0][M.ELAPSED_S]), "eval_later": later}


def api_training(app_run: str, out_dir: str) -> dict[str, float]:
    """The app's run again through the API (same config), and the evaluation times of both runs."""
    from yfpo_core.models import load_model
    from yfpo_core.runs import read_metrics, read_run_config
    from yfpo_core.runs.execute import execute

    config = read_run_config(Path(app_run))
    base = load_model(config.model, device=config.device)
    started = time.perf_counter()
    first: list[float] = []
    execute(Path(out_dir), config, base=base,
            on_metrics=lambda m: first.append(time.perf_counter() - started) if not first else None)
    api = eval_seconds(read_metrics(Path(out_dir)))
    app = eval_seconds(read_metrics(Path(app_run)))
    return {"api_first_metrics": first[0], **{f"api_{k}": v for k, v in api.items()},
            **{f"app_{k}": v for k, v in app.items()}}


def run_api(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """``bench/app_jobs.py --api ...`` in a fresh process (the CLI's situation: nothing else in it)."""
    cli_env = {k: v for k, v in {**os.environ, **env}.items() if k != "MALLOC_ARENA_MAX"}  # the app's, not the CLI's
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--api", *args], cwd=ROOT, env=cli_env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the API side failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the app side (through the browser) --------------------------------------------------------------------
def _select(page, label: str, option: re.Pattern) -> None:
    """Pick ``option`` in the Streamlit selectbox labelled ``label``."""
    page.get_by_label(label, exact=False).first.click()
    page.get_by_role("option", name=option).first.click()


def _number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")


def _done_seconds(page, after: str) -> float | None:
    """The "done in N s" a page shows for the job that has just finished (its own clock)."""
    text = page.inner_text("body").split(after, 1)[-1]
    match = DONE.search(text)
    return float(match.group(1)) if match else None


def _click_and_wait(page, button: str) -> float:
    """Click ``button``; seconds until the job's result is drawn (see :data:`DRAWN_JS`)."""
    page.evaluate(WATCH_JS)
    clicked = time.perf_counter()
    page.get_by_role("button", name=button).click()
    page.wait_for_function(DRAWN_JS, timeout=600_000, polling=20)
    return time.perf_counter() - clicked


def _locate(page, n: int, steps: int = 8) -> tuple[float, float | None]:
    """One attribution from the form; ``steps`` (unused by AttnLRP) makes a new cache key, so that the same
    work can be timed again."""
    _number(page, "How many problems", n)
    if not page.get_by_label("Integrated-gradients steps", exact=True).is_visible():
        page.get_by_text("More options", exact=True).click()
    _number(page, "Integrated-gradients steps", steps)
    seen = _click_and_wait(page, "Run attribution")
    page.locator(SCATTER).first.wait_for(timeout=60_000)
    return seen, _done_seconds(page, "Run attribution")


def app_jobs(url: str, repeats: int = 3, ablation: bool = True) -> dict[str, list[float | None]]:
    """Click → result drawn, and the job's own clock, of locate and ablation on the Locate page."""
    from tests.browser import browser_page, open_page, wait_idle

    out: dict[str, list] = {"first_result_seen": [], "locate_seen": [], "locate_job": [], "ablation_seen": [],
                            "ablation_job": []}
    with browser_page() as page:
        open_page(page, url + "/locate", "Locate", timeout_ms=600_000)
        wait_idle(page)
        _select(page, "Method", re.compile(r"^attnlrp"))
        # A tab's first result also loads the chart library into the browser (once per tab): timed apart.
        out["first_result_seen"].append(_locate(page, 3)[0])
        for r in range(repeats):
            wait_idle(page)
            seen, job = _locate(page, LOCATE_N, steps=9 + r)
            out["locate_seen"].append(seen)
            out["locate_job"].append(job)
        if not ablation:
            return out
        wait_idle(page)
        _locate(page, ABLATION_N)  # the ablation check runs on the problems of the ranking shown
        wait_idle(page)
        for _ in range(repeats):
            out["ablation_seen"].append(_click_and_wait(page, "Run the ablation check"))
            page.locator(ABLATION_CHART).first.wait_for(timeout=60_000)
            out["ablation_job"].append(_done_seconds(page, "Run the ablation check"))
            wait_idle(page)
    return out


def app_training(url: str, runs_dir: Path, steps: int = TRAIN_STEPS) -> tuple[str, float]:
    """Start a DPO run on the Train page with ``steps`` steps; returns its folder and click → first metrics
    line (preparation and the step-0 evaluation) once it has finished."""
    from bench.app import MetricsWatcher
    from tests.browser import browser_page, open_page, wait_idle

    watcher = MetricsWatcher(runs_dir)
    with browser_page() as page:
        open_page(page, url + "/train", "Train", timeout_ms=600_000)
        page.get_by_text("DPO (λ = 0)", exact=True).click()
        wait_idle(page)
        page.get_by_role("tab", name="Optimisation").click()
        _number(page, "steps", steps)
        page.get_by_role("tab", name="Evaluation and checkpoints").click()
        _number(page, "eval_every", 1)  # an evaluation after every step: several timings of the same work
        watcher.start()
        clicked = time.perf_counter()
        page.get_by_role("button", name="Start training").click()
        deadline = time.perf_counter() + 1800
        while 0 not in watcher.written and time.perf_counter() < deadline:
            time.sleep(0.05)
        first = watcher.written.get(0, float("nan")) - clicked
        while steps not in watcher.written and time.perf_counter() < deadline:
            time.sleep(0.1)
        page.get_by_text("finished", exact=False).first.wait_for(timeout=600_000)
    watcher.stop.set()
    run = sorted(p.parent for p in runs_dir.glob("*/config.json"))[-1]
    return str(run), first


STREAM = ".st-key-ask_stream code"
FIRST_TEXT_JS = """(sel) => { const el = document.querySelector(sel);
    return el && el.innerText.trim() && el.innerText.trim() !== '…' ? el.innerText.trim().length : 0; }"""


def ask_the_model(url: str) -> dict[str, float]:
    """Problems page, first problem: click "Ask the model" as soon as the model is there → the first streamed
    token on the page, and → the whole answer with its verdict; then again after 10 s (the app has finished
    what it does after a load: the generation twin is built) → the first token, and → the answer drawn."""
    from tests.browser import browser_page, open_page, wait_idle

    out: dict[str, float] = {}
    with browser_page() as page:
        open_page(page, url, "Problems", timeout_ms=600_000)
        for name, pause_ms in (("", 0), ("settled_", 10_000)):
            page.wait_for_timeout(pause_ms)
            wait_idle(page)
            clicked = time.perf_counter()
            page.get_by_role("button", name="Ask the model").click()
            page.wait_for_function(FIRST_TEXT_JS, arg=STREAM, timeout=600_000, polling=20)
            out[f"{name}first_token_s"] = time.perf_counter() - clicked
            page.wait_for_selector(STREAM, state="detached", timeout=1_200_000)
            page.get_by_text("Model answer", exact=False).first.wait_for(timeout=60_000)
            out[f"{name}answer_s"] = time.perf_counter() - clicked
    return out


def first_training_run(url: str, runs_dir: Path) -> float:
    """Train page, the defaults with λ = 0 (the current set is empty): click Start → the run's first metrics
    line (its preparation and the step-0 evaluation done); the run is then stopped."""
    from bench.app import MetricsWatcher
    from tests.browser import browser_page, open_page, wait_idle

    watcher = MetricsWatcher(runs_dir)
    with browser_page() as page:
        open_page(page, url + "/train", "Train", timeout_ms=600_000)
        page.get_by_text("DPO (λ = 0)", exact=True).click()
        wait_idle(page)
        watcher.start()
        clicked = time.perf_counter()
        page.get_by_role("button", name="Start training").click()
        deadline = clicked + 1800
        while 0 not in watcher.written and time.perf_counter() < deadline:
            time.sleep(0.05)
        first = watcher.written.get(0, float("nan")) - clicked
        page.get_by_role("button", name="Stop").first.click()
        page.get_by_text("stopped", exact=False).first.wait_for(timeout=600_000)
    watcher.stop.set()
    return first


def compare(url: str, model: str, runs_dir: Path, env: dict[str, str], repeats: int = 3,
            training: bool = True, ablation: bool = True) -> list[dict]:
    """Rows ``{job, app_job_s, app_seen_s, api_s, ratio, ratio_seen}`` (medians over ``repeats``) for the three
    jobs (see the module docstring)."""
    from statistics import median

    def med(values: list) -> float | None:
        values = [v for v in values if v is not None]
        return median(values) if values else None

    source = "toy" if model.startswith("toy") or model == "tiny-demo" else "gsm8k-test-100"
    api = run_api(["jobs", model, source, str(repeats), "1" if ablation else "0"], env)
    app = app_jobs(url, repeats, ablation)
    if training:
        app_run, first = app_training(url, runs_dir)
        train = run_api(["train", app_run, str(runs_dir / "api-run")], env)
    else:  # a long preparation on a large model: the held-out evaluation is left out
        first, train = None, {"app_eval_step0": None, "api_eval_step0": None, "app_eval_later": [],
                              "api_eval_later": [], "api_first_metrics": None}
    rows: list[dict] = [{"job": "for reference: a tab's first result (3 problems; the browser loads its chart "
                                "library)", "app_job_s": None, "app_seen_s": app["first_result_seen"][0],
                         "api_s": None}]
    rows += [
        {"job": f"locate (AttnLRP, {LOCATE_N} problems)", "app_job_s": med(app["locate_job"]),
         "app_seen_s": med(app["locate_seen"]), "api_s": med(api["locate"])},
        {"job": f"ablation (top {ABLATION_K}, {RANDOM_SETS} random sets, {ABLATION_N} problems)",
         "app_job_s": med(app["ablation_job"]), "app_seen_s": med(app["ablation_seen"]), "api_s": med(api["ablation"])},
    ][:None if ablation else 1]
    rows += [] if not training else [
        {"job": "held-out evaluation, base model (step 0 of a DPO run)", "app_job_s": train["app_eval_step0"],
         "app_seen_s": None, "api_s": train["api_eval_step0"]},
        {"job": f"held-out evaluation, trained policy (steps 1-{TRAIN_STEPS})",
         "app_job_s": med(train["app_eval_later"]), "app_seen_s": None, "api_s": med(train["api_eval_later"])},
        {"job": "training start: click / call → first metrics line", "app_job_s": None, "app_seen_s": first,
         "api_s": train["api_first_metrics"]},
    ]
    print("each repeat (s):", json.dumps({"app": app, "api": api, "app_eval_later": train["app_eval_later"],
                                          "api_eval_later": train["api_eval_later"]}, default=lambda v: round(v, 3)))
    for row in rows:
        app_s = row["app_job_s"] if row["app_job_s"] is not None else row["app_seen_s"]
        row["ratio"] = app_s / row["api_s"] if app_s and row["api_s"] else float("nan")
        row["ratio_seen"] = row["app_seen_s"] / row["api_s"] if row["app_seen_s"] and row["api_s"] else float("nan")
    return rows


def print_rows(rows: list[dict]) -> None:
    def fmt(v: float | None) -> str:
        return "–" if v is None or v != v else f"{v:.2f}"

    print("| job | app: job's own clock (s) | app: click → drawn (s) | API (s) | app / API (job) | "
          "app / API (drawn) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['job']} | {fmt(r['app_job_s'])} | {fmt(r['app_seen_s'])} | {fmt(r['api_s'])} | "
              f"{fmt(r['ratio'])}× | {fmt(r['ratio_seen'])}× |")


def main() -> None:
    from yfpo_core.cpu import prefer_passive_waiting

    prefer_passive_waiting()  # what the yfpo command does first: the API side runs as the CLI would
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", nargs="+", required=True, help="jobs MODEL SOURCE | train APP_RUN OUT_DIR")
    args = parser.parse_args()
    kind, *rest = args.api
    result = api_jobs(*rest) if kind == "jobs" else api_training(*rest)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
