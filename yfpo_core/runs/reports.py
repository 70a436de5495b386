"""Reading finished runs back: side-by-side final metrics and overlaid curves (plotly), for CLI, app and notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yfpo_core.runs.run_dir import RunDir
from yfpo_core.training import metric_names as M


def metric_series(rows: Sequence[dict[str, Any]], metric: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``metric`` where it was logged (eval metrics exist only every few steps)."""
    points = [(r[M.STEP], r[metric]) for r in rows if metric in r and r[metric] is not None]
    return [s for s, _ in points], [v for _, v in points]


def run_label(run_dir: Path) -> str:
    """See :meth:`RunDir.label`."""
    return RunDir(run_dir).label()


def compare_runs(run_dirs: Sequence[Path], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run: its state, steps, and each metric's first and last logged value."""
    rows = []
    for run in run_dirs:
        data = RunDir(run).metrics()
        row: dict[str, Any] = {"run": run_label(run), "state": RunDir(run).status().get("state"),
                               "steps": data[-1][M.STEP] if data else 0}
        for metric in metrics:
            _, values = metric_series(data, metric)
            row[metric] = f"{values[0]:.4g} -> {values[-1]:.4g}" if values else "-"
        rows.append(row)
    return rows


def curves_figure(run_dirs: Sequence[Path], metrics: Sequence[str], title: str = "Training runs"):
    """A plotly figure with one panel per metric and one line per run."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, subplot_titles=list(metrics),
                        vertical_spacing=0.06)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for i, run in enumerate(run_dirs):
        data = RunDir(run).metrics()
        for row, metric in enumerate(metrics, start=1):
            steps, values = metric_series(data, metric)
            fig.add_scatter(x=steps, y=values, mode="lines+markers", name=run_label(run), legendgroup=str(run),
                            showlegend=row == 1, line=dict(color=palette[i % len(palette)]), row=row, col=1)
    fig.update_layout(height=260 * len(metrics), title=title, margin=dict(l=40, r=20, t=60, b=40))
    fig.update_xaxes(title_text="step", row=len(metrics), col=1)
    return fig
