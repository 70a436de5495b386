"""The experiment the YFPO paper claims, with its controls, and paired statistics that can tell.

Arms of one seed (same pairs, same held-out problems, same trainable scope, same seed; only the neuron
term differs):

* ``dpo``: ``lam = 0``;
* ``yfpo-located``: the located set at the experiment's ``lam``;
* ``yfpo-random``: a random set of the same size from the same layers, same ``lam``;
* ``yfpo-activation``: an activation-selected set (when given), same ``lam``;
* ``yfpo-located-lam<X>``: the located set at each extra ``lam`` of the dose-response.

Every arm reports ``eval/neuron_margin`` on the *located* set (the probe), so the mechanism check compares
the same units under every arm. The table gives, per arm, the mean and spread over seeds of the held-out
metrics at the end and their change from step 0, and, per metric, the paired difference to DPO with a 95%
two-level bootstrap interval (seeds, then problems within a seed; :mod:`yfpo_core.stats`) and the paired
t-interval over seeds.
"""

from __future__ import annotations

import csv
import gc
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yfpo_core.errors import YfpoError
from yfpo_core.models.base import LoadedModel
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.runs.run_dir import CONFIG_FILE, EVAL_ROWS_FILE, SUMMARY_FILE, RunDir
from yfpo_core.stats import hierarchical_bootstrap, paired_t_interval
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig

METRICS = (M.EVAL_RANKING_ACCURACY, M.EVAL_GOLD_LOGPROB, M.EVAL_MEAN_MARGIN, M.EVAL_NEURON_MARGIN,
           M.EVAL_EXACT_MATCH, M.NEURON_MARGIN, M.AUX_SHARE)
# held-out metric -> (rows file section, per-row field) for the problem-level paired bootstrap
PAIRED = {M.EVAL_RANKING_ACCURACY: ("ranking", "correct"), M.EVAL_GOLD_LOGPROB: ("ranking", "gold_logprob"),
          M.EVAL_MEAN_MARGIN: ("ranking", "margin"), M.EVAL_NEURON_MARGIN: ("neuron_margin", "neuron_margin"),
          M.EVAL_EXACT_MATCH: ("exact", "correct")}
# An experiment folder's own files, beside its arms' run folders (<arm>-s<seed>/).
TABLE_FILE = "experiment.md"
RUNS_CSV_FILE = "experiment.csv"
PAIRED_CSV_FILE = "paired.csv"
DESIGN_FILE = "experiment.json"
HTML_FILE = "experiment.html"


@dataclass(frozen=True)
class ExperimentFolder:
    """An experiment's folder as the Runs page shows it: its tables and its curves."""

    path: Path

    @property
    def table(self) -> Path:
        return self.path / TABLE_FILE

    @property
    def runs_csv(self) -> Path:
        return self.path / RUNS_CSV_FILE

    @property
    def html(self) -> Path:
        return self.path / HTML_FILE

    def exists(self) -> bool:
        return self.table.exists() or self.runs_csv.exists()


def experiment_dirs(root: Path) -> list[Path]:
    """The experiment folders directly under ``root`` (those with a table), newest first."""
    found = {p.parent for pattern in (f"*/{TABLE_FILE}", f"*/{RUNS_CSV_FILE}") for p in root.glob(pattern)}
    return sorted(found, key=lambda p: p.name, reverse=True)


@dataclass
class ExperimentTable:
    runs: list[dict[str, Any]]
    arms: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    markdown: str


def experiment_arms(shared: YFPOConfig, seed: int, located_set: Path, activation_set: Path | None,
                    extra_lams: Sequence[float] = ()) -> list[tuple[str, YFPOConfig]]:
    """The arms of one seed (see the module docstring)."""
    lam = shared.lam if shared.lam > 0 else 0.1
    located = str(located_set)
    arms = [
        ("dpo", replace(shared, seed=seed, lam=0.0, target_share=0.0, neuron_set=located, random_units_seed=None)),
        ("yfpo-located", replace(shared, seed=seed, lam=lam, neuron_set=located, random_units_seed=None)),
        ("yfpo-random", replace(shared, seed=seed, lam=lam, neuron_set=located, random_units_seed=10_000 + seed)),
    ]
    if activation_set:
        arms.append(("yfpo-activation", replace(shared, seed=seed, lam=lam, neuron_set=str(activation_set),
                                                random_units_seed=None, probe_set=located)))
    for extra in extra_lams:
        if extra > 0 and extra != lam:
            arms.append((f"yfpo-located-lam{extra:g}", replace(shared, seed=seed, lam=extra, neuron_set=located,
                                                               random_units_seed=None)))
    return arms


def _final_and_initial(rows: list[dict[str, Any]], metric: str) -> tuple[float | None, float | None]:
    values = [r[metric] for r in rows if r.get(metric) is not None]
    return (values[-1], values[0]) if values else (None, None)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def paired_rows(run_dirs: dict[tuple[str, int], Path], arm: str, baseline: str, metric: str
                ) -> dict[int, list[float]]:
    """seed -> per-problem ``arm - baseline`` of ``metric`` at the end of training (same problems, matched
    by id), from each run's ``eval_final.json``."""
    section, field_name = PAIRED[metric]
    out: dict[int, list[float]] = {}
    for (name, seed), run_dir in run_dirs.items():
        if name != arm or (baseline, seed) not in run_dirs:
            continue
        files = [d / EVAL_ROWS_FILE for d in (run_dir, run_dirs[(baseline, seed)])]
        if not all(f.exists() for f in files):  # no held-out evaluation in this run (n_eval_problems = 0)
            continue
        if metric == M.EVAL_NEURON_MARGIN and len({_probe_of(d) for d in (run_dir, run_dirs[(baseline, seed)])}) > 1:
            continue  # margins of different unit sets are not comparable
        rows = [json.loads(f.read_text()).get(section, []) for f in files]
        base_by_id = {r["id"]: float(r[field_name]) for r in rows[1]}
        diffs = [float(r[field_name]) - base_by_id[r["id"]] for r in rows[0] if r["id"] in base_by_id]
        if diffs:
            out[seed] = diffs
    return out


def _probe_of(run_dir: Path) -> str | None:
    """The neuron set whose margin a run's eval/neuron_margin reports (its probe_set, else its neuron_set)."""
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    return config.get("probe_set") or config.get("neuron_set")


def paired_table(run_dirs: dict[tuple[str, int], Path], arms: Sequence[str], baseline: str = "dpo",
                 n_boot: int = 2000) -> list[dict[str, Any]]:
    """Per arm and metric: the paired difference to ``baseline`` with its 95% bootstrap and t intervals."""
    out = []
    for arm in arms:
        if arm == baseline:
            continue
        for metric in PAIRED:
            by_seed = paired_rows(run_dirs, arm, baseline, metric)
            if not by_seed:
                continue
            boot = hierarchical_bootstrap(by_seed, n_boot=n_boot)
            per_seed = [statistics.fmean(v) for v in by_seed.values()]
            t = paired_t_interval(per_seed)
            out.append({"arm": arm, "metric": metric, "seeds": len(by_seed),
                        "problems": len(next(iter(by_seed.values()))), "difference": boot.mean,
                        "boot_low": boot.low, "boot_high": boot.high, "t_low": t.low, "t_high": t.high,
                        "per_seed": per_seed, "excludes_zero": boot.excludes_zero})
    return out


def run_experiment(shared: YFPOConfig, out_dir: Path, seeds: Sequence[int], *, located_set: Path,
                   activation_set: Path | None = None, extra_lams: Sequence[float] = (),
                   base: LoadedModel | None = None, progress: ProgressCallback | None = None) -> ExperimentTable:
    """Run every arm for every seed in ``out_dir/<arm>-s<seed>`` and write experiment.md/.csv/.html, the
    paired table (paired.csv) and the design with the wall time (experiment.json)."""
    from yfpo_core.models import load_model
    from yfpo_core.runs import execute

    if shared.trainable not in ("mlp_last_k", "all"):
        raise YfpoError("the experiment needs a trainable scope that does not depend on the unit set "
                        "(mlp_last_k or all); with 'units' the random arm would train other weights")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    base = base or load_model(shared.model, device=shared.device)
    plan = [(seed, name, cfg) for seed in seeds
            for name, cfg in experiment_arms(shared, seed, located_set, activation_set, extra_lams)]
    runs, run_dirs = [], {}
    for i, (seed, name, cfg) in enumerate(plan):
        run_dir = out_dir / f"{name}-s{seed}"
        run_dir.mkdir(exist_ok=True)
        summary = execute(run_dir, cfg, base=base)
        gc.collect()  # the finished run's model copy and optimizer state go now, not whenever Python gets to them
        runs.append(_run_record(run_dir, name, seed, summary))
        run_dirs[(name, seed)] = run_dir
        report(progress, i + 1, len(plan), f"{name} seed {seed}")
    arm_names = list(dict.fromkeys(r["arm"] for r in runs))
    paired = paired_table(run_dirs, arm_names)
    wall = round(time.perf_counter() - started, 1)  # as recorded in experiment.json
    return write_experiment(out_dir, shared, seeds, runs, paired, wall, extra_lams)


ARM_ORDER = ("dpo", "yfpo-located", "yfpo-random", "yfpo-activation")


def rebuild_experiment(out_dir: Path) -> ExperimentTable:
    """Re-read an experiment folder's finished runs and rewrite its tables: after the statistics changed, or
    when the experiment's process ended before writing them. The wall time is the recorded one, if any."""
    meta_path = out_dir / DESIGN_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    found = []
    for config_path in out_dir.glob(f"*-s*/{CONFIG_FILE}"):
        name, _, seed = config_path.parent.name.rpartition("-s")
        summary_path = config_path.parent / SUMMARY_FILE
        if seed.isdigit() and summary_path.exists():
            found.append((int(seed), name, config_path.parent, json.loads(summary_path.read_text())))
    if not found:
        raise YfpoError(f"{out_dir} holds no finished experiment runs (<arm>-s<seed>/{SUMMARY_FILE})")
    rank = {name: i for i, name in enumerate(ARM_ORDER)}
    found.sort(key=lambda f: (f[0], rank.get(f[1], len(rank)), f[1]))
    runs = [_run_record(d, name, seed, {**summary, "state": RunDir(d).status().get("state", summary.get("state"))})
            for seed, name, d, summary in found]
    run_dirs = {(name, seed): d for seed, name, d, _ in found}
    seeds = list(dict.fromkeys(seed for seed, *_ in found))
    if meta.get("config"):
        shared = YFPOConfig.from_dict(meta["config"])
    else:
        located = next((d for seed, name, d, _ in found if name == "yfpo-located"), found[0][2])
        shared = YFPOConfig.from_dict(json.loads((located / CONFIG_FILE).read_text()))
    paired = paired_table(run_dirs, list(dict.fromkeys(r["arm"] for r in runs)))
    return write_experiment(out_dir, shared, seeds, runs, paired, float(meta.get("wall_seconds", float("nan"))),
                            meta.get("extra_lams", []))


def _run_record(run_dir: Path, name: str, seed: int, summary: dict[str, Any]) -> dict[str, Any]:
    rows = RunDir(run_dir).metrics()
    record: dict[str, Any] = {"arm": name, "seed": seed, "run": run_dir.name, "state": summary["state"],
                              "seconds": summary["seconds"]}
    for metric in METRICS:
        final, initial = _final_and_initial(rows, metric)
        if metric in (M.NEURON_MARGIN, M.AUX_SHARE):  # training-batch metrics: mean over the steps that logged them
            values = [r[metric] for r in rows if r.get(metric) is not None]
            final, initial = (statistics.fmean(values), None) if values else (None, None)
        record[f"{metric} final"] = final
        record[f"{metric} start"] = initial
    return record


def write_experiment(out_dir: Path, shared: YFPOConfig, seeds: Sequence[int], runs: list[dict[str, Any]],
                     paired: list[dict[str, Any]], wall_seconds: float, extra_lams: Sequence[float] = ()
                     ) -> ExperimentTable:
    """The experiment's files: experiment.md (tables), experiment.csv (runs), paired.csv, experiment.json
    (design, wall time, paired results) and experiment.html (curves and the intervals)."""
    from yfpo_core.atomic import atomic_write_text

    arms = []
    for name in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == name]
        row: dict[str, Any] = {"arm": name, "seeds": len(mine)}
        for metric in METRICS:
            finals = [r[f"{metric} final"] for r in mine if r[f"{metric} final"] is not None]
            deltas = [r[f"{metric} final"] - r[f"{metric} start"] for r in mine
                      if r[f"{metric} final"] is not None and r[f"{metric} start"] is not None]
            row[metric] = _mean_std(finals)
            row[f"Δ {metric}"] = _mean_std(deltas)
        arms.append(row)
    atomic_write_text(out_dir / RUNS_CSV_FILE, _csv(runs))
    atomic_write_text(out_dir / PAIRED_CSV_FILE, _csv([{**p, "per_seed": " ".join(f"{v:.5f}" for v in p["per_seed"])}
                                                    for p in paired]) if paired else "")
    columns = ["arm", "seeds"] + [c for m in METRICS for c in (m, f"Δ {m}") if any(a[c] != "-" for a in arms)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(a[c]) for c in columns) + " |" for a in arms]
    paired_lines = ["| arm | metric | seeds x problems | arm − DPO | 95% bootstrap | 95% t (seeds) | per seed |",
                    "|---|---|---|---|---|---|---|"]
    paired_lines += [f"| {p['arm']} | {p['metric']} | {p['seeds']} x {p['problems']} | {p['difference']:+.4f} | "
                     f"[{p['boot_low']:+.4f}, {p['boot_high']:+.4f}]{' *' if p['excludes_zero'] else ''} | "
                     f"[{p['t_low']:+.4f}, {p['t_high']:+.4f}] | "
                     f"{', '.join(f'{v:+.4f}' for v in p['per_seed'])} |" for p in paired]
    lam = shared.lam if shared.lam > 0 else 0.1
    design = (f"Model {shared.model}; {shared.steps} steps of {shared.batch_pairs} pairs, lr {shared.lr}, beta "
              f"{shared.beta}; lam {lam} (variant {shared.variant}, gamma {shared.gamma}, pooling {shared.pooling}, "
              f"sign {shared.sign}, standardize {shared.standardize}); extra lams {list(extra_lams)}; trainable "
              f"{shared.trainable}{f' (last {shared.last_k})' if 'last_k' in shared.trainable else ''}; "
              f"{shared.n_train_problems} training problems ({shared.problems}, {shared.pair_source}); "
              f"{shared.n_eval_problems} held-out problems ({shared.eval_problems}, eval seed {shared.eval_seed}); "
              f"seeds {list(seeds)}. Wall time {wall_seconds / 60:.1f} min.")
    markdown = (f"{design}\n\nHeld-out metrics at the end of training (mean ± std over seeds; Δ = change from step "
                f"0; {M.NEURON_MARGIN} and {M.AUX_SHARE} are means over the training steps that logged them).\n\n"
                + "\n".join(lines) + "\n\nPaired differences to DPO at the end of training (mean over seeds and "
                "problems; 95% two-level bootstrap over seeds and problems, * = excludes 0; 95% t-interval over "
                "the per-seed means).\n\n" + "\n".join(paired_lines) + "\n")
    atomic_write_text(out_dir / TABLE_FILE, markdown)
    atomic_write_text(out_dir / DESIGN_FILE, json.dumps(
        {"config": shared.to_dict(), "seeds": list(seeds), "extra_lams": list(extra_lams),
         "wall_seconds": round(wall_seconds, 1), "paired": paired, "arms": arms}, indent=2, default=str))
    atomic_write_text(out_dir / HTML_FILE, _figure(out_dir, runs, paired).to_html(include_plotlyjs=True))
    return ExperimentTable(runs=runs, arms=arms, paired=paired, markdown=markdown)


def _csv(rows: list[dict[str, Any]]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _figure(out_dir: Path, runs: list[dict[str, Any]], paired: list[dict[str, Any]]):
    """Curves of every run, and one panel per paired metric with each arm's difference to DPO and its
    bootstrap interval (error bars)."""
    from plotly.subplots import make_subplots

    from yfpo_core.runs.reports import metric_series

    curve_metrics = [M.EVAL_RANKING_ACCURACY, M.EVAL_NEURON_MARGIN, M.NEURON_MARGIN, M.AUX_SHARE]
    paired_metrics = list(dict.fromkeys(p["metric"] for p in paired))
    titles = [f"{m} (curves)" for m in curve_metrics] + [f"{m}: arm − DPO, 95% CI" for m in paired_metrics]
    fig = make_subplots(rows=len(titles), cols=1, subplot_titles=titles, vertical_spacing=0.04)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    arm_colour = {a: palette[i % len(palette)] for i, a in enumerate(dict.fromkeys(r["arm"] for r in runs))}
    for record in runs:
        data = RunDir(out_dir / record["run"]).metrics()
        for row, metric in enumerate(curve_metrics, start=1):
            steps, values = metric_series(data, metric)
            fig.add_scatter(x=steps, y=values, mode="lines", name=record["arm"], legendgroup=record["arm"],
                            showlegend=row == 1 and record["seed"] == runs[0]["seed"],
                            line=dict(color=arm_colour[record["arm"]], width=1), row=row, col=1)
    for row, metric in enumerate(paired_metrics, start=len(curve_metrics) + 1):
        mine = [p for p in paired if p["metric"] == metric]
        fig.add_scatter(x=[p["arm"] for p in mine], y=[p["difference"] for p in mine], mode="markers",
                        marker=dict(color=[arm_colour.get(p["arm"], "#333") for p in mine], size=10),
                        error_y=dict(type="data", symmetric=False,
                                     array=[p["boot_high"] - p["difference"] for p in mine],
                                     arrayminus=[p["difference"] - p["boot_low"] for p in mine]),
                        showlegend=False, row=row, col=1)
        fig.add_hline(y=0, line=dict(color="#888", dash="dot"), row=row, col=1)
    fig.update_layout(height=280 * len(titles), title="YFPO experiment: curves and paired differences to DPO",
                      legend=dict(orientation="h", y=1.02, x=0), margin=dict(l=50, r=20, t=80, b=40))
    return fig
