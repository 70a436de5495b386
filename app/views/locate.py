"""Locate page: score every MLP neuron (or every feature of an SAE) on a problem set, pick the ones that
matter, check the pick.

Flow: unit type (and which SAE) → settings (form) → attribution in a background job with a live progress
bar → a selectable scatter of the top units (box/lasso/click) and a ranked table with row checkboxes →
picked units go into the current neuron set → the ablation check (top-k or the set vs. random same-layer
sets, or other features of the same SAE) one button away. Results are cached per (model fingerprint,
settings, SAE), shared by every tab. All the SAE work (loading, splicing, ablating features) is the core's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app import background, faithfulness_panel, resources, state, timings, widgets
from app.components import (
    ablation_chart,
    feature_grid_heatmap,
    layer_totals_chart,
    layer_unit_heatmap,
    unit_scatter,
    z_cell,
)
from app.sidebar import required_model
from yfpo_core.attribution import AttributionResult, attribute
from yfpo_core.analysis.interventions import Intervention, ablation_test
from yfpo_core.models import LoadedModel
from yfpo_core.attribution.registry import METHOD_INFO, METHODS, TARGET_HELP, TARGETS
from yfpo_core.problems import load_problems
from yfpo_core.saes.sae import LoadedSAE, SAESpace
from yfpo_core.units.unit import Unit

RANK_BY = {"value": "largest positive", "abs": "largest |score|", "negative": "most negative"}
MAX_SHOWN = 5000  # units on the plot and in the table (a 30 x 1536 model has 46k)
# "units": "neurons" or "sae:<folder or release>"; "sae_stamp": when that SAE's weights were written
KEY_FIELDS = ("source", "limit", "method", "target", "layers", "normalize", "steps", "units", "sae_stamp")


def _settings_form(model: LoadedModel, sae: LoadedSAE | None, features: bool) -> dict[str, Any] | None:
    """The settings (over ``sae``'s features when ``features``); returned only on the run in which the form
    was submitted."""
    n_layers = int(model.model.cfg.n_layers)
    state.default(state.LOCATE_METHOD, "attnlrp")  # the paper's method, and the core's and the CLI's default
    state.default(state.LOCATE_TARGET, "answer_logprob")
    state.default(state.LOCATE_NORMALIZE, False)
    state.default(state.LOCATE_STEPS, 8)
    layers_value = state.get(state.LOCATE_LAYERS)
    if not (isinstance(layers_value, tuple | list) and len(layers_value) == 2
            and 0 <= layers_value[0] <= layers_value[1] < n_layers):
        state.reset(state.LOCATE_LAYERS, (0, n_layers - 1))
    with st.form("locate_form", border=True):
        c1, c2, _ = st.columns([2, 1, 2])
        source, limit = widgets.problem_set_picker(model, state.LOCATE_SOURCE, state.LOCATE_LIMIT,
                                                   default_limit=20 if widgets.is_toy(model) else 10,
                                                   columns=(c1, c2))
        c4, c5, c6 = st.columns([2, 2, 2])
        method = c4.selectbox("Method", METHODS, key=state.LOCATE_METHOD,
                              format_func=lambda m: f"{m} — {METHOD_INFO[m].help if m in METHOD_INFO else ''}")
        target = c5.selectbox("Target", TARGETS, key=state.LOCATE_TARGET,
                              format_func=lambda t: f"{t} — {TARGET_HELP.get(t, '')}",
                              help="What the gradient methods explain; activation/contrast methods ignore it.")
        if features:
            c6.caption(f"Layer: the SAE's ({sae.layer}, `{sae.hook_name}`)" if sae is not None else
                       "Layer: the SAE's")
            lo, hi = (sae.layer, sae.layer) if sae is not None else (0, 0)
        elif n_layers > 1:
            lo, hi = c6.slider("Layers", 0, n_layers - 1, key=state.LOCATE_LAYERS)
        else:
            c6.caption("Layers: 0 (the model has one layer)")
            lo, hi = 0, 0
        with st.expander("More options"):
            normalize = st.checkbox("Normalise each problem's scores (every problem weighs the same)",
                                    key=state.LOCATE_NORMALIZE)
            steps = st.number_input("Integrated-gradients steps", min_value=2, max_value=64, key=state.LOCATE_STEPS)
        submitted = st.form_submit_button("Run attribution", type="primary")
    if not submitted:
        return None
    if features and sae is None:
        st.error("Choose an SAE that loads (above) before running the attribution over its features.")
        return None
    return {"source": source, "limit": int(limit), "method": method, "target": target,
            "layers": tuple(range(lo, hi + 1)), "normalize": bool(normalize), "steps": int(steps),
            "units": f"sae:{sae.source}" if features else "neurons",
            "sae_stamp": resources.sae_stamp(sae.source) if features else 0}


def _key(model: LoadedModel, settings: Mapping[str, Any]) -> tuple:
    return (model.fingerprint, *(settings[f] for f in KEY_FIELDS))


def _settings_of(key: tuple) -> dict[str, Any]:
    return dict(zip(KEY_FIELDS, key[1:], strict=True))


def _start(model: LoadedModel, settings: dict[str, Any], sae: LoadedSAE | None) -> None:
    key = _key(model, settings)
    cached = resources.attribution_store().get(key)
    if cached is not None:
        state.set_attribution(model.fingerprint, key, cached, settings)
        timings.remember(model.fingerprint, cached)
        st.success("Same settings as an earlier run: showing its result (cached).")
        return
    layers = list(settings["layers"])
    space = SAESpace(sae) if settings["units"] != "neurons" else None

    def work(progress):
        # Loaded here, not in the page: a first GSM-Symbolic generation takes a while (then it is on disk).
        problems = load_problems(settings["source"], limit=settings["limit"])
        return attribute(model, problems, settings["method"], settings["target"], units=space, layers=layers,
                         steps=settings["steps"], normalize=settings["normalize"], progress=progress)

    what = f"the {sae.d_sae} features of {sae.sae_id}" if space is not None else "MLP neurons"
    background.start("locate", work, key=key,
                     label=f"{settings['method']} over {what} on {settings['limit']} {settings['source']} problems")


def _collect() -> None:
    """Keep a finished attribution: in the shared store and as this tab's result for its model."""
    job = background.take("locate")
    if job is not None:
        resources.attribution_store().put(job.key, job.result)
        state.set_attribution(job.key[0], job.key, job.result, _settings_of(job.key))
        timings.remember(job.key[0], job.result)


def _sae_entries(result: AttributionResult) -> dict[str, dict[str, Any]] | None:
    """``{sae_id: entry}`` for a set's ``sae`` section when ``result`` ranked SAE features."""
    if result.space.kind != "sae_feature":
        return None
    loaded = result.space.loaded
    return {loaded.sae_id: loaded.neuron_set_entry()}


def _provenance(result: AttributionResult, settings: Mapping[str, Any]) -> tuple[dict, dict]:
    params = {k: v for k, v in result.params.items() if k != "relevance_budget"}  # per-problem list: long
    selection = {"method": result.method, "target": result.target,
                 "params": {**params, "layers": list(result.space.layers)}}
    if result.space.kind == "sae_feature":
        selection["params"]["sae"] = result.space.sae_id
    problems = {"source": settings.get("source"), "n": len(result.problem_ids), "ids": list(result.problem_ids)}
    return selection, problems


def _add(model: LoadedModel, result: AttributionResult, settings: Mapping[str, Any], units: list[Unit]) -> None:
    selection, problems = _provenance(result, settings)
    n = widgets.add_units(model, units, [result.score_of(u) for u in units], selection, problems,
                          sae=_sae_entries(result))
    state.flash("success", f"Added {n} unit{'s' if n != 1 else ''} to the set "
                           f"({len(state.neuron_set(model))} now).")
    st.rerun()


def _result_view(model: LoadedModel, result: AttributionResult, settings: Mapping[str, Any]) -> None:
    total = int(result.scores.numel())
    layers, seconds = result.space.layers, result.params.get("seconds", "?")
    features = result.space.kind == "sae_feature"
    where = (f"the {result.space.width} features of SAE `{result.space.sae_id}` (layer {layers[0]})" if features
             else f"layers {layers[0]}–{layers[-1]}")
    st.markdown(f"**{result.method}** / {result.target} on {len(result.problem_ids)} {settings.get('source', '')} "
                f"problems · {where} · {seconds} s · {result.created}")
    if result.method == "attnlrp" and "relevance_budget_mean" in result.params:
        st.caption(f"Mean relevance budget {result.params['relevance_budget_mean']:.3g}: the share of the relevance "
                   "entering at the logits that reaches the token embeddings (1 = conserved; the rest was absorbed "
                   "by softmax and biases).")
    state.default(state.LOCATE_RANK_BY, "abs")
    most = min(total, MAX_SHOWN)
    state.default(state.LOCATE_TOP_N, min(300, most))
    if state.get(state.LOCATE_TOP_N) > most:
        state.reset(state.LOCATE_TOP_N, most)
    c1, c2 = st.columns([3, 2])
    by = c1.radio("Rank by", list(RANK_BY), format_func=RANK_BY.get, key=state.LOCATE_RANK_BY, horizontal=True)
    top_n = int(c2.number_input("Units on the plot and in the table", min_value=1, max_value=most, step=50,
                                key=state.LOCATE_TOP_N, help=f"The strongest by the ranking; at most {MAX_SHOWN}"))
    top = result.top(top_n, by)
    current = state.neuron_set(model)
    in_set = [s.unit in current for s in top]
    n_layers, width = int(model.model.cfg.n_layers), result.space.width

    plot_tab, map_tab = st.tabs(["Pick on the plot", "Feature grid" if features else "Layer × unit heatmap"])
    with plot_tab:
        fig = unit_scatter([s.unit.layer for s in top], [s.unit.index for s in top], [s.score for s in top],
                           [s.unit.label for s in top], in_set, n_layers=n_layers, width=width,
                           title=f"Top {top_n} units ({RANK_BY[by]}) · drag a box or lasso to pick · "
                                 "ringed = in the set")
        event = st.plotly_chart(fig, on_select="rerun", selection_mode=("box", "lasso", "points"),
                                key="locate_scatter", config={"displaylogo": False})
        plot_labels = [p.get("customdata") for p in widgets.selection_of(event, "points") if p.get("customdata")]
    with map_tab:
        scores = result.scores.numpy()
        if features:
            st.plotly_chart(feature_grid_heatmap(scores[0], title=f"Scores of every feature of {result.space.sae_id}"),
                            key="locate_heatmap")
        else:
            st.plotly_chart(layer_unit_heatmap(scores, result.space.layers, title="Scores of every unit"),
                            key="locate_heatmap")
            st.plotly_chart(layer_totals_chart(result.space.layers, np.clip(scores, 0, None).sum(1),
                                               np.clip(scores, None, 0).sum(1)), key="locate_layer_totals")

    frame = pd.DataFrame([{"rank": s.rank, "unit": s.unit.short_label, "layer": s.unit.layer,
                           "index": s.unit.index, "score": s.score, "in set": flag, "label": s.unit.label}
                          for s, flag in zip(top, in_set, strict=True)])
    event = st.dataframe(frame, hide_index=True, on_select="rerun", selection_mode="multi-row", key="locate_table",
                         height=300, column_config={
                             "score": st.column_config.NumberColumn(format="%.4g"),
                             "label": st.column_config.TextColumn("hook:index", width="large")})
    table_labels = [frame.iloc[i]["label"] for i in widgets.selection_of(event, "rows") if i < len(frame)]
    picked_labels = list(dict.fromkeys(plot_labels + table_labels))
    shown = {s.unit.label: s.unit for s in top}  # features parsed from a label would lack their hook
    picked = [shown.get(label) or Unit.parse(label) for label in picked_labels]
    new = [u for u in picked if u not in current]
    old = [u for u in picked if u in current]
    st.caption(f"Picked {len(picked)} unit{'s' if len(picked) != 1 else ''} "
               f"({len(plot_labels)} on the plot, {len(table_labels)} in the table); {len(current)} in the set.")
    b1, b2, b3, b4, b5 = st.columns([2, 2, 1, 1, 2], vertical_alignment="bottom")
    if b1.button(f"Add {len(new)} picked to the set", icon=":material/add:", key="locate_add", type="primary",
                 disabled=not new, wrap=True):
        _add(model, result, settings, new)
    if b2.button(f"Remove {len(old)} picked from the set", icon=":material/remove:", key="locate_remove",
                 disabled=not old, wrap=True):
        widgets.remove_units(model, old)
        state.flash("info", f"Removed {len(old)} units from the set.")
        st.rerun()
    k = int(b3.number_input("k", min_value=1, max_value=total, value=min(10, total), key="locate_k"))
    if b4.button(f"Add top {k}", key="locate_add_top", wrap=True):
        _add(model, result, settings, [s.unit for s in result.top(k, by)])
    if b5.button("Inspect the first picked", icon=":material/biotech:", key="locate_inspect", disabled=not picked,
                 wrap=True):
        from app import nav
        from app.views.unit import focus

        focus(picked[0])
        nav.switch_to("unit")


def _ablation_view(model: LoadedModel, result: AttributionResult, settings: Mapping[str, Any]) -> None:
    st.subheader("Does the ranking matter? Ablation check")
    st.caption("Zero (or mean-ablate) the tested units and, for comparison, random sets of the same size drawn "
               "from the same layers; a located set matters when its effect lies far outside the random spread "
               "(|z| of 2 or more).")
    current = state.neuron_set(model)
    total = int(result.scores.numel())
    state.default(state.ABLATE_WHAT, "top-k of this ranking")
    state.default(state.ABLATE_K, max(1, min(10, total // 2)))  # random sets need as many other units
    if state.get(state.ABLATE_K) > total:  # kept from a ranking of more units (e.g. neurons, then an SAE)
        state.reset(state.ABLATE_K, max(1, min(10, total // 2)))
    state.default(state.ABLATE_KIND, "zero")
    state.default(state.ABLATE_RANDOM, 5)
    c1, c2, c3, c4, c5 = st.columns([3, 1, 1, 1, 2], vertical_alignment="bottom")
    what = c1.radio("Test", ["top-k of this ranking", "the current set"], key=state.ABLATE_WHAT, horizontal=True,
                    format_func=lambda o: f"{o} ({len(current)} units)" if o == "the current set" else o)
    k = int(c2.number_input("k", min_value=1, max_value=total, key=state.ABLATE_K))
    kind = c3.selectbox("Ablation", ["zero", "mean"], key=state.ABLATE_KIND)
    n_random = int(c4.number_input("Random sets", min_value=2, max_value=30, key=state.ABLATE_RANDOM))
    if c5.button("Run the ablation check", key="ablate_run", wrap=True):
        by = state.get(state.LOCATE_RANK_BY) or "abs"
        if what.startswith("top-k") or not len(current):
            units, description = [s.unit for s in result.top(k, by)], f"top {k} by {RANK_BY[by]}"
        else:
            units, description = current.units_only(), f"the current set ({len(current)} units)"
        ok, sae = widgets.sae_for_units(model, units, result)
        if units and ok:
            info = {"tested": description, "intervention": kind, "n_random": n_random,
                    "problems": f"the {len(result.problem_ids)} {settings['source']} problems it was located on"}
            if sae is not None:
                info["tested"] += f" (features of SAE {sae.sae_id}; random sets: other features of it)"

            def work(progress):
                problems = load_problems(settings["source"], limit=settings["limit"])
                return info, ablation_test(model, problems, units, intervention=Intervention(kind),
                                           n_random=n_random, seed=0, sae=sae, progress=progress)

            background.start("ablation", work, label=f"ablation of {description}", key=model.fingerprint)
    job = background.take("ablation")
    if job is not None:
        info, report = job.result
        state.set_ablation(job.key, info, report)
    background.show("ablation")
    stored = state.ablation(model)
    if stored is None:
        return
    info, report = stored
    st.markdown(f"**Tested:** {info['tested']} · {info['intervention']} ablation · {info['n_random']} random sets · "
                f"{info['problems']}")
    rows = [r for r in report.rows() if r["metric"] in ("ranking_accuracy", "gold_logprob", "mean_margin")]
    z_cells = {r["metric"]: z_cell(r["z"], report.random_effects(r["metric"])) for r in rows}
    table = pd.DataFrame([{
        "metric": r["metric"], "baseline": r["baseline"], "with the set ablated": r["tested_set"],
        "effect": r["effect"], "random sets: effect": f"{r['random_effect_mean']:+.3g} ± {r['random_effect_std']:.3g}",
        "z": z_cells[r["metric"]][0]} for r in rows])
    if any(note for _, note in z_cells.values()):
        table["why z is n/a"] = [z_cells[r["metric"]][1] for r in rows]
    st.dataframe(table, hide_index=True, column_config={
        **{c: st.column_config.NumberColumn(format="%.4g") for c in ("baseline", "with the set ablated", "effect")},
        "why z is n/a": st.column_config.TextColumn(width="large")})
    st.plotly_chart(ablation_chart({m: {"tested": report.effect(m), "random": report.random_effects(m)}
                                    for m in ("ranking_accuracy", "gold_logprob")}), key="ablation_chart")
    z = report.z_score("gold_logprob")
    if not z_cells["gold_logprob"][1]:
        verdict = "matters more than random units" if abs(z) >= 2 else "is not distinguishable from random units"
        st.caption(f"On gold log-prob the tested set {verdict} (z = {z:+.2f}).")
    else:
        st.caption(f"On gold log-prob z is n/a: {z_cells['gold_logprob'][1]}. Try more problems or mean ablation.")


def render() -> None:
    st.caption("Which MLP neurons (or SAE features) carry the math? Score every unit on a problem set, pick the "
               "strongest, and check that removing them hurts more than removing random units.")
    model = required_model()
    features, sae = widgets.unit_type_picker(model, state.LOCATE_UNIT_TYPE, state.LOCATE_SAE_CHOICE,
                                             state.LOCATE_SAE_PATH)
    _collect()  # before the form: its time hint reads the attribution that just finished
    settings = _settings_form(model, sae, features)
    if settings is not None:
        _start(model, settings, sae)
    _collect()  # a job that ended within its start's grace period: its time is the hint's
    st.caption(timings.hint(model, state.get(state.LOCATE_METHOD), int(state.get(state.LOCATE_LIMIT) or 1)))
    job = background.show("locate")
    if job is not None and job.running:
        # The previous result is not drawn again under a new attribution's progress bar: its figures (46,080
        # cells for SmolLM2) kept the browser and the server busy beside the job, 1.3x its time.
        return
    current = state.attribution(model)
    if current is None:
        st.info("Choose the settings and press **Run attribution** (how long it takes: under the button).")
        faithfulness_panel.render(model)
        return
    key, result, stored_settings = current
    _result_view(model, result, stored_settings)
    st.divider()
    _ablation_view(model, result, stored_settings)
    faithfulness_panel.render(model)
