"""The sidebar shared by every page: which model is active, and how many units the current set holds."""

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
    state.set_active_model(model)
    with st.sidebar:
        cfg = model.model.cfg
        st.caption(f"**{model.name}** · {cfg.n_layers} layers × {cfg.d_mlp} MLP neurons · "
                   f"fingerprint `{model.fingerprint}`")
    return model


def render_footer() -> None:
    """Drawn after the page, so that it counts the units the page just added or removed."""
    fingerprint = state.active_fingerprint()
    current = state.neuron_set_for(fingerprint)
    with st.sidebar:
        st.divider()
        n = len(current) if current is not None else 0
        count = f"{n} unit{'s' if n != 1 else ''}" if fingerprint else "– (the model is not loaded yet)"
        st.markdown(f"**Current set:** {count}",
                    help="The units you picked (Locate, Unit, Neuron set pages); Train uses them for the reward. "
                         "Each model has its own set in this tab.")
        running = [r for r in state.train_runs() if r.alive]
        if running:
            plural = "s" if len(running) > 1 else ""
            st.caption(f":material/directions_run: {len(running)} training run{plural} in progress (Train page)")
