"""The app's figures and cells from plain data (app.components): values checked by hand, and the layout
choices that make them readable (issue 13)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.components import (
    MAX_TOKEN_LABELS,
    RUN_PALETTE,
    cluster_order,
    color_key_html,
    layer_totals_chart,
    normalize_rows,
    run_colors,
    runs_overlay_chart,
    token_heatmap,
    z_cell,
)


def test_normalize_rows_scales_each_unit_to_its_own_largest_magnitude():
    values = np.array([[2.0, -4.0, 1.0], [0.0, 0.0, 0.0], [0.5, np.nan, -0.25]])
    out = normalize_rows(values)
    np.testing.assert_allclose(out[0], [0.5, -1.0, 0.25])
    np.testing.assert_allclose(out[1], [0.0, 0.0, 0.0])  # a silent unit stays silent (no division by zero)
    assert out[2][0] == 1.0 and math.isnan(out[2][1]) and out[2][2] == -0.5


def test_cluster_order_puts_units_with_the_same_token_profile_together():
    # rows 0, 2, 4 fire on the first tokens, rows 1, 3 on the last ones (different strengths)
    values = np.array([[3.0, 2.9, 0.0, 0.0], [0.0, 0.1, 5.0, 4.0], [1.0, 1.1, 0.0, 0.1],
                       [0.0, 0.0, 0.5, 0.6], [9.0, 8.0, 0.2, 0.0]])
    order = cluster_order(values)
    assert sorted(order) == [0, 1, 2, 3, 4]
    first, second = sorted([set(order[:3]), set(order[3:])], key=len, reverse=True)
    assert first == {0, 2, 4} and second == {1, 3}
    assert cluster_order(values[:2]) == [0, 1] and cluster_order(np.zeros((0, 3))) == []


def test_token_heatmap_thins_slants_and_normalises():
    tokens = [f"t{i}" for i in range(100)]
    values = np.zeros((3, 100))
    values[0, 5], values[1, 50], values[2, 99] = 10.0, 0.5, -0.1  # one loud unit, two quiet ones
    fig = token_heatmap(tokens, ["A", "B", "C"], values, title="x")
    ticks = fig.layout.xaxis.ticktext
    assert len(ticks) <= MAX_TOKEN_LABELS and ticks[1].strip() == "t3"  # every third of 100 tokens
    assert fig.layout.xaxis.tickangle == -50  # 34 labels of 3-4 characters would touch upright
    assert token_heatmap(tokens[:5], ["A"], values[:1, :5], title="x").layout.xaxis.tickangle == 0
    assert list(fig.data[0].customdata[0][:3]) == ["t0", "t1", "t2"]  # hover names every token
    assert fig.data[0].zmax == 10.0
    assert list(fig.layout.yaxis.tickvals) == ["A", "B", "C"]  # every unit labelled, none skipped
    scaled = token_heatmap(tokens, ["A", "B", "C"], values, title="x", normalize=True)
    z = np.array(scaled.data[0].z)
    assert (z[0, 5], z[1, 50], z[2, 99]) == (1.0, 1.0, -1.0) and scaled.data[0].zmax == 1.0
    assert "unit's max" in scaled.data[0].colorbar.title.text


def test_token_heatmap_clusters_rows_with_their_labels():
    values = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    fig = token_heatmap(["a", "b"], ["U0", "U1", "U2"], values, title="x", cluster=True)
    labels = list(fig.data[0].y)
    assert sorted(labels) == ["U0", "U1", "U2"] and abs(labels.index("U0") - labels.index("U2")) == 1
    z = np.array(fig.data[0].z)
    np.testing.assert_allclose(z[labels.index("U1")], [0.0, 1.0])  # each row moved with its label


@pytest.mark.parametrize("z, random, text, why", [
    (2.5, [0.1, 0.3], "+2.50", ""),
    (float("-inf"), [-0.2, -0.2, -0.2], "n/a", "all 3 random sets changed it by exactly -0.2"),
    (0.0, [0.0, 0.0], "n/a", "zero spread"),  # the core's 0 when the tested set matches them too
    (float("nan"), [0.1], "n/a", "at least 2 random sets (1 here)"),
    (float("nan"), [0.1, float("nan")], "n/a", "not a number"),
])
def test_z_cell_says_why_z_is_undefined(z, random, text, why):
    shown, reason = z_cell(z, random)
    assert shown == text and why in reason and (reason == "") == (why == "")


def test_runs_get_distinct_colours_and_one_key_outside_the_charts():
    names = ["2026-a: DPO", "2026-b: YFPO lam=1", "2026-c: YFPO lam=3"]
    colors = run_colors(names)
    assert len(set(colors.values())) == 3 and list(colors.values()) == list(RUN_PALETTE[:3])
    rows = [{"step": 0, "loss": 0.7}, {"step": 1, "loss": 0.6}]
    fig = runs_overlay_chart({n: rows for n in names}, "loss", colors)
    assert [t.line.color for t in fig.data] == list(RUN_PALETTE[:3])
    assert all(t.showlegend is False for t in fig.data)  # no legend inside the small charts
    key = color_key_html(colors)
    assert all(n in key for n in names) and all(c in key for c in RUN_PALETTE[:3])
    assert run_colors([str(i) for i in range(12)])["10"] == RUN_PALETTE[0]  # the palette repeats after ten


def test_the_per_layer_chart_keeps_its_legend_above_the_plot():
    fig = layer_totals_chart([0, 1, 2], [1.0, 2.0, 0.5], [-0.5, -1.0, 0.0])
    assert fig.layout.legend.y > 1 and fig.layout.legend.yanchor == "bottom"  # not over the layer ticks
    assert [list(t.y) for t in fig.data] == [[1.0, 2.0, 0.5], [-0.5, -1.0, 0.0]]
