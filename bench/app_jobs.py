"""Background work in the app against the same work through the API, side by side in one run.

Three jobs, each done twice: (a) in the app, through its pages, in a real headless browser, and (b) through
the Python API (what the ``yfpo`` commands call) in a separate process with the model already loaded:

* **locate**: AttnLRP over every MLP neuron on 5 problems (the Locate page's form);
* **ablation**: the top 10 units of an AttnLRP ranking on 10 problems against 5 random sets (the Locate
  page's ablation check);
* **held-out evaluation**: the step-0 evaluation of a short DPO run (the Train page; through the API the
  same config, read from the app's run folder, goes through :func:`yfpo_core.runs.execute.execute`).

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

LOCATE_N, ABLATION_N, ABLATION_K, RANDOM_SETS, TRAIN_STEPS = 5, 10, 10, 5, 2
SCATTER = ".st-key-locate_scatter .js-plotly-plot"
ABLATION_CHART = ".st-key-ablation_chart .js-plotly-plot"
DONE = re.compile(r"done in ([0-9.]+) s")


# -- the API side (its own process) ------------------------------------------------------------------------
def api_jobs(model_name: str, source: str) -> dict[str, float]:
    """Seconds of each job through the API, the model loaded first (as the app's is before a click)."""
    from yfpo_core.analysis.interventions import Intervention, ablation_test
    from yfpo_core.attribution import attribute
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems

    model = load_model(model_name)
    out: dict[str, float] = {}
    started = time.perf_counter()
    attribute(model, load_problems(source, limit=LOCATE_N), "attnlrp")
    out["locate"] = time.perf_counter() - started
    problems = load_problems(source, limit=ABLATION_N)
    ranking = attribute(model, problems, "attnlrp")
    units = [s.unit for s in ranking.top(ABLATION_K, "abs")]
    started = time.perf_counter()
    ablation_test(model, problems, units, intervention=Intervention("zero"), n_random=RANDOM_SETS, seed=0)
    out["ablation"] = time.perf_counter() - started
    return out


def eval_seconds(rows: list[dict]) -> dict[str, float]:
    """The step-0 evaluation (fit's first call: ``elapsed_s`` of step 0 is counted from just before it) and
    the final one (the last row's time less the step before it and the step's own work)."""
    from yfpo_core.training import metric_names as M

    out = {"eval_step0": float(rows[0][M.ELAPSED_S])}
    if len(rows) >= 2:
        last, before = rows[-1], rows[-2]
        out["eval_final"] = float(last[M.ELAPSED_S]) - float(before[M.ELAPSED_S]) - float(last[M.STEP_SECONDS])
    return out


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
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--api", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, check=False)
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


def _locate(page, n: int) -> tuple[float, float | None]:
    _number(page, "How many problems", n)
    clicked = time.perf_counter()
    page.get_by_role("button", name="Run attribution").click()
    page.get_by_text(re.compile(rf"on {n} \S+ problems")).first.wait_for(timeout=600_000)
    page.locator(SCATTER).first.wait_for(timeout=60_000)
    seen = time.perf_counter() - clicked
    return seen, _done_seconds(page, "Run attribution")


def app_jobs(url: str) -> dict[str, float | None]:
    """Click → result drawn, and the job's own clock, of locate and ablation on the Locate page."""
    from tests.browser import browser_page, open_page, wait_idle

    out: dict[str, float | None] = {}
    with browser_page() as page:
        open_page(page, url + "/locate", "Locate", timeout_ms=600_000)
        wait_idle(page)
        _select(page, "Method", re.compile(r"^attnlrp"))
        # A tab's first result also loads the chart library into the browser (once per tab): timed apart.
        out["first_result_seen"], _ = _locate(page, 3)
        wait_idle(page)
        out["locate_seen"], out["locate_job"] = _locate(page, LOCATE_N)
        wait_idle(page)
        _locate(page, ABLATION_N)  # the ablation check runs on the problems of the ranking shown
        wait_idle(page)
        _number(page, "k", ABLATION_K) if page.get_by_label("k", exact=True).count() == 1 else None
        clicked = time.perf_counter()
        page.get_by_role("button", name="Run the ablation check").click()
        page.locator(ABLATION_CHART).first.wait_for(timeout=600_000)
        out["ablation_seen"] = time.perf_counter() - clicked
        out["ablation_job"] = _done_seconds(page, "Run the ablation check")
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
    """Problems page, first problem: click "Ask the model" → the first streamed token on the page, and → the
    model's whole answer with its verdict."""
    from tests.browser import browser_page, open_page, wait_idle

    with browser_page() as page:
        open_page(page, url, "Problems", timeout_ms=600_000)
        wait_idle(page)
        clicked = time.perf_counter()
        page.get_by_role("button", name="Ask the model").click()
        page.wait_for_function(FIRST_TEXT_JS, arg=STREAM, timeout=600_000, polling=20)
        first = time.perf_counter() - clicked
        page.get_by_text("Model answer", exact=False).first.wait_for(timeout=1_200_000)
        return {"first_token_s": first, "answer_s": time.perf_counter() - clicked}


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


def compare(url: str, model: str, runs_dir: Path, env: dict[str, str]) -> list[dict]:
    """Rows ``{job, app_job_s, app_seen_s, api_s, ratio}`` for the three jobs (see the module docstring)."""
    source = "toy" if model.startswith("toy") or model == "tiny-demo" else "gsm8k-test-100"
    api = run_api(["jobs", model, source], env)
    app = app_jobs(url)
    app_run, first = app_training(url, runs_dir)
    train = run_api(["train", app_run, str(runs_dir / "api-run")], env)
    rows: list[dict] = []
    rows.append({"job": "for reference: a tab's first result (3 problems; the browser loads its chart library)",
                 "app_job_s": None, "app_seen_s": app["first_result_seen"], "api_s": None, "ratio": float("nan"),
                 "ratio_seen": float("nan")})
    for job, app_job, app_seen, api_s in (
            ("locate (AttnLRP, 5 problems)", app["locate_job"], app["locate_seen"], api["locate"]),
            ("ablation (top 10, 5 random sets, 10 problems)", app["ablation_job"], app["ablation_seen"],
             api["ablation"]),
            ("held-out evaluation (step 0 of a DPO run)", train["app_eval_step0"], None, train["api_eval_step0"]),
            ("held-out evaluation (last step)", train.get("app_eval_final"), None, train.get("api_eval_final")),
            ("training start: click / call → first metrics line", None, first, train["api_first_metrics"])):
        app_s = app_job if app_job is not None else app_seen
        rows.append({"job": job, "app_job_s": app_job, "app_seen_s": app_seen, "api_s": api_s,
                     "ratio": app_s / api_s if app_s and api_s else float("nan"),
                     "ratio_seen": app_seen / api_s if app_seen and api_s else float("nan")})
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", nargs="+", required=True, help="jobs MODEL SOURCE | train APP_RUN OUT_DIR")
    args = parser.parse_args()
    kind, *rest = args.api
    result = api_jobs(*rest) if kind == "jobs" else api_training(*rest)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
