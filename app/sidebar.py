"""The sidebar shared by every page: which model is active."""

from __future__ import annotations

import streamlit as st

from app import resources, state
from yfpo_core.errors import YfpoError
from yfpo_core.models import BUILTIN_MODELS, LoadedModel, registered_model_names

CUSTOM = "other (name or folder)…"


def model_choices() -> list[str]:
    names = [m.name for m in BUILTIN_MODELS if not m.name.startswith("<")]
    return [*registered_model_names(), *names, CUSTOM]


def render() -> None:
    with st.sidebar:
        st.header("YFPO Workbench")
        choices = model_choices()
        current = st.session_state[state.MODEL_NAME]
        index = choices.index(current) if current in choices else choices.index(CUSTOM)
        picked = st.selectbox("Model", choices, index=index, key="model_picker",
                              help="The embedded default works offline; other names need the Hugging Face hub.")
        if picked == CUSTOM:
            typed = st.text_input("TransformerLens model name or local folder",
                                  value=current if current not in choices else "", placeholder="gpt2")
            if typed:
                st.session_state[state.MODEL_NAME] = typed.strip()
        else:
            st.session_state[state.MODEL_NAME] = picked


def active_model() -> LoadedModel | None:
    """The loaded active model, or ``None`` after showing why it could not be loaded."""
    name = st.session_state[state.MODEL_NAME]
    try:
        model = resources.get_model(name, st.session_state[state.DEVICE])
    except YfpoError as exc:
        st.error(str(exc))
        return None
    with st.sidebar:
        cfg = model.model.cfg
        st.caption(f"**{model.name}** · {cfg.n_layers} layers × {cfg.d_mlp} MLP neurons · "
                   f"fingerprint `{model.fingerprint}`")
    return model
