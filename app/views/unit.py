"""Unit detail page: everything about one neuron or SAE feature, the dashboard users know from
Neuronpedia/SAEDashboard, computed locally on the math problems: top-activating problems with their tokens
coloured, the activation histogram and density, the direct logit effect (for a feature: of its decoder
direction), the relevance on one problem token by token, and what zeroing or scaling the unit does to
answer-ranking accuracy. A feature is read with the SAE its unit names spliced in (the core does that).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import background, index_panel, state, steering_panel, widgets
from app.components import colored_tokens_html, histogram_chart, intervention_chart, logit_effect_chart
from app.sidebar import required_model
from yfpo_core.attribution import AttributionResult, token_scores
from yfpo_core.analysis.inspection import UnitProfile, intervention_effect, profile_unit, unit_activations
from yfpo_core.analysis.interventions import Intervention
from yfpo_core.models import LoadedModel
from yfpo_core.attribution.registry import METHODS, TARGETS
from yfpo_core.problems import Problem
from yfpo_core.saes.sae import LoadedSAE, SAESpace
from yfpo_core.analysis.set_activations import TokenMap, set_token_activations, set_token_relevance
from yfpo_core.units.unit import Unit

SOURCES = ("the set", "the ranking", "type one")


def focus(unit: Unit) -> None:
    """Make ``unit`` the one this page shows (other pages call this before switching here)."""
    state.reset(state.UNIT_FOCUS, unit.label)
    state.reset(state.UNIT_SOURCE, "type one")
    state.reset(state.UNIT_TYPED, widgets.unit_text(unit))


def _score(result: AttributionResult | None, unit: Unit) -> float | None:
    """``unit``'s score in ``result``, when ``result`` ranked units of its kind (and SAE) at its hook."""
    if result is None:
        return None
    space = result.space
    if space.kind != unit.kind or space.sae_id != unit.sae_id or unit.hook_name not in space.unit_hook_names:
        return None
    return result.score_of(unit)


def _pick_unit(model: LoadedModel) -> Unit | None:
    current = state.neuron_set(model)
    attribution = state.attribution(model)
    focus_label = state.get(state.UNIT_FOCUS)
    state.default(state.UNIT_SOURCE, "the set" if len(current) else ("the ranking" if attribution else "type one"))
    state.default(state.UNIT_TYPED, widgets.unit_text(Unit.parse(focus_label)) if focus_label else "L0N0")
    c1, c2 = st.columns([2, 3])
    source = c1.radio("Pick a unit from", SOURCES, key=state.UNIT_SOURCE, horizontal=True)
    if source == "the set":
        units = [su.unit for su in current.units]
        if not units:
            c2.info("The set is empty: pick units on the Locate page, or type one.")
            return None
    elif source == "the ranking":
        if attribution is None:
            c2.info("No attribution yet for this model: run one on the Locate page, or type a unit.")
            return None
        units = [s.unit for s in attribution[1].top(200, state.get(state.LOCATE_RANK_BY) or "abs")]
    else:
        typed = c2.text_input("Unit", key=state.UNIT_TYPED,
                              help="L<layer>N<index>, <layer>:<index> or blocks.<L>.mlp.hook_post:<index>; "
                                   "a feature: sae:<sae_id>:<index> (an SAE loaded in this tab or the set's), "
                                   "sae:default:<index> or sae:<folder>:<index>")
        unit = widgets.parse_unit(typed, model)
        if unit is not None:
            state.reset(state.UNIT_FOCUS, unit.label)
        return unit
    labels = [u.label for u in units]
    index = labels.index(focus_label) if focus_label in labels else 0
    picked = c2.selectbox("Unit", units, index=index, format_func=lambda u: f"{u.short_label}  ({u.label})",
                          key=f"unit_pick_{source}")
    state.reset(state.UNIT_FOCUS, picked.label)
    return picked


def _header(model: LoadedModel, unit: Unit, sae: LoadedSAE | None) -> None:
    current = state.neuron_set(model)
    attribution = state.attribution(model)
    result = attribution[1] if attribution else None
    facts = [f"layer {unit.layer}", f"index {unit.index}", f"`{unit.label}`"]
    if sae is not None:
        facts.insert(0, f"feature of SAE `{sae.sae_id}` ({sae.d_sae} features at `{sae.hook_name}`, "
                        f"from `{sae.source}`)")
    score = _score(result, unit)
    if score is not None:
        facts.append(f"{result.method} score {score:+.4g}")
    c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
    c1.subheader(f"{unit.short_label}")
    c1.caption(" · ".join(facts))
    if unit in current:
        if c2.button("Remove from the set", icon=":material/remove:", key="unit_remove", wrap=True):
            widgets.remove_units(model, [unit])
            st.rerun()
    elif c2.button("Add to the set", icon=":material/add:", key="unit_add", type="primary", wrap=True):
        widgets.add_units(model, [unit], [score], sae={sae.sae_id: sae.neuron_set_entry()} if sae else None)
        st.rerun()


def _profile_view(profile: UnitProfile) -> None:
    m = st.columns(4)
    m[0].metric("mean activation", f"{profile.mean:.3g}")
    m[1].metric("std", f"{profile.std:.3g}")
    m[2].metric("max", f"{profile.max:.3g}")
    m[3].metric(f"density (> {profile.threshold:g})", f"{profile.density:.1%}",
                help="Share of all tokens (questions and gold solutions) where the unit is above the threshold")
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Top-activating problems** (max-activating token underlined; question tokens in grey)")
        scale = max((abs(e["max_activation"]) for e in profile.top_examples), default=1.0)
        for example in profile.top_examples:
            tokens = [t for t, _ in example["context"]]
            values = [v for _, v in example["context"]]
            where = "solution" if example["in_response"] else "question"
            st.markdown(f"`{example['problem_id']}` · max **{example['max_activation']:.3g}** on "
                        f"`{example['token']!r}` ({where})")
            peak = max(range(len(values)), key=lambda i: values[i]) if values else 0
            st.html(colored_tokens_html(tokens, values, scale=scale, bold=[peak]))
    with right:
        st.plotly_chart(histogram_chart(profile.histogram_counts, profile.histogram_edges,
                                        threshold=profile.threshold), key="unit_histogram")
        st.plotly_chart(logit_effect_chart(profile.promoted, profile.suppressed), key="unit_logits")


def _feature_maps(model: LoadedModel, unit: Unit, problem: Problem, sae: LoadedSAE, result: AttributionResult | None,
                  method: str, target: str) -> tuple[TokenMap, TokenMap]:
    """A feature's activation and relevance at every token of ``problem`` (the core's per-token readers take
    neurons only; these are the core's feature readers, put in the same shape)."""
    acts = unit_activations(model, unit, [problem], sae=sae)
    start = acts.response_starts[0]
    activation = TokenMap(problem.id, acts.tokens[0], [unit], acts.values[0][:, None], start, "activation")
    if result is not None and problem.id in result.token_scores:  # kept by the attribution of this SAE
        tokens, maps = list(result.tokens[problem.id]), result.token_scores[problem.id]
    else:
        tokens, maps = token_scores(model, problem, method, target, units=SAESpace(sae))
    relevance = TokenMap(problem.id, tokens, [unit], maps[:, 0, unit.index].float()[:, None], start, "relevance",
                         f"{method} / {target}")
    return activation, relevance


def _token_view(model: LoadedModel, unit: Unit, problems: list[Problem], sae: LoadedSAE | None) -> None:
    st.subheader("On one problem, token by token")
    attribution = state.attribution(model)
    result = attribution[1] if attribution else None
    c1, c2, c3 = st.columns([2, 2, 2])
    ids = [p.id for p in problems]
    pid = c1.selectbox("Problem", ids, key="unit_token_problem")
    methods = list(METHODS)
    method = c2.selectbox("Relevance method", methods, key="unit_token_method",
                          index=methods.index(result.method) if result else methods.index("attnlrp"))
    targets = list(TARGETS)
    target = c3.selectbox("Target", targets, key="unit_token_target",
                          index=targets.index(result.target) if result else 0)
    problem = problems[ids.index(pid)]
    same = result if (result is not None and (result.method, result.target) == (method, target)
                      and result.space.kind == unit.kind and result.space.sae_id == unit.sae_id) else None

    def work(progress):
        if sae is not None:
            return _feature_maps(model, unit, problem, sae, same, method, target)
        return (set_token_activations(model, [unit], problem),
                set_token_relevance(model, [unit], problem, result=same, method=method, target=target))

    maps = background.ensure("unit_tokens", (model.fingerprint, unit.label, pid, method, target,
                                             sae.source if sae else None), work, label=f"{unit.short_label} on {pid}")
    if maps is None:
        return
    for tmap, title in zip(maps, ("Activation", f"Relevance ({method} / {target})"), strict=True):
        values = [float(v) for v in tmap.values[:, 0]]
        st.markdown(f"**{title}** · max |value| {max((abs(v) for v in values), default=0):.3g}")
        st.html(colored_tokens_html(tmap.tokens, values, start=tmap.response_start))


def _effect_view(model: LoadedModel, unit: Unit, problems: list[Problem], source: str, sae: LoadedSAE | None) -> None:
    st.subheader("Effect of zeroing or scaling it")
    state.default(state.UNIT_SCALE, 2.0)
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    factor = float(c1.number_input("Scale factor", min_value=-10.0, max_value=10.0, step=0.5, key=state.UNIT_SCALE))
    key = (model.fingerprint, unit.label, source, len(problems), factor, sae.source if sae else None)
    if c2.button("Measure answer-ranking accuracy", key="unit_effect_run", wrap=True):
        background.start("unit_effect", lambda progress: intervention_effect(
            model, [unit], problems, [Intervention("zero"), Intervention("scale", factor=factor)], sae=sae,
            progress=progress), label=f"{unit.short_label}: zero and ×{factor:g}", key=key)
    job = background.show("unit_effect", key)
    if job is not None and job.succeeded:
        rows = job.result
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        st.plotly_chart(intervention_chart(rows), key="unit_effect_chart")


def render() -> None:
    model = required_model()
    unit = _pick_unit(model)
    if unit is None:
        return
    sae = None
    if unit.kind == "sae_feature":
        attribution = state.attribution(model)
        sae = widgets.sae_of(model, unit.sae_id or "", attribution[1] if attribution else None)
        if sae is None:
            return
    _header(model, unit, sae)
    c1, c2, _ = st.columns([2, 1, 3])
    source, limit = widgets.problem_set_picker(model, state.UNIT_PROBLEM_SOURCE, state.UNIT_PROBLEM_LIMIT,
                                               default_limit=60 if widgets.is_toy(model) else 20, columns=(c1, c2))
    problems = widgets.load_problems(source, limit)
    if not problems:
        return
    profile = background.ensure("unit_profile", (model.fingerprint, unit.label, source, limit,
                                                 sae.source if sae else None),
                                lambda progress: profile_unit(model, unit, problems, top_n=8, sae=sae,
                                                              progress=progress),
                                label=f"Profiling {unit.short_label} on {len(problems)} problems")
    if profile is not None:
        _profile_view(profile)
    st.divider()
    attribution = state.attribution(model)
    score = index_panel.attribution_of(model, unit)
    index_panel.render(model, unit, sae, score if score is not None else _score(attribution[1] if attribution else None,
                                                                              unit))
    st.divider()
    _token_view(model, unit, problems, sae)
    st.divider()
    _effect_view(model, unit, problems, source, sae)
    st.divider()
    steering_panel.render(model, [unit], sae, prefix="unit", problems=problems)
