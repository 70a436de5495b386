"""Search page: type a text, pick a token, get the units that fire most on it (MLP neurons, or the features of
an SAE chosen with the same picker as on Locate), ranked live (raw, or relative to each unit's corpus maximum
from the activation index of those units) or from the index (units whose top corpus contexts peak on that
token); one click opens a unit's dashboard or adds it to the set."""

from __future__ import annotations

import streamlit as st

from app import nav, state, widgets
from app.components import visible_token
from app.sidebar import required_model
from yfpo_core.analysis.activation_index import find_index
from yfpo_core.analysis.unit_search import search_index, search_live, text_tokens
from yfpo_core.errors import YfpoError, user_message
from yfpo_core.models import LoadedModel
from yfpo_core.saes.sae import LoadedSAE
from yfpo_core.units.unit import Unit

TEXT, TOKEN, SOURCE, RANK_BY = state.SEARCH_TEXT, state.SEARCH_TOKEN, state.SEARCH_SOURCE, state.SEARCH_RANK_BY
SOURCES = ("live, on this text", "index: top corpus contexts")


def _results(model: LoadedModel, rows: list[dict], sae: LoadedSAE | None) -> None:
    if not rows:
        st.info("No unit found.")
        return
    current = state.neuron_set(model)
    value = "activation" if "activation" in rows[0] else "top_contexts_on_token"
    for row in rows:
        unit = Unit.parse(row["label"])  # a feature's hook comes from its SAE's entry when it joins the set
        c1, c2, c3, c4 = st.columns([1, 4, 1, 1], vertical_alignment="center")
        c1.markdown(f"**{row['rank']}**")
        extra = f" · {row['of_max']:.0%} of its corpus max" if "of_max" in row else (
            f" · max there {row['max_on_token']:.3g}" if "max_on_token" in row else "")
        c2.markdown(f"`{widgets.unit_text(unit)}` · {value.replace('_', ' ')} **{row[value]:.3g}**{extra}")
        if c3.button("Open", key=f"search_open_{unit.label}", help="Its dashboard on Unit detail"):
            from app.views.unit import focus

            focus(unit)
            nav.switch_to("unit")
        if c4.button("Add", key=f"search_add_{unit.label}", disabled=unit in current, help="Add it to the set"):
            entry = {sae.sae_id: sae.neuron_set_entry()} if unit.kind == "sae_feature" and sae is not None else None
            widgets.add_units(model, [unit], [None], sae=entry)
            st.rerun()


def render() -> None:
    st.caption("Which neurons (or SAE features) fire most on a token? Type a text, pick a token; rank live, or "
               "from the activation index of those units built on Unit detail (or with `yfpo index build`).")
    model = required_model()
    features, sae = widgets.unit_type_picker(model, state.SEARCH_UNIT_TYPE, state.SEARCH_SAE_CHOICE,
                                             state.SEARCH_SAE_PATH)
    if features and sae is None:
        return  # the picker said why there is no SAE to search
    index = find_index(model, sae)  # the index is per model, units (neurons or this SAE) and corpus
    state.default(TEXT, "Q: A farmer has 12 cows and buys 7 more. How many cows?\nA: 12+7=19")
    text = st.text_area("Text", key=TEXT, height=90)
    if not text.strip():
        return
    tokens = text_tokens(model, text)
    state.default(TOKEN, len(tokens) - 1)
    if not 0 <= state.get(TOKEN) < len(tokens):
        state.reset(TOKEN, len(tokens) - 1)
    state.default(SOURCE, SOURCES[0])
    state.default(RANK_BY, "activation")
    units = f"the features of {sae.sae_id}" if sae is not None else "the neurons"
    c1, c2, c3 = st.columns([3, 2, 2])
    position = c1.selectbox("Token", list(range(len(tokens))), key=TOKEN,
                            format_func=lambda i: f"{i}: {visible_token(tokens[i])}")
    source = c2.radio("Rank", SOURCES, key=SOURCE, disabled=index is None,
                      help=None if index is not None else f"Build the activation index of {units} to search it")
    by = c3.radio("By", ("activation", "relative"), key=RANK_BY, disabled=index is None, horizontal=True,
                  help="relative: activation / the unit's max over the indexed corpus")
    try:
        if index is not None and source == SOURCES[1]:
            token_id = model.encode_prompt(text)[position]
            rows = search_index(index, model, token_id, k=20)
        else:
            rows = search_live(model, text, position, sae=sae, index=index, k=20,
                               rank_by=by if index is not None else "activation")
    except (ValueError, YfpoError) as exc:
        st.error(user_message(exc) or str(exc))
        return
    _results(model, rows, sae)
