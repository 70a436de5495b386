"""Runs page: every run on disk (any tab, any session, the CLI), compared.

Lists the run folders under the runs directory (``YFPO_RUNS_DIR``, default ``~/.local/share/yfpo/runs``) and inside experiment
folders (``yfpo experiment`` writes ``experiment.md``/``.csv`` beside its arms), overlays chosen metrics,
tabulates final values, shows experiment tables where present, and compares the chosen units'
activations under the base model and a checkpoint (did training move the units it rewarded?).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app import background, resources, state, widgets
from app.components import before_after_chart, color_key_html, run_colors, runs_overlay_chart
from app.sidebar import active_model
from yfpo_core.errors import YfpoError
from yfpo_core.runs import RunDir, default_runs_dir, list_runs, policy_from_checkpoint, read_status
from yfpo_core.runs.experiment import ExperimentFolder, experiment_dirs
from yfpo_core.runs.run_dir import SUMMARY_METRICS, UNITS_FILE, objective_label
from yfpo_core.analysis.set_activations import compare_activations
from yfpo_core.training import metric_names as M
from yfpo_core.units.unit import Unit

DEFAULT_METRICS = [M.NEURON_MARGIN, M.AUX_SHARE, M.EVAL_NEURON_MARGIN, M.REWARDS_MARGINS, M.EVAL_RANKING_ACCURACY]
FINAL_METRICS = [M.LOSS, M.REWARDS_MARGINS, M.REWARDS_ACCURACIES, M.NEURON_MARGIN, M.AUX_SHARE, M.EVAL_NEURON_MARGIN,
                 M.EVAL_RANKING_ACCURACY, M.EVAL_GOLD_LOGPROB, M.EVAL_EXACT_MATCH]


def _metrics(run: Path) -> list[dict[str, Any]]:
    version = RunDir(run).metrics_version()
    return resources.run_metrics(str(run), version) if version else []


def _all_runs(root: Path) -> dict[str, Path]:
    """Display name -> folder: top-level runs, then each experiment's arms as ``<experiment>/<arm>``."""
    runs = {str(p.relative_to(root)): p for p in list_runs(root)}  # list_runs includes experiment arms
    return runs


def _overlay(names: list[str], runs: dict[str, Path], metrics: list[str]) -> None:
    """One small chart per metric, each run in its own colour; one key above them names the runs."""
    series = {name: _metrics(runs[name]) for name in names}
    colors = run_colors(names)
    st.html(color_key_html({f"{name} ({objective_label(RunDir(runs[name]).config_dict())})": colors[name]
                            for name in names}))
    cols = st.columns(min(len(metrics), 3) or 1)
    for i, metric in enumerate(metrics):
        with cols[i % len(cols)]:
            st.plotly_chart(runs_overlay_chart(series, metric, colors), key=f"runs_overlay_{metric}")


@st.fragment(run_every=2.0)
def _live_overlay(names: list[str], runs: dict[str, Path], metrics: list[str]) -> None:
    _overlay(names, runs, metrics)


def _final_table(names: list[str], runs: dict[str, Path]) -> None:
    records = []
    for name in names:
        rows = _metrics(runs[name])
        run = RunDir(runs[name])
        summary = run.summary()
        # The objective next to the run: comparing final values means little without what each run optimised.
        record: dict[str, Any] = {"run": name, "objective": objective_label(run.config_dict()),
                                  "state": read_status(runs[name]).get("state"), "seconds": summary.get("seconds")}
        for metric in FINAL_METRICS:
            values = [r[metric] for r in rows if isinstance(r.get(metric), int | float)]
            if values:
                record[metric] = values[-1]
                record[f"Δ {metric}"] = values[-1] - values[0]
        records.append(record)
    frame = pd.DataFrame(records)
    # The container's key names the table in the page (a dataframe without selection ignores its own key).
    with st.container(key="runs_final_table"):
        st.dataframe(frame, hide_index=True, width="stretch", column_config={  # scrolls sideways, the run pinned
            "run": st.column_config.TextColumn(pinned=True),
            **{c: st.column_config.NumberColumn(format="%.4g") for c in frame.columns
               if c not in ("run", "objective", "state")}})


def _experiments(root: Path, names: list[str], runs: dict[str, Path]) -> None:
    folders = list(dict.fromkeys([*(runs[n] for n in names), *(runs[n].parent for n in names if "/" in n),
                                  *experiment_dirs(root)]))
    shown = [e for e in map(ExperimentFolder, folders) if e.exists()]
    if not shown:
        return
    st.subheader("Experiments")
    for experiment in shown:
        with st.expander(f"{experiment.path.name}", expanded=len(shown) == 1):
            if experiment.table.exists():
                st.markdown(experiment.table.read_text())
            if experiment.runs_csv.exists():
                try:
                    st.dataframe(pd.read_csv(experiment.runs_csv), hide_index=True)
                except (OSError, ValueError, pd.errors.ParserError) as exc:
                    st.error(f"{experiment.runs_csv}: cannot read it ({exc}).")
            if experiment.html.exists():
                st.caption(f"Interactive curves: `{experiment.html}`")


def _held_out(config: dict[str, Any], ids: list[str], n: int):
    """The run's held-out problems (by id, from its eval source and seed), or the first ``n`` of that source."""
    source = config.get("eval_problems") or "toy"
    problems = resources.get_problems(source, None, int(config.get("seed", 0)) + 1)
    by_id = {p.id: p for p in problems}
    chosen = [by_id[i] for i in ids if i in by_id][:n]
    return chosen or problems[:n]


def _before_after(names: list[str], runs: dict[str, Path]) -> None:
    st.subheader("Before / after: the units under the base model and a checkpoint")
    st.caption("Mean activation of each unit over the gold-solution tokens of held-out problems (the quantity the "
               "neuron reward pushes apart between chosen and rejected answers).")
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    name = c1.selectbox("Run", names, key="runs_ba_run")
    run = runs[name]
    run_dir = RunDir(run)
    checkpoints = run_dir.checkpoints()
    if not checkpoints:
        st.info("This run has no checkpoint yet.")
        return
    ckpt_name = c2.selectbox("Checkpoint", [p.name for p in reversed(checkpoints)], key="runs_ba_ckpt")
    n = int(c3.number_input("Held-out problems", min_value=1, max_value=50, value=5, key="runs_ba_n"))
    config = run_dir.config_dict()
    units_doc = run_dir.units_doc()
    try:
        units = [Unit.parse(label) for label in units_doc.get("units", [])]
    except ValueError as exc:
        st.error(f"{run_dir.file(UNITS_FILE)}: {exc}")
        return
    if not units:
        current = state.neuron_set_for(state.active_fingerprint())
        units = [su.unit for su in current.units if su.unit.kind == "neuron"] if current is not None else []
        if not units:  # SAE features are left out: the core's compare_activations reads neurons only
            st.info("The run trained without units (plain DPO) and the current set has no MLP neurons: pick some "
                    "first (SAE features cannot be compared here yet).")
            return
        st.caption("The run used no units (plain DPO): showing the current set's units.")
    units = units[:40]
    key = (str(run), ckpt_name, tuple(u.label for u in units), n)
    if st.button(f"Compare {len(units)} units: base vs {ckpt_name}", key="runs_ba_go", wrap=True):
        try:
            base = resources.get_model(config.get("model", ""), config.get("device", "cpu"))
            problems = _held_out(config, units_doc.get("eval_problem_ids", []), n)
        except YfpoError as exc:
            st.error(str(exc))
            return
        folder = {p.name: p for p in checkpoints}[ckpt_name]

        def work(progress):
            with base.lock:  # policy_from_checkpoint deep-copies the shared model: no foreign hooks on it
                policy = policy_from_checkpoint(base, folder)
            return compare_activations({"base": base, ckpt_name: policy}, units, problems, progress=progress)

        background.start("before_after", work, key=key, label=f"Reading {len(units)} units on {len(problems)} problems")
    job = background.take("before_after")
    if job is not None:
        state.reset(state.BEFORE_AFTER, (job.key, job.result))
    background.show("before_after")
    stored = state.get(state.BEFORE_AFTER)
    if not stored or stored[0] != key:
        return
    rows = stored[1]
    st.plotly_chart(before_after_chart(rows), key="runs_before_after")
    table = pd.DataFrame(rows).pivot_table(index="short", columns="model", values="mean_activation", sort=False)
    models = list(dict.fromkeys(r["model"] for r in rows))
    if len(models) == 2:
        table["Δ"] = table[models[1]] - table[models[0]]
    st.dataframe(table, column_config={c: st.column_config.NumberColumn(format="%.4g") for c in table.columns})


def render() -> None:
    active_model(note=False)  # a load error, if any; the runs load the model they were trained on themselves
    root = default_runs_dir()
    runs = _all_runs(root)
    st.caption(f"Every run under `{root.resolve()}`: started from any tab, or from the command line.")
    if not runs:
        st.info("No runs yet: start one on the **Train** page (or with `yfpo train`).")
        return
    names = list(runs)
    frame = pd.DataFrame([RunDir(runs[name]).summary_row(name, _metrics(runs[name])) for name in names])
    # The table's key names the runs it lists: a new run shifts the rows, so a row number of the old table
    # would tick another run. The ticked runs are kept by name, and a new table (or this page after a visit
    # to another) starts with them ticked.
    remembered = [names.index(n) for n in state.get(state.RUNS_PICKED) if n in names]
    event = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="multi-row", width="stretch",
                         key=f"runs_table_{hash(tuple(names))}", selection_default={"selection": {"rows": remembered}},
                         column_config={"run": st.column_config.TextColumn(pinned=True),
                                        **{c: st.column_config.NumberColumn(format="%.4g") for c in SUMMARY_METRICS}})
    picked = [names[i] for i in widgets.selection_of(event, "rows") if i < len(names)]
    st.session_state[state.RUNS_PICKED] = picked
    chosen = picked or names[: min(3, len(names))]
    st.caption(("Selected: " if picked else "Tick rows to choose runs; showing the newest: ") + ", ".join(chosen))
    available = sorted({k for name in chosen for r in _metrics(runs[name]) for k in r
                        if k not in (M.STEP, M.ELAPSED_S)})
    state.default(state.RUNS_METRICS, [m for m in DEFAULT_METRICS if m in available] or available[:2])
    state.reset(state.RUNS_METRICS, [m for m in state.get(state.RUNS_METRICS) if m in available])
    metrics = st.multiselect("Metrics", available, key=state.RUNS_METRICS)
    if metrics:
        running = any(read_status(runs[n]).get("state") in ("running", "preparing") for n in chosen)
        (_live_overlay if running else _overlay)(chosen, runs, metrics)
    st.subheader("Final metrics")
    _final_table(chosen, runs)
    _experiments(root, chosen, runs)
    st.divider()
    _before_after(chosen, runs)

