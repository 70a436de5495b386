"""The corpus dashboard on Unit detail, drawn from the activation index (:mod:`yfpo_core.analysis.dashboards`): top
contexts shaded, examples per quantile, histogram and density, math versus non-math, logit effect, the
unit's attribution score, and a free-prompt box that shades any text. With no index yet, a button builds it
in the background (resumable: a cancelled build continues where it stopped)."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from app import background, state
from app.components import COMPACT, colored_tokens_html, logit_effect_chart
from yfpo_core.analysis.activation_index import build_index, default_corpus, find_index
from yfpo_core.analysis.dashboards import UnitDashboard, shade_text, unit_dashboard
from yfpo_core.errors import YfpoError, user_message
from yfpo_core.models import LoadedModel
from yfpo_core.units.unit import Unit


def _bins_chart(histogram: list[dict[str, float]]) -> go.Figure:
    """Bars per non-empty bin of the index's signed log-spaced bins (tokens on a log scale)."""
    def edge(v: float) -> str:
        return "−∞" if v == -math.inf else "∞" if v == math.inf else f"{v:.2g}"

    fig = go.Figure(go.Bar(x=[f"{edge(b['low'])}…{edge(b['high'])}" for b in histogram],
                           y=[b["count"] for b in histogram], marker_color="#4c78a8",
                           hovertemplate="activation %{x}<br>%{y} tokens<extra></extra>"))
    fig.update_layout(height=260, margin=COMPACT, title="Activation over the corpus", xaxis_title="activation bin",
                      yaxis_title="tokens", yaxis_type="log")
    fig.update_xaxes(type="category")
    return fig


def _example(e: Any, scale: float) -> None:
    kind = "math" if e.math else "non-math"
    st.markdown(f"`{e.text_id}` ({kind}) · **{e.value:.3g}** on `{e.token!r}`")
    st.html(colored_tokens_html(e.tokens, e.values, scale=scale, bold=[e.center]))


def _view(dash: UnitDashboard) -> None:
    s = dash.stats
    m = st.columns(6)
    m[0].metric("corpus max", f"{s['max']:.3g}")
    m[1].metric("mean", f"{s['mean']:.3g}")
    m[2].metric("density (> 0)", f"{s['density']:.1%}")
    m[3].metric("math mean", f"{s['math_mean']:.3g}")
    m[4].metric("non-math mean", f"{s['nonmath_mean']:.3g}")
    m[5].metric("attribution score", "–" if dash.attribution is None else f"{dash.attribution:+.3g}",
                help="The unit's score in the current set or ranking, when it has one")
    st.caption(f"{dash.corpus['n_texts']} texts, {dash.corpus['n_tokens']} tokens (corpus `{dash.corpus['corpus']}`) · "
               f"drawn in {1000 * dash.seconds:.0f} ms")
    left, right = st.columns([3, 2], gap="large")
    scale = max(abs(s["max"]), 1e-6)
    with left:
        st.markdown("**Top contexts over the corpus**")
        for e in dash.top:
            _example(e, scale)
        st.markdown("**Examples per quantile of its active tokens**")
        for q in dash.quantiles:
            with st.expander(f"quantile {q['label']} · {q['low']:.3g} to {q['high']:.3g}"):
                for e in q["examples"]:
                    _example(e, scale)
    with right:
        st.plotly_chart(_bins_chart(dash.histogram), key="index_histogram")
        if dash.promoted:
            st.plotly_chart(logit_effect_chart(dash.promoted, dash.suppressed), key="index_logits")


def _free_prompt(model: LoadedModel, unit: Unit, sae: Any) -> None:
    text = st.text_area("Shade any text", key="index_free_text", height=80,
                        placeholder="Type a text: every token is shaded by the unit's activation")
    if text.strip():
        tokens, values = shade_text(model, unit, text, sae=sae)
        st.html(colored_tokens_html(tokens, values))


def render(model: LoadedModel, unit: Unit, sae: Any, attribution: float | None) -> None:
    st.subheader("Over the whole corpus (activation index)")
    index = find_index(model, sae)
    if index is None:
        units = f"the features of SAE {sae.sae_id}" if sae is not None else "every MLP neuron"
        st.info(f"No activation index for {model.name} yet: it records {units} over the default corpus (GSM8K "
                "problems with solutions, GSM-Symbolic variants, non-math texts) once, then every unit's dashboard "
                "is drawn from it in milliseconds. Or run `yfpo index build`.")
        key = (model.fingerprint, sae.source if sae is not None else None)
        if st.button("Build the index", icon=":material/database:", key="index_build"):
            background.start("index_build", lambda progress: build_index(
                model, default_corpus(model), sae=sae, progress=progress), label="Building the activation index",
                key=key)
        background.show("index_build", key)
    else:
        try:
            _view(unit_dashboard(index, unit, model, sae=sae, attribution=attribution))
        except YfpoError as exc:
            st.error(user_message(exc) or str(exc))
    _free_prompt(model, unit, sae)


def attribution_of(model: LoadedModel, unit: Unit) -> float | None:
    """The unit's score in the current set, else in the current ranking (when it ranked units like it)."""
    current = state.neuron_set(model)
    if unit in current and current.get(unit).score is not None:
        return float(current.get(unit).score)
    return None
