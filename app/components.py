"""Render helpers that take plain data (lists, dicts, numpy arrays) and return figures or HTML.

No core calls, no caching, no session state: every function here can be tried in a notebook with
made-up numbers. Colours: scores and activations use a diverging scale centred on zero (blue = positive,
red = negative), so the sign of a unit's contribution reads the same on every page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from yfpo_core.training import metric_names as M

DIVERGING = "RdBu"  # plotly's RdBu runs red (low) to blue (high)
COMPACT = dict(l=10, r=10, t=36, b=10)


def candidate_logprob_chart(candidates: Mapping[str, float], gold: str) -> go.Figure:
    """Bar chart of log p(continuation) per candidate answer, the gold one highlighted."""
    names = list(candidates)
    colors = ["#2ca02c" if n == gold else "#9aa5b1" for n in names]
    fig = go.Figure(go.Bar(x=names, y=[candidates[n] for n in names], marker_color=colors,
                           hovertemplate="answer %{x}<br>log p = %{y:.2f}<extra></extra>"))
    fig.update_layout(height=260, margin=COMPACT, title="Teacher-forced log p per answer",
                      xaxis_title="candidate answer (gold in green)", yaxis_title="log p (nats)")
    fig.update_xaxes(type="category")
    return fig


# -- tokens ---------------------------------------------------------------------------------------------
def visible_token(token: str) -> str:
    """A token as it should look in a chart label: spaces and newlines made visible."""
    return token.replace("\n", "⏎").replace(" ", "␣").replace("\t", "⇥") or "∅"


def _color(value: float, scale: float) -> str:
    if not math.isfinite(value) or scale <= 0:
        return "transparent"
    alpha = min(abs(value) / scale, 1.0) * 0.85
    rgb = "33,102,172" if value > 0 else "178,24,43"
    return f"rgba({rgb},{alpha:.3f})"


def colored_tokens_html(tokens: Sequence[str], values: Sequence[float], *, scale: float | None = None,
                        start: int = 0, bold: Sequence[int] = ()) -> str:
    """Tokens as inline spans shaded by value (hover shows the value), like CircuitsVis' colored tokens.

    Args:
        tokens: Token strings.
        values: One value per token.
        scale: The value drawn at full colour (default: the largest absolute value).
        start: Tokens before this index are drawn in grey italics (the prompt).
        bold: Indices to underline (e.g. the max-activating token).
    """
    finite = [abs(v) for v in values if math.isfinite(v)]
    scale = scale if scale is not None else (max(finite) if finite else 1.0)
    parts = []
    marks = set(bold)
    for i, (tok, val) in enumerate(zip(tokens, values, strict=True)):
        text = html.escape(tok).replace("\n", "⏎<br>")
        style = f"background:{_color(float(val), scale)};padding:1px 0;border-radius:2px;"
        if i < start:
            style += "color:#888;font-style:italic;"
        if i in marks:
            style += "border-bottom:2px solid #000;font-weight:600;"
        parts.append(f'<span title="{html.escape(visible_token(tok))}: {val:.3g}" style="{style}">{text}</span>')
    return ('<div style="font-family:monospace;white-space:pre-wrap;line-height:1.7;font-size:0.9em">'
            + "".join(parts) + "</div>")


def normalize_rows(values: np.ndarray) -> np.ndarray:
    """Each row divided by its largest finite |value| (a row of zeros stays zeros; NaN stays NaN), so that
    a unit that fires weakly is as visible as one that fires hard: ``[n_units, n_tokens]`` in [-1, 1]."""
    values = np.asarray(values, dtype=float)
    peak = np.where(np.isfinite(values), np.abs(values), 0.0).max(axis=1, keepdims=True, initial=0.0)  # [n_units, 1]
    return values / np.where(peak > 0, peak, 1.0)


def cluster_order(values: np.ndarray) -> list[int]:
    """A row order that puts rows with similar token profiles next to each other: the leaf order of an
    average-linkage agglomerative clustering on cosine distance (what ``scipy``'s ``linkage`` +
    ``leaves_list`` give, written out here because scipy is not a dependency). ``values``: ``[n_rows, n_cols]``.

    Each merge joins the two closest clusters (the lower index first, so the order is deterministic) and
    updates the distances by the Lance-Williams rule for the average: d(a∪b, c) = (|a| d(a,c) + |b| d(b,c)) /
    (|a| + |b|)."""
    x = np.nan_to_num(np.asarray(values, dtype=float))
    n = x.shape[0]
    if n < 3:
        return list(range(n))
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    dist = 1.0 - unit @ unit.T  # [n, n]; a row of zeros is at distance 1 from every row
    np.fill_diagonal(dist, np.inf)
    members: list[list[int]] = [[i] for i in range(n)]
    active = np.ones(n, dtype=bool)
    for _ in range(n - 1):
        masked = np.where(active[:, None] & active[None, :], dist, np.inf)
        a, b = sorted(np.unravel_index(int(np.argmin(masked)), masked.shape))
        na, nb = len(members[a]), len(members[b])
        merged = (na * dist[a] + nb * dist[b]) / (na + nb)
        dist[a, :], dist[:, a] = merged, merged
        dist[a, a] = np.inf
        members[a], members[b] = members[a] + members[b], []
        active[b] = False
    return members[int(np.flatnonzero(active)[0])]


MAX_TOKEN_LABELS = 40  # token labels on a heatmap's axis; more overlap into a smear (hover shows every token)


def token_heatmap(tokens: Sequence[str], unit_labels: Sequence[str], values: np.ndarray, *, title: str,
                  colorbar: str = "activation", normalize: bool = False, cluster: bool = False) -> go.Figure:
    """Units (rows) x tokens (columns) heatmap; ``values`` is ``[n_units, n_tokens]``.

    ``normalize`` scales each unit to its own largest |value| (see :func:`normalize_rows`), so a few strong
    units do not wash out the colour of the rest; ``cluster`` orders the units by :func:`cluster_order`.
    At most :data:`MAX_TOKEN_LABELS` tokens are labelled (evenly thinned; slanted when they would not fit side
    by side); hover names each one.
    """
    values = np.asarray(values, dtype=float)
    labels = list(unit_labels)
    if normalize:
        values = normalize_rows(values)
    if cluster and len(labels) > 2:
        order = cluster_order(values)
        values, labels = values[order], [labels[i] for i in order]
    finite = np.abs(values[np.isfinite(values)])
    zmax = 1.0 if normalize else (float(finite.max()) if finite.size and finite.max() > 0 else 1.0)
    x = list(range(len(tokens)))
    shown = [visible_token(t) for t in tokens]
    fig = go.Figure(go.Heatmap(
        z=values, x=x, y=labels, colorscale=DIVERGING, zmid=0, zmin=-zmax, zmax=zmax,
        customdata=np.array([shown] * len(labels)),
        colorbar=dict(title=f"{colorbar} / unit's max" if normalize else colorbar, thickness=12),
        hovertemplate="%{y}<br>token %{x}: %{customdata}<br>value %{z:.3g}<extra></extra>"))
    step = max(1, math.ceil(len(tokens) / MAX_TOKEN_LABELS))
    ticks = [f"{shown[i]} " for i in x[::step]]
    upright = sum(len(t) for t in ticks) <= 90  # short labels fit side by side; longer ones are slanted
    fig.update_xaxes(tickmode="array", tickvals=x[::step], ticktext=ticks, tickangle=0 if upright else -50,
                     tickfont=dict(family="monospace", size=11), title=None)
    # Every unit labelled: rows tall enough for their label (plotly skips category labels that would touch).
    fig.update_yaxes(autorange="reversed", type="category", tickmode="array", tickvals=labels, ticktext=labels,
                     tickfont=dict(size=11))
    fig.update_layout(height=min(150 + 20 * len(labels), 1150), margin=dict(l=10, r=10, t=36, b=70), title=title)
    return fig


# -- locating ---------------------------------------------------------------------------------------------
def unit_scatter(layers: Sequence[int], indices: Sequence[int], scores: Sequence[float], labels: Sequence[str],
                 in_set: Sequence[bool], *, n_layers: int, width: int, title: str) -> go.Figure:
    """The ranked units as points (x = unit index, y = layer, colour = score) for box/lasso selection.

    Units already in the set get a black ring. ``customdata`` holds each point's unit label, which is
    what a selection hands back.
    """
    scores = np.asarray(scores, dtype=float)
    vmax = float(np.abs(scores).max()) if scores.size else 1.0
    size = 7 + 11 * np.abs(scores) / (vmax or 1.0)
    ring = ["#000" if s else "rgba(0,0,0,0)" for s in in_set]
    trace = go.Scattergl if len(scores) > 1500 else go.Scatter  # WebGL keeps thousands of points fluid
    fig = go.Figure(trace(
        x=list(indices), y=list(layers), mode="markers", customdata=list(labels),
        marker=dict(color=scores, colorscale=DIVERGING, cmid=0, cmin=-vmax, cmax=vmax, size=size,
                    line=dict(color=ring, width=2), colorbar=dict(title="score", thickness=12)),
        hovertemplate="%{customdata}<br>layer %{y}, unit %{x}<br>score %{marker.color:.3g}<extra></extra>",
        selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.35))))
    fig.update_layout(height=max(260, min(60 + 22 * n_layers, 620)), margin=COMPACT, title=title,
                      dragmode="select", clickmode="event+select", xaxis_title="unit index",
                      yaxis_title="layer")
    fig.update_xaxes(range=[-0.02 * width, width * 1.02])
    fig.update_yaxes(range=[-0.6, n_layers - 0.4], dtick=1 if n_layers <= 32 else None)
    return fig


def aggregate_columns(matrix: np.ndarray, max_columns: int = 192) -> tuple[np.ndarray, list[int]]:
    """Shrink ``[rows, width]`` to at most ``max_columns`` columns, keeping each bin's largest-magnitude
    value with its sign (a mean would wash out the few strong units a bin holds). Returns the matrix and
    each bin's first unit index."""
    matrix = np.asarray(matrix, dtype=float)
    rows, width = matrix.shape
    bin_size = max(1, math.ceil(width / max_columns))
    starts = list(range(0, width, bin_size))
    out = np.zeros((rows, len(starts)))
    for j, s in enumerate(starts):
        block = matrix[:, s:s + bin_size]
        pick = np.abs(block).argmax(axis=1)
        out[:, j] = block[np.arange(rows), pick]
    return out, starts


def layer_unit_heatmap(matrix: np.ndarray, layers: Sequence[int], *, title: str, max_columns: int = 192) -> go.Figure:
    """Layer x unit heatmap of scores, binned along units when the layer is wide (see aggregate_columns)."""
    agg, starts = aggregate_columns(matrix, max_columns)
    width = np.asarray(matrix).shape[1]
    bin_size = starts[1] - starts[0] if len(starts) > 1 else width
    vmax = float(np.abs(agg).max()) if agg.size else 1.0
    ends = [min(s + bin_size, width) - 1 for s in starts]
    fig = go.Figure(go.Heatmap(
        z=agg, x=starts, y=[str(x) for x in layers], colorscale=DIVERGING, zmid=0, zmin=-vmax, zmax=vmax,
        customdata=np.array([ends] * len(layers)), colorbar=dict(title="score", thickness=12),
        hovertemplate=("layer %{y}, units %{x}–%{customdata}<br>strongest score %{z:.3g}<extra></extra>"
                       if bin_size > 1 else "layer %{y}, unit %{x}<br>score %{z:.3g}<extra></extra>")))
    note = f" (each cell: the strongest of {bin_size} units)" if bin_size > 1 else ""
    fig.update_layout(height=max(220, min(60 + 20 * len(layers), 640)), margin=COMPACT, title=title + note,
                      xaxis_title="unit index", yaxis_title="layer")
    fig.update_yaxes(type="category")
    return fig


def feature_grid_heatmap(scores: Sequence[float], *, title: str, columns: int | None = None) -> go.Figure:
    """One SAE's feature scores as a grid (feature ``i`` at row ``i // columns``, column ``i % columns``):
    a single row of thousands of features would be unreadable. Default ``columns``: a power of two near
    the square root of the number of features (64 for 2048)."""
    values = np.asarray(scores, dtype=float).ravel()
    n = values.size
    if columns is None:
        columns = min(max(n, 1), max(16, 2 ** math.ceil(math.log2(max(math.sqrt(max(n, 1)), 1)))))
    rows = max(1, math.ceil(n / columns))
    grid = np.full(rows * columns, np.nan)
    grid[:n] = values
    grid = grid.reshape(rows, columns)
    index = np.arange(rows * columns, dtype=float).reshape(rows, columns)
    index[grid != grid] = np.nan  # no feature in the padding
    finite = np.abs(values[np.isfinite(values)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    fig = go.Figure(go.Heatmap(
        z=grid, x=list(range(columns)), y=[r * columns for r in range(rows)], customdata=index,
        colorscale=DIVERGING, zmid=0, zmin=-vmax, zmax=vmax, colorbar=dict(title="score", thickness=12),
        hovertemplate="feature %{customdata:.0f}<br>score %{z:.3g}<extra></extra>"))
    fig.update_layout(height=max(200, min(80 + 14 * rows, 700)), margin=COMPACT,
                      title=f"{title} ({n} features, {columns} per row)", xaxis_title="feature index mod "
                      f"{columns}", yaxis_title="first feature of the row")
    fig.update_yaxes(autorange="reversed")
    return fig


def layer_totals_chart(layers: Sequence[int], positive: Sequence[float], negative: Sequence[float]) -> go.Figure:
    """Sum of positive and of negative scores per layer: where in depth the signal sits."""
    names = [str(x) for x in layers]
    fig = go.Figure([go.Bar(x=names, y=list(positive), name="sum of positive", marker_color="#2166ac"),
                     go.Bar(x=names, y=list(negative), name="sum of negative", marker_color="#b2182b")])
    # The legend sits above the plot, right of the title: below it, it would cover the layer ticks.
    fig.update_layout(barmode="relative", height=260, margin=dict(l=10, r=10, t=48, b=10), title="Score per layer",
                      xaxis_title="layer", yaxis_title="summed score",
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1))
    return fig


def ablation_chart(effects: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Per metric: each random set's effect (grey dots), their mean ± std, and the tested set (diamond).

    ``effects``: ``{metric: {"tested": float, "random": [float, ...]}}``.
    """
    metrics = list(effects)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[f"Δ {m}" for m in metrics])
    for j, metric in enumerate(metrics, start=1):
        rand = [float(v) for v in effects[metric]["random"]]
        tested = float(effects[metric]["tested"])
        fig.add_trace(go.Scatter(x=["random sets"] * len(rand), y=rand, mode="markers", name="random set",
                                 marker=dict(color="#9aa5b1", size=9), showlegend=j == 1,
                                 hovertemplate="random set: %{y:.3g}<extra></extra>"), row=1, col=j)
        if len(rand) > 1:
            fig.add_trace(go.Scatter(x=["random sets"], y=[float(np.mean(rand))], mode="markers", name="mean ± std",
                                     error_y=dict(type="data", array=[float(np.std(rand, ddof=1))]),
                                     marker=dict(color="#444", size=12, symbol="line-ew-open"), showlegend=j == 1),
                          row=1, col=j)
        fig.add_trace(go.Scatter(x=["tested set"], y=[tested], mode="markers", name="tested set",
                                 marker=dict(color="#d62728", size=14, symbol="diamond"), showlegend=j == 1,
                                 hovertemplate="tested set: %{y:.3g}<extra></extra>"), row=1, col=j)
        fig.add_hline(y=0, line=dict(color="#bbb", dash="dot"), row=1, col=j)
    fig.update_layout(height=300, margin=COMPACT, legend=dict(orientation="h", y=-0.15))
    return fig


def z_cell(z: float, random_effects: Sequence[float]) -> tuple[str, str]:
    """The ablation table's z as text, and why it is ``n/a`` when it is (``""`` otherwise).

    z = (tested effect − mean random effect) / std of the random effects is undefined when the random sets
    have no spread (the core then returns ±inf, or 0 when the tested set matches them too) or are fewer than
    two; the table says so instead of showing −Infinity."""
    effects = [float(v) for v in random_effects]
    if len(effects) < 2:
        return "n/a", f"z needs at least 2 random sets ({len(effects)} here)"
    if not all(math.isfinite(v) for v in effects):
        return "n/a", "a random set's effect is not a number"
    if max(effects) == min(effects):
        return "n/a", f"all {len(effects)} random sets changed it by exactly {effects[0]:+.3g} (zero spread)"
    if not math.isfinite(z):
        return "n/a", "the tested set's effect is not a number"
    return f"{z:+.2f}", ""


# -- one unit ------------------------------------------------------------------------------------------------
def histogram_chart(counts: Sequence[int], edges: Sequence[float], *, threshold: float | None = None) -> go.Figure:
    """Activation histogram from bin counts and edges (log-scaled counts: most tokens sit near zero)."""
    centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    fig = go.Figure(go.Bar(x=centers, y=list(counts), width=widths, marker_color="#4c78a8",
                           hovertemplate="activation %{x:.3g}<br>%{y} tokens<extra></extra>"))
    if threshold is not None:
        fig.add_vline(x=threshold, line=dict(color="#d62728", dash="dot"))
    fig.update_layout(height=260, margin=COMPACT, title="Activation over all tokens", xaxis_title="activation",
                      yaxis_title="tokens", yaxis_type="log", bargap=0)
    return fig


def logit_effect_chart(promoted: Sequence[tuple[str, float]], suppressed: Sequence[tuple[str, float]]) -> go.Figure:
    """Tokens the unit's output direction pushes up (blue) and down (red) through the unembedding."""
    items = sorted(list(promoted) + list(suppressed), key=lambda t: t[1])
    fig = go.Figure(go.Bar(
        x=[v for _, v in items], y=[f"{visible_token(t)} " for t, _ in items], orientation="h",
        marker_color=["#2166ac" if v > 0 else "#b2182b" for _, v in items],
        hovertemplate="%{y}: %{x:+.3g}<extra></extra>"))
    fig.update_layout(height=max(240, 18 * len(items) + 60), margin=COMPACT, title="Direct logit effect",
                      xaxis_title="logit change per unit of activation (centred)")
    fig.update_yaxes(type="category", tickfont=dict(family="monospace"))
    return fig


def intervention_chart(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Answer-ranking accuracy and gold log-prob under each intervention (``none`` first)."""
    names = [str(r["intervention"]) for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["ranking accuracy", "mean gold log p"])
    colors = ["#9aa5b1"] + ["#d62728"] * (len(rows) - 1)
    fig.add_trace(go.Bar(x=names, y=[r["ranking_accuracy"] for r in rows], marker_color=colors, showlegend=False),
                  row=1, col=1)
    fig.add_trace(go.Bar(x=names, y=[r["gold_logprob"] for r in rows], marker_color=colors, showlegend=False),
                  row=1, col=2)
    fig.update_layout(height=260, margin=COMPACT)
    return fig


# -- training ------------------------------------------------------------------------------------------------
def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            xs.append(int(r.get(M.STEP, len(xs))))
            ys.append(float(v))
    return xs, ys


def training_chart(metrics: Sequence[Mapping[str, Any]], keys: Sequence[str], *, cols: int = 3) -> go.Figure:
    """One small panel per metric key (line + markers over steps). ``uirevision`` keeps a user's zoom while
    the chart is redrawn every second with new points."""
    keys = list(keys)
    n_rows = max(1, math.ceil(len(keys) / cols))
    fig = make_subplots(rows=n_rows, cols=cols, subplot_titles=keys, vertical_spacing=0.16, horizontal_spacing=0.07)
    for i, key in enumerate(keys):
        xs, ys = _series(metrics, key)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=key, showlegend=False,
                                 marker=dict(size=5), line=dict(color="#1f77b4"),
                                 hovertemplate=f"{key}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=230 * n_rows + 40, margin=COMPACT, uirevision="keep")
    return fig


RUN_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf")  # D3's qualitative palette: ten hues told apart at a glance


def run_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per run, in order (the palette repeats after ten runs)."""
    return {name: RUN_PALETTE[i % len(RUN_PALETTE)] for i, name in enumerate(names)}


def color_key_html(colors: Mapping[str, str]) -> str:
    """The shared legend of the run charts: a coloured line and the full name of each run, wrapping."""
    items = "".join(f'<span style="display:inline-flex;align-items:center;gap:6px;margin:2px 18px 2px 0">'
                    f'<span style="display:inline-block;width:22px;height:4px;background:{html.escape(color)}">'
                    f'</span>{html.escape(name)}</span>' for name, color in colors.items())
    return f'<div style="display:flex;flex-wrap:wrap;font-size:0.9em">{items}</div>'


def runs_overlay_chart(series: Mapping[str, Sequence[Mapping[str, Any]]], metric: str,
                       colors: Mapping[str, str] | None = None) -> go.Figure:
    """The same metric for several runs on one axis; ``series`` maps a run name to its metric rows.

    Each run has its colour from ``colors`` (default :func:`run_colors`); the charts show no legend of
    their own (a legend of long run names took half of each small chart): the page draws one key for all
    of them (:func:`color_key_html`), and hover names the run."""
    colors = dict(colors or run_colors(list(series)))
    fig = go.Figure()
    for name, rows in series.items():
        xs, ys = _series(rows, metric)
        if xs:
            color = colors.get(name, RUN_PALETTE[0])
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, showlegend=False,
                                     line=dict(color=color, width=2), marker=dict(size=4, color=color),
                                     hovertemplate=f"{html.escape(name)}<br>step %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(height=280, margin=COMPACT, title=metric, xaxis_title="step")
    return fig


def before_after_chart(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Mean activation of each unit under each model, grouped by unit (``rows``: unit/short/model/mean)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    palette = ["#9aa5b1", "#1f77b4", "#ff7f0e", "#2ca02c"]
    fig = go.Figure()
    for i, model in enumerate(models):
        sub = [r for r in rows if r["model"] == model]
        fig.add_trace(go.Bar(x=[r["short"] for r in sub], y=[r["mean_activation"] for r in sub], name=model,
                             marker_color=palette[i % len(palette)]))
    fig.update_layout(barmode="group", height=320, margin=COMPACT, xaxis_title="unit",
                      yaxis_title="mean activation on solution tokens", legend=dict(orientation="h", y=1.12))
    fig.update_xaxes(type="category")
    return fig
