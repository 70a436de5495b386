"""The sidebar shared by every page: which model is active (and whether it is still loading), and how many
units the current set holds.

The model loads in a background thread shared by the whole server (:func:`app.resources.model_load`);
:func:`render` starts (or joins) that load and never waits for it beyond :data:`GRACE_S` (on a fresh server,
the first run draws its page before the load starts: :func:`start_model_load`). While it loads,
the sidebar shows "Loading <model>… (N s)" in a fragment that polls once a second and reruns the whole page
when the load has finished, so the model-dependent parts appear without the user doing anything.

Pages ask for the model with :func:`active_model` (the model, or ``None`` after showing why: the load's
error or a "loading" note) or :func:`ready_model` (the model or ``None``, drawing nothing), and put
:func:`loading_note` where a model-dependent part will appear.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import streamlit as st

from app import resources, state
from yfpo_core.errors import YfpoError, user_message
from yfpo_core.models import BUILTIN_MODELS, registered_model_names

if TYPE_CHECKING:
    from yfpo_core.models import LoadedModel

CUSTOM = "other (name or folder)…"
GRACE_S = 0.25  # how long a run waits for a running load (a tiny model loads within it: no "loading" flash)
# On a fresh server, the load waits this long after the first page's script run: the browser is still drawing
# that page, and importing PyTorch and TransformerLens next to it (CPU and GIL) slows it down by seconds on a
# two-core machine. The model is ready that much later.
COLD_START_DELAY_S = 1.0


def model_choices() -> list[str]:
    names = [m.name for m in BUILTIN_MODELS if not m.name.startswith("<")]
    return [*registered_model_names(), *names, CUSTOM]


def render() -> resources.ModelLoad:
    """Draw the sidebar; returns the load of its model (for :func:`start_model_load` after the page)."""
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
        load = _start_load()
        if load.model is not None:
            state.set_active_model(load.model)
            _model_caption(load.model)
        elif load.failed:
            st.caption(f":material/error: **{load.name}** could not be loaded.")
        else:
            _loading_status()
    return load


def torch_imported() -> bool:
    """Whether this server process has imported PyTorch yet (a fresh one has not)."""
    return "torch" in sys.modules


def _start_load() -> resources.ModelLoad:
    """Start (or join) the load of the sidebar's model and keep it for this run (and its fragments).

    In a fresh server process (PyTorch not imported yet) the load only starts after the run, from
    :func:`start_model_load` (see :data:`COLD_START_DELAY_S`): importing PyTorch and TransformerLens in a
    thread competes with the page for the CPU and the GIL. Later loads start at once.
    """
    warm = torch_imported()
    load = resources.model_load(st.session_state[state.MODEL_NAME], st.session_state[state.DEVICE], start=warm)
    if warm and not load.done:
        load.wait(GRACE_S)
    if load.failed:
        resources.model_loads().forget(load)  # this run shows the error; the next one tries again
    st.session_state[state.MODEL_LOAD] = load
    return load


def start_model_load(load: resources.ModelLoad) -> None:
    """Start ``load`` (the one :func:`render` returned) if it was left for after the run: ``main.py`` calls
    this after the page, also when the page stopped early; it then begins :data:`COLD_START_DELAY_S` later.
    Touches no Streamlit state: after ``st.stop()`` or ``st.rerun()``, reading session state raises again."""
    load.start(delay_s=COLD_START_DELAY_S)


def model_load() -> resources.ModelLoad:
    """This run's load of the sidebar's model (started by :func:`render`)."""
    load = st.session_state.get(state.MODEL_LOAD)
    if load is None or (load.name, load.device) != (st.session_state[state.MODEL_NAME],
                                                    st.session_state[state.DEVICE]):
        load = _start_load()
    return load


def _model_caption(model: LoadedModel) -> None:
    cfg = model.model.cfg
    st.caption(f"**{model.name}** · {cfg.n_layers} layers × {cfg.d_mlp} MLP neurons · "
               f"fingerprint `{model.fingerprint}`")


@st.fragment(run_every=1.0)
def _loading_status() -> None:
    """'Loading <model>… (N s)' while the load runs; once it has finished, reruns the whole page."""
    load = st.session_state.get(state.MODEL_LOAD)
    if load is None or load.done:
        st.rerun()
        return
    detail = f" · {load.message}" if load.message else ""
    st.caption(f":material/hourglass_top: Loading **{load.name}**… ({load.elapsed_s:.0f} s){detail}")


@st.fragment(run_every=1.0)
def _loading_info(text: str) -> None:
    """A note in the page while the model loads, whose seconds and loader step count on (the sidebar's
    fragment reruns the page once the model is there; this one only redraws itself)."""
    load = st.session_state.get(state.MODEL_LOAD)
    if load is None or load.done:
        return
    step = f" Now: {load.message}." if load.message else ""
    st.info(text.format(name=load.name, seconds=f"{load.elapsed_s:.0f}") + step, icon=":material/hourglass_top:")
    if load.progress.total:
        st.progress(load.progress.fraction)


def ready_model() -> LoadedModel | None:
    """The active model if it is loaded, else ``None`` (loading, or failed); draws nothing, never waits."""
    return model_load().model


def loading_note(what: str = "This part") -> None:
    """A short note in place of a model-dependent part while the model loads (nothing once it is loaded;
    after a failed load, a pointer to the error)."""
    load = model_load()
    if load.model is not None:
        return
    if load.failed:
        st.caption(f"{what} needs a model: **{load.name}** could not be loaded.")
    else:
        _loading_info(f"{what} appears once the model is loaded (**{{name}}** is loading, {{seconds}} s so far)…")


def active_model(*, note: bool = True) -> LoadedModel | None:
    """The loaded active model, or ``None`` after showing why: the load's error (``st.error``) or, with
    ``note``, a short note that the model is loading (the sidebar reruns the page once it is there).
    Never waits for the load."""
    load = model_load()
    if load.failed:
        message = user_message(load.exception)
        if message is None:  # a bug: keep its traceback
            raise load.exception
        st.error(message)
        return None
    model = load.model
    if model is None:
        if note:
            _loading_info("The model **{name}** is loading ({seconds} s so far); this page appears once it is ready.")
        return None
    state.set_active_model(model)
    return model


def required_model() -> LoadedModel:
    """The loaded active model for a page that cannot draw without it: otherwise the page stops after
    :func:`active_model` has shown why (the error, or the loading note)."""
    model = active_model()
    if model is None:
        st.stop()
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
