"""App responsiveness, measured in a real headless browser (Debian's Chromium via Playwright).

0. **App versus API** (:mod:`bench.app_jobs`): the same locate, ablation check and held-out evaluation in
   the app (through its pages) and through the API, with the ratio per job; and on the default model, the
   first streamed token of "Ask the model" and a first training run in a fresh problem cache.
1. **Start to interactive**: from launching ``streamlit run app/main.py`` to the first page (Problems)
   interactive: its problem table visible and Streamlit idle. The model loads in a background thread
   meanwhile, so this does not wait for PyTorch, TransformerLens or the weights. Goal: under 5 s.
   **Start to model ready**: to the sidebar's model caption (name, layers, fingerprint) being visible, the
   page having swapped in its model parts. The model's disk cache is warmed first in a separate process, so
   both are the "model cached" case.
2. **New tab to interactive**: a second browser tab on the running server (model already in memory).
3. **Chart update latency during training**: a DPO run started from the Train page; a thread watches the
   run's ``metrics.jsonl`` and records when each step is written, the browser is polled for the last step
   the live chart shows. Latency of a step = first time the chart shows it − time it was written. Goal:
   under 2 s (the chart fragment polls once a second). Timed in steady state: steps written after the chart
   first appeared, for ``--observe`` seconds; the click-to-first-point time is reported separately.

Usage::

    python bench/app.py                        # toy-arith if shipped, else the tiny demo model
    python bench/app.py --model smollm2-135m-instruct --observe 60
    python bench/app.py --repeats 3 --json

Prints a table (and JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM_ARGS, browser_page, streamlit_server  # noqa: E402

TOY_WEIGHTS = ROOT / "yfpo_core" / "assets" / "toy-arith" / "config.json"
APP_ENV = {"MALLOC_ARENA_MAX": "1"}  # as `make app` starts the app (see the Makefile)
LAST_STEP_JS = """() => { const el = document.querySelector('.st-key-train_chart .js-plotly-plot');
    if (!el || !el.data) return -1;
    let m = -1; for (const t of el.data) for (const x of (t.x || [])) if (x > m) m = x; return m; }"""
IDLE_JS = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
TABLE = '[data-testid="stDataFrame"]'


def default_model() -> str:
    return "toy-arith" if TOY_WEIGHTS.exists() else "tiny-demo"


def server_env(model: str, tmp: Path, threads: int | None) -> dict[str, str]:
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YFPO_RUNS_DIR": str(tmp / "runs"),
           "YFPO_TEST_LOG": str(tmp / "streamlit.log"), **APP_ENV}
    if model == "tiny-demo":
        env["YFPO_APP_DEMO_TINY"] = "1"
    else:
        env["YFPO_APP_MODEL"] = model
    if threads:
        env["YFPO_APP_TORCH_THREADS"] = str(threads)
    return env


def warm_disk_cache(model: str) -> float:
    """Load the model once in another process (converts the default model on a first run)."""
    if model == "tiny-demo":
        return 0.0
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"from yfpo_core.models import load_model; load_model({model!r})"],
                   cwd=ROOT, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def wait_interactive(page, url: str, timeout_ms: int = 180_000) -> tuple[float, float, float]:
    """Open ``url`` (the Problems page); return the seconds to (the page's heading and sidebar drawn, the
    problem table visible and Streamlit idle: the page is usable, its model parts may still be loading, the
    sidebar's model caption visible: the model is loaded and the page shows its parts)."""
    start = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Problems", exact=True).wait_for(timeout=timeout_ms)
    page.get_by_text("YFPO Workbench", exact=True).first.wait_for(timeout=timeout_ms)
    painted = time.perf_counter() - start
    page.locator(TABLE).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(IDLE_JS, timeout=timeout_ms)
    interactive = time.perf_counter() - start
    page.locator('[data-testid="stSidebar"]').get_by_text("fingerprint", exact=False).first.wait_for(
        timeout=timeout_ms)
    return painted, interactive, time.perf_counter() - start


def import_seconds() -> float:
    """A bare ``import torch, transformer_lens`` in a new process: the floor under "model ready" (the
    model loader's thread does the same; the first page no longer waits for it)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, transformer_lens"], cwd=ROOT, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def start_to_interactive(env: dict[str, str]) -> dict[str, float]:
    """Seconds from launching the server to the first page drawn, to it being usable and to the model being
    ready, and the same for a second tab on the running server. The browser is launched first (as a user's
    browser is already open): its start-up is reported apart, not counted."""
    launched = time.perf_counter()
    with browser_page() as page:
        browser = time.perf_counter() - launched
        started = time.perf_counter()
        with streamlit_server(env, timeout_s=180) as url:
            healthy = time.perf_counter() - started
            painted, interactive, ready = wait_interactive(page, url)
            second_tab = page.context.browser.new_page(viewport={"width": 1400, "height": 900})
            tab_painted, tab_interactive, tab_ready = wait_interactive(second_tab, url)
    return {"browser_launch_s": browser, "healthy_s": healthy, "first_paint_s": healthy + painted,
            "first_interactive_s": healthy + interactive, "model_ready_s": healthy + ready,
            "tab_paint_s": tab_painted, "tab_interactive_s": tab_interactive, "tab_ready_s": tab_ready}


class MetricsWatcher(threading.Thread):
    """Records the wall time at which each step first appears in the newest run's metrics.jsonl."""

    def __init__(self, runs_dir: Path) -> None:
        super().__init__(daemon=True)
        self.runs_dir = runs_dir
        self.written: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            files = sorted(self.runs_dir.glob("*/metrics.jsonl"))
            if files:
                now = time.perf_counter()
                for line in files[-1].read_text().splitlines():
                    try:
                        step = int(json.loads(line)["step"])
                    except (ValueError, KeyError):
                        continue
                    self.written.setdefault(step, now)
            time.sleep(0.02)


def chart_latency(env: dict[str, str], runs_dir: Path, steps: int, observe_s: float) -> dict[str, float]:
    """Start a DPO run from the Train page; once the live chart shows its first step, time every later step
    from its line in metrics.jsonl to the chart, for ``observe_s`` seconds (or until the run ends)."""
    watcher = MetricsWatcher(runs_dir)
    shown: dict[int, float] = {}
    redraws: list[float] = []
    with streamlit_server(env, timeout_s=180) as url, browser_page() as page:
        page.goto(url + "/train", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Train", exact=True).wait_for(timeout=180_000)
        page.locator('[data-testid="stSidebar"]').get_by_text("fingerprint", exact=False).first.wait_for(
            timeout=180_000)  # the model loads in the background; the Train form appears with it
        page.get_by_text("DPO (λ = 0)", exact=True).click()
        page.wait_for_function(IDLE_JS, timeout=60_000)
        page.get_by_role("tab", name="Optimisation").click()
        box = page.get_by_label("steps", exact=True)
        box.fill(str(steps))
        box.press("Tab")
        page.get_by_role("tab", name="Evaluation and checkpoints").click()
        for name in ("eval_every", "checkpoint_every"):  # keep evaluation and files out: this measures the UI
            box = page.get_by_label(name, exact=True)
            box.fill("1000000")
            box.press("Tab")
        watcher.start()
        clicked = time.perf_counter()
        page.get_by_role("button", name="Start training").click()
        first_chart, last, deadline = None, -1, time.perf_counter() + 120
        while time.perf_counter() < deadline:
            step = page.evaluate(LAST_STEP_JS)
            now = time.perf_counter()
            if step > last:
                if first_chart is None:
                    first_chart, deadline = now, now + observe_s
                redraws.append(now)
                for s in range(last + 1, int(step) + 1):
                    shown.setdefault(s, now)
                last = int(step)
            if last >= steps:
                break
            page.wait_for_timeout(50)
        if page.get_by_role("button", name="Stop").count():
            page.get_by_role("button", name="Stop").click()
        watcher.stop.set()
    if first_chart is None:
        raise RuntimeError("the chart never showed a training step; see the streamlit log in the temp folder")
    # Steady state: steps written after the chart first appeared (earlier ones include the run's start-up).
    latencies = [shown[s] - watcher.written[s] for s in shown
                 if s in watcher.written and watcher.written[s] > first_chart]
    gaps = [b - a for a, b in zip(redraws, redraws[1:], strict=False)]
    if not latencies:
        raise RuntimeError("no step was written after the chart appeared; raise --steps")
    return {"steps_seen": len(latencies), "first_chart_s": first_chart - clicked,
            "latency_median_s": statistics.median(latencies),
            "latency_p90_s": sorted(latencies)[int(0.9 * (len(latencies) - 1))], "latency_max_s": max(latencies),
            "redraw_interval_median_s": statistics.median(gaps) if gaps else float("nan")}


def jobs_comparison(model: str, tmp: Path, env: dict[str, str], repeats: int, training: bool = True,
                    ablation: bool = True) -> list[dict]:
    """The same jobs in the app (through the browser) and through the API (bench/app_jobs.py), medians of
    ``repeats``."""
    from bench.app_jobs import compare, print_rows

    with streamlit_server(env, timeout_s=180) as url:
        rows = compare(url, model, tmp / "runs", env, repeats, training, ablation)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nApp versus API, model {model}, {os.cpu_count()} CPUs (load average {load:.1f}); goal: app ≤ 1.2× API")
    print_rows(rows)
    return rows


def default_model_waits(model: str, tmp: Path) -> dict[str, float] | None:
    """On the default model: click → first streamed token of "Ask the model" (goal: under 2 s) and → its whole
    answer; and a first training run in a fresh problem cache (``YFPO_CACHE_DIR``, with the converted models
    linked in): click → first metrics line (goal: under 60 s)."""
    from yfpo_core.paths import models_cache_dir

    from bench.app_jobs import ask_the_model, first_training_run

    if not (models_cache_dir() / model).exists():
        print(f"\n{model} is not converted in {models_cache_dir()}: Ask-the-model and first-run times skipped "
              f"(load it once: python -c 'from yfpo_core.models import load_model; load_model(\"{model}\")')")
        return None
    cache = tmp / "fresh-cache"
    cache.mkdir()
    (cache / "models").symlink_to(models_cache_dir(), target_is_directory=True)
    env = {**APP_ENV, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YFPO_RUNS_DIR": str(tmp / "default-runs"),
           "YFPO_CACHE_DIR": str(cache), "YFPO_APP_MODEL": model, "YFPO_TEST_LOG": str(tmp / "default.log")}
    with streamlit_server(env, timeout_s=180) as url:
        ask = ask_the_model(url)
        first = first_training_run(url, tmp / "default-runs")
    problems = sorted(p.name for p in (cache / "problems").rglob("*") if p.is_file()) if (cache / "problems").exists() \
        else []
    print(f"\nDefault model {model}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}):")
    print("| measure | value | goal |\n|---|---|---|")
    print(f"| Ask the model at once after the model appears: click → first token on the page | "
          f"{ask['first_token_s']:.2f} s | < 2 s |")
    print(f"| the same: click → whole answer and its ranking | {ask['answer_s']:.1f} s | |")
    print(f"| Ask the model 10 s later: click → first token | {ask['settled_first_token_s']:.2f} s | < 2 s |")
    print(f"| the same: click → whole answer and its ranking | {ask['settled_answer_s']:.1f} s | |")
    print(f"| first training run, fresh problem cache: Start → first metrics line | {first:.1f} s | < 60 s |")
    print(f"problem files generated into the fresh cache: {problems or 'none'}")
    return {**ask, "first_run_s": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=default_model(), help="model name (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="server starts to time")
    parser.add_argument("--steps", type=int, default=100_000, help="steps of the timed run (it is stopped after "
                                                                     "--observe seconds)")
    parser.add_argument("--observe", type=float, default=20, help="seconds of steady-state chart updates to time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the server")
    parser.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    parser.add_argument("--only", choices=("startup", "jobs", "default-model"), default=None,
                        help="only the start-up and chart measures, the app-versus-API jobs, or the default "
                             "model's Ask-the-model and first-training-run times")
    parser.add_argument("--job-repeats", type=int, default=3, help="times each job is timed on each side")
    parser.add_argument("--locate-only", action="store_true",
                        help="time only the locate job on each side (with --no-training-jobs: a short run, for "
                             "more repeats of the shortest job, whose ratio varies most between runs)")
    parser.add_argument("--no-training-jobs", action="store_true",
                        help="leave the held-out evaluation (a training run) out of the app-versus-API jobs")
    parser.add_argument("--default-model", default="smollm2-135m-instruct",
                        help="model of the Ask-the-model and first-run measures (skipped unless it is converted "
                             "in the cache already; default: %(default)s)")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("chromium is not installed (apt-get install chromium); CHROMIUM_ARGS: " + " ".join(CHROMIUM_ARGS))

    tmp = Path(tempfile.mkdtemp(prefix="yfpo-bench-app-"))
    env = server_env(args.model, tmp, args.threads)
    if args.only in (None, "jobs"):
        jobs_comparison(args.model, tmp, env, args.job_repeats, training=not args.no_training_jobs,
                        ablation=not args.locate_only)
    if args.only in (None, "default-model"):
        default_model_waits(args.default_model, tmp)
    if args.only in ("jobs", "default-model"):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    warm = warm_disk_cache(args.model)
    imports = statistics.median(import_seconds() for _ in range(args.repeats))
    starts = [start_to_interactive(env) for _ in range(args.repeats)]
    latency = chart_latency(env, tmp / "runs", args.steps, args.observe)
    med = {k: statistics.median(s[k] for s in starts) for k in starts[0]}
    rows = [
        ("for reference: `python -c 'import torch, transformer_lens'`", f"{imports:.2f} s", "", ""),
        ("for reference: headless Chromium launch (before the server; not counted below)",
         f"{med['browser_launch_s']:.2f} s", "", ""),
        ("server start → healthy (/_stcore/health)", f"{med['healthy_s']:.2f} s", "", ""),
        ("server start → first page drawn (title, sidebar)", f"{med['first_paint_s']:.2f} s", "", ""),
        ("server start → interactive first page (problems table visible, Streamlit idle)",
         f"{med['first_interactive_s']:.2f} s", "< 5 s", "ok" if med["first_interactive_s"] < 5 else "SLOW"),
        ("server start → model ready (sidebar model caption visible; cached on disk)",
         f"{med['model_ready_s']:.2f} s", "", ""),
        ("new tab → interactive (model in memory)", f"{med['tab_interactive_s']:.2f} s", "", ""),
        ("new tab → model caption visible (model in memory)", f"{med['tab_ready_s']:.2f} s", "", ""),
        ("chart update latency, median", f"{latency['latency_median_s']:.2f} s", "< 2 s",
         "ok" if latency["latency_median_s"] < 2 else "SLOW"),
        ("chart update latency, p90 / max", f"{latency['latency_p90_s']:.2f} / {latency['latency_max_s']:.2f} s",
         "< 2 s", "ok" if latency["latency_max_s"] < 2 else "SLOW"),
        ("chart redraw interval, median", f"{latency['redraw_interval_median_s']:.2f} s", "≈ 1 s", ""),
        ("Start training click → first point on the chart", f"{latency['first_chart_s']:.2f} s", "", ""),
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    interactives = ", ".join(f"{s['first_interactive_s']:.2f}" for s in starts)
    readies = ", ".join(f"{s['model_ready_s']:.2f}" for s in starts)
    print(f"\nApp bench: model {args.model}, {os.cpu_count()} CPUs (load average {load:.1f}), {args.repeats} server "
          f"starts (interactive: {interactives} s; model ready: {readies} s), {latency['steps_seen']} "
          "training steps timed" + (f"; disk cache warmed in {warm:.1f} s" if warm else ""))
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | goal | |")
    print(f"|{'-' * (width + 2)}|---|---|---|")
    for name, value, goal, verdict in rows:
        print(f"| {name:<{width}} | {value} | {goal} | {verdict} |")
    if args.json:
        print(json.dumps({"model": args.model, "load_average": load, "import_s": imports, "starts": starts,
                          **latency}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
