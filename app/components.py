"""Render helpers that take plain data: no core calls, no caching."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go


def candidate_logprob_chart(candidates: Mapping[str, float], gold: str) -> go.Figure:
    """Bar chart of log p(continuation) per candidate answer, the gold one highlighted."""
    names = list(candidates)
    colors = ["#2ca02c" if n == gold else "#9aa5b1" for n in names]
    fig = go.Figure(go.Bar(x=names, y=[candidates[n] for n in names], marker_color=colors,
                           hovertemplate="answer %{x}<br>log p = %{y:.2f}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Teacher-forced log p per answer",
                      xaxis_title="candidate answer (gold in green)", yaxis_title="log p (nats)")
    fig.update_xaxes(type="category")
    return fig
