"""The experiment the YFPO paper claims, with its controls: DPO vs YFPO with the located units vs YFPO with
a random set of the same size (and, optionally, an activation-selected set), over several seeds.

Every arm of a seed uses the same pairs, the same held-out problems, the same trainable scope and the same
seed; only the neuron term differs (``lam = 0`` for DPO; the random arm swaps the located units for random
ones drawn from the same layers). The table reports, per arm, the mean and spread over seeds of the
held-out metrics at the end of training and their change from the start.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yfpo_core.atomic import atomic_write, atomic_write_text
from yfpo_core.errors import YfpoError
from yfpo_core.models.base import LoadedModel
from yfpo_core.progress import ProgressCallback, report
from yfpo_core.training.config import YFPOConfig

METRICS = ("eval/ranking_accuracy", "eval/gold_logprob", "eval/exact_match", "yfpo/neuron_margin")


@dataclass
class ExperimentTable:
    runs: list[dict[str, Any]]
    arms: list[dict[str, Any]]
    markdown: str


def experiment_arms(shared: YFPOConfig, seed: int, located_set: Path, activation_set: Path | None
                    ) -> list[tuple[str, YFPOConfig]]:
    """The arms of one seed (see the module docstring)."""
    lam = shared.lam if shared.lam > 0 else 0.1
    arms = [
        ("dpo", replace(shared, seed=seed, lam=0.0, neuron_set=str(located_set), random_units_seed=None)),
        ("yfpo-located", replace(shared, seed=seed, lam=lam, neuron_set=str(located_set), random_units_seed=None)),
        ("yfpo-random", replace(shared, seed=seed, lam=lam, neuron_set=str(located_set),
                                random_units_seed=10_000 + seed)),
    ]
    if activation_set:
        arms.append(("yfpo-activation", replace(shared, seed=seed, lam=lam, neuron_set=str(activation_set),
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


def run_experiment(shared: YFPOConfig, out_dir: Path, seeds: Sequence[int], *, located_set: Path,
                   activation_set: Path | None = None, base: LoadedModel | None = None,
                   progress: ProgressCallback | None = None) -> ExperimentTable:
    """Run every arm for every seed in ``out_dir/<arm>-s<seed>`` and write experiment.md/.csv/.html."""
    from yfpo_core.models import load_model
    from yfpo_core.reports import curves_figure
    from yfpo_core.runs import execute, read_metrics

    if shared.trainable not in ("mlp_last_k", "all"):
        raise YfpoError("the experiment needs a trainable scope that does not depend on the unit set "
                        "(mlp_last_k or all); with 'units' the random arm would train other weights")
    out_dir.mkdir(parents=True, exist_ok=True)
    base = base or load_model(shared.model, device=shared.device)
    plan = [(seed, name, cfg) for seed in seeds for name, cfg in experiment_arms(shared, seed, located_set,
                                                                                  activation_set)]
    runs = []
    for i, (seed, name, cfg) in enumerate(plan):
        run_dir = out_dir / f"{name}-s{seed}"
        run_dir.mkdir(exist_ok=True)
        summary = execute(run_dir, cfg, base=base)
        rows = read_metrics(run_dir)
        record: dict[str, Any] = {"arm": name, "seed": seed, "run": run_dir.name, "state": summary["state"],
                                  "seconds": summary["seconds"]}
        for metric in METRICS:
            final, initial = _final_and_initial(rows, metric)
            record[f"{metric} final"] = final
            record[f"{metric} start"] = initial
        runs.append(record)
        report(progress, i + 1, len(plan), f"{name} seed {seed}")

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

    atomic_write_text(out_dir / "experiment.csv", _csv_text(runs))
    columns = ["arm", "seeds"] + [c for m in METRICS for c in (m, f"Δ {m}")
                                  if any(a[c] != "-" for a in arms)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(a[c]) for c in columns) + " |" for a in arms]
    markdown = (f"Held-out metrics at the end of training (mean ± std over seeds {list(seeds)}; Δ = change from "
                f"step 0). Model {shared.model}, {shared.steps} steps, lam {shared.lam if shared.lam > 0 else 0.1} "
                f"(variant {shared.variant}), trainable {shared.trainable}"
                f"{f' (last {shared.last_k})' if 'last_k' in shared.trainable else ''}.\n\n" + "\n".join(lines) + "\n")
    atomic_write_text(out_dir / "experiment.md", markdown)
    figure = curves_figure([out_dir / r["run"] for r in runs],
                           ["eval/ranking_accuracy", "eval/gold_logprob", "yfpo/neuron_margin", "rewards/margins"],
                           title="DPO vs YFPO (located units) vs YFPO (random units)")
    atomic_write(out_dir / "experiment.html", lambda tmp: figure.write_html(tmp, include_plotlyjs=True))
    return ExperimentTable(runs=runs, arms=arms, markdown=markdown)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text (written atomically by the caller: a kill never leaves half a table)."""
    import io

    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
