"""The only place that names session-state keys, with their defaults and typed accessors.

Session state is per browser tab. Things that belong to one model (the neuron set, the attribution result,
the ablation report) are kept per model *fingerprint*, so switching the model in the sidebar and back
does not lose a set, and a set is never applied to weights it was not made for.

Streamlit drops the value of a widget that is not drawn in a run (e.g. on another page). The widget keys
listed in :data:`KEPT_WIDGETS` are written back on every run by :func:`init_state`, so form settings
survive page switches; those widgets take their default through :func:`default`, never ``value=``. The
write-back alone is not enough in a browser: a page whose background jobs rerun only their fragments (Unit
detail) let Streamlit drop the written-back values all the same, so :func:`init_state` also keeps a plain
copy of each (:data:`KEPT_VALUES`) and restores a value that went missing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import streamlit as st

if TYPE_CHECKING:
    from yfpo_core.attribution import AttributionResult
    from yfpo_core.jobs import BackgroundJob
    from yfpo_core.models import LoadedModel
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.runs import TrainingRun

MODEL_NAME = "model_name"
DEVICE = "device"
PROBLEM_SOURCE = "problem_source"
PROBLEM_LIMIT = "problem_limit"
MODEL_ANSWERS = "model_answers"  # {(fingerprint, problem id): {"generation": ..., "ranking": ...}}
START_PAGE = "start_page"  # url path of the page shown first (tests open a page directly with it)
FINGERPRINT = "active_fingerprint"  # (name, fingerprint) of the model the last page loaded (for the sidebar)
NEURON_SETS = "neuron_sets"  # {fingerprint: NeuronSet}
SET_UNDO = "neuron_set_undo"  # {fingerprint: NeuronSet before the last clear/replace/remove}
ATTRIBUTIONS = "attributions"  # {fingerprint: (config key, AttributionResult, settings dict)}
ABLATIONS = "ablations"  # {fingerprint: (description, AblationReport)}
JOBS = "jobs"  # {job name: BackgroundJob}
UNIT_FOCUS = "unit_focus"  # label of the unit the Unit page shows
TRAIN_RUNS = "train_runs"  # [TrainingRun] started from this session, oldest first
TRAIN_WATCH = "train_watch"  # run folder of the run the Train page shows (the newest one after a start)
BEFORE_AFTER = "before_after"  # (key, rows) of the last base-vs-checkpoint comparison
FLASH = "flash"  # [(kind, text)] shown once on the next run (messages that survive st.rerun)
SAES = "saes"  # {fingerprint: {sae_id: neuron-set SAE entry}}: the SAEs this tab loaded for each model
MODEL_LOAD = "model_load"  # the resources.ModelLoad of the sidebar's model, as of this tab's last run
PROBLEM_OPEN = "problem_open"  # id of the problem open on the Problems page (the table's selection is per table)
RUNS_PICKED = "runs_picked"  # names of the runs ticked in the Runs table (the selection is per table)
SET_IMPORT_ROUND = "set_import_round"  # bumped when the set is replaced: fresh uploader, paste and name boxes
KEPT_VALUES = "kept_widget_values"  # {kept widget key: its last value}, a copy that widget cleanup cannot drop
LOCATE_TIMINGS = "locate_timings"  # {(fingerprint, method): seconds per problem of this tab's last attribution}

# Widget keys whose values survive page switches (see the module docstring).
LOCATE_SOURCE = "locate_source"
LOCATE_LIMIT = "locate_limit"
LOCATE_UNIT_TYPE = "locate_unit_type"
LOCATE_SAE_CHOICE = "locate_sae_choice"
LOCATE_SAE_PATH = "locate_sae_path"
LOCATE_METHOD = "locate_method"
LOCATE_TARGET = "locate_target"
LOCATE_LAYERS = "locate_layers"
LOCATE_NORMALIZE = "locate_normalize"
LOCATE_STEPS = "locate_steps"
LOCATE_RANK_BY = "locate_rank_by"
LOCATE_TOP_N = "locate_top_n"
ABLATE_WHAT = "ablate_what"
ABLATE_K = "ablate_k"
ABLATE_KIND = "ablate_kind"
ABLATE_RANDOM = "ablate_random"
UNIT_SOURCE = "unit_source"
UNIT_TYPED = "unit_typed"
UNIT_PROBLEM_SOURCE = "unit_problem_source"
UNIT_PROBLEM_LIMIT = "unit_problem_limit"
UNIT_SCALE = "unit_scale"
HEATMAP_MODE = "heatmap_mode"
HEATMAP_QUESTION = "heatmap_question"
HEATMAP_NORMALIZE = "heatmap_normalize"
HEATMAP_CLUSTER = "heatmap_cluster"
PROBLEM_FILTER = "problem_filter"
SEARCH_TEXT = "search_text"
SEARCH_TOKEN = "search_token"
SEARCH_SOURCE = "search_source"
SEARCH_RANK_BY = "search_rank_by"
SEARCH_UNIT_TYPE = "search_unit_type"
SEARCH_SAE_CHOICE = "search_sae_choice"
SEARCH_SAE_PATH = "search_sae_path"
TRAIN_PREFIX = "train_cfg_"  # + YFPOConfig field name
TRAIN_OBJECTIVE = "train_objective"
TRAIN_RUN_NAME = "train_run_name"
TRAIN_RANDOM_CONTROL = "train_random_control"
RUNS_METRICS = "runs_metrics"
STEER_LIVE = "steer_live"  # {job name: steering_panel.LiveText}: the texts a running steering job has written so far
KEPT_WIDGETS: tuple[str, ...] = (
    LOCATE_SOURCE, LOCATE_LIMIT, LOCATE_UNIT_TYPE, LOCATE_SAE_CHOICE, LOCATE_SAE_PATH, LOCATE_METHOD, LOCATE_TARGET,
    LOCATE_LAYERS, LOCATE_NORMALIZE, LOCATE_STEPS, LOCATE_RANK_BY, LOCATE_TOP_N, ABLATE_WHAT, ABLATE_K, ABLATE_KIND,
    ABLATE_RANDOM, UNIT_SOURCE, UNIT_TYPED, UNIT_PROBLEM_SOURCE, UNIT_PROBLEM_LIMIT, UNIT_SCALE, HEATMAP_MODE,
    HEATMAP_QUESTION, HEATMAP_NORMALIZE, HEATMAP_CLUSTER, PROBLEM_FILTER, SEARCH_TEXT, SEARCH_TOKEN, SEARCH_SOURCE,
    SEARCH_RANK_BY, SEARCH_UNIT_TYPE, SEARCH_SAE_CHOICE, SEARCH_SAE_PATH, TRAIN_OBJECTIVE, TRAIN_RUN_NAME,
    TRAIN_RANDOM_CONTROL, RUNS_METRICS,
)


def default_model_name() -> str:
    """``YFPO_APP_MODEL``, else the tiny demo model when ``YFPO_APP_DEMO_TINY=1``, else the default model."""
    if os.environ.get("YFPO_APP_MODEL"):
        return os.environ["YFPO_APP_MODEL"]
    if os.environ.get("YFPO_APP_DEMO_TINY") == "1":
        from app.resources import DEMO_MODEL

        return DEMO_MODEL
    return "smollm2-135m-instruct"


DEFAULTS: dict[str, Any] = {
    DEVICE: "cpu",
    PROBLEM_SOURCE: None,  # None: the model's natural set (toy problems for the toy model)
    PROBLEM_LIMIT: 100,
    MODEL_ANSWERS: {},
    START_PAGE: "problems",
    FINGERPRINT: None,
    NEURON_SETS: {},
    SET_UNDO: {},
    ATTRIBUTIONS: {},
    ABLATIONS: {},
    JOBS: {},
    UNIT_FOCUS: None,
    TRAIN_RUNS: [],
    BEFORE_AFTER: None,
    FLASH: [],
    SAES: {},
    PROBLEM_OPEN: None,
    RUNS_PICKED: [],
    SET_IMPORT_ROUND: 0,
    LOCATE_TIMINGS: {},
    KEPT_VALUES: {},
}


def init_state() -> None:
    """Fill missing keys with their defaults and keep the values of :data:`KEPT_WIDGETS` (every run)."""
    if MODEL_NAME not in st.session_state:
        st.session_state[MODEL_NAME] = default_model_name()
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if isinstance(value, dict | list) else value
    kept = st.session_state[KEPT_VALUES]
    for key, value in kept.items():  # dropped by Streamlit's cleanup of widgets another page did not draw
        if key not in st.session_state:
            st.session_state[key] = value
    for key in list(st.session_state.keys()):
        if key in KEPT_WIDGETS or str(key).startswith(TRAIN_PREFIX):
            st.session_state[key] = kept[key] = st.session_state[key]


def default(key: str, value: Any) -> None:
    """Give a kept widget its first value (widgets in :data:`KEPT_WIDGETS` take no ``value=``)."""
    if key not in st.session_state:
        st.session_state[key] = value


def reset(key: str, value: Any) -> None:
    """Set a kept widget's value before it is drawn (e.g. when its options changed with the model)."""
    st.session_state[key] = value


def get(key: str) -> Any:
    return st.session_state.get(key)


# -- per-model things -----------------------------------------------------------------------------------
def set_active_model(model: LoadedModel) -> None:
    st.session_state[FINGERPRINT] = (st.session_state[MODEL_NAME], model.fingerprint)


def active_fingerprint() -> str | None:
    """The fingerprint of the sidebar's model, once a page has loaded it (``None`` before, or after a switch)."""
    active = st.session_state.get(FINGERPRINT)
    return active[1] if active and active[0] == st.session_state[MODEL_NAME] else None


def neuron_set(model: LoadedModel) -> NeuronSet:
    """This tab's current set for ``model`` (an empty one the first time)."""
    from yfpo_core.units.neuron_set import NeuronSet

    sets = st.session_state[NEURON_SETS]
    if model.fingerprint not in sets:
        sets[model.fingerprint] = NeuronSet.create([], model, name="picked-units")
    return sets[model.fingerprint]


def neuron_set_for(fingerprint: str | None) -> NeuronSet | None:
    return st.session_state[NEURON_SETS].get(fingerprint) if fingerprint else None


def set_neuron_set(model: LoadedModel, value: NeuronSet, undoable: bool = False) -> None:
    """Replace the current set; ``undoable`` keeps the previous one for :func:`undo_neuron_set`."""
    if undoable and model.fingerprint in st.session_state[NEURON_SETS]:
        st.session_state[SET_UNDO][model.fingerprint] = st.session_state[NEURON_SETS][model.fingerprint]
    st.session_state[NEURON_SETS][model.fingerprint] = value


def undo_neuron_set(model: LoadedModel) -> bool:
    previous = st.session_state[SET_UNDO].pop(model.fingerprint, None)
    if previous is None:
        return False
    st.session_state[NEURON_SETS][model.fingerprint] = previous
    return True


def can_undo(model: LoadedModel) -> bool:
    return model.fingerprint in st.session_state[SET_UNDO]


def attribution(model: LoadedModel) -> tuple[Any, AttributionResult, dict[str, Any]] | None:
    """(config key, result, settings) of the attribution this tab last ran or opened for ``model``."""
    return st.session_state[ATTRIBUTIONS].get(model.fingerprint)


def set_attribution(fingerprint: str, key: Any, result: AttributionResult, settings: dict[str, Any]) -> None:
    st.session_state[ATTRIBUTIONS][fingerprint] = (key, result, settings)


def ablation(model: LoadedModel) -> tuple[dict[str, Any], Any] | None:
    return st.session_state[ABLATIONS].get(model.fingerprint)


def set_ablation(fingerprint: str, description: dict[str, Any], report: Any) -> None:
    st.session_state[ABLATIONS][fingerprint] = (description, report)


def known_saes(model: LoadedModel) -> dict[str, dict[str, Any]]:
    """``{sae_id: {"hook_name", "d_sae", "path_or_release"}}`` of the SAEs this tab loaded for ``model``
    (the entry a neuron set records for its features' SAE)."""
    return st.session_state[SAES].setdefault(model.fingerprint, {})


def remember_sae(model: LoadedModel, sae_id: str, entry: dict[str, Any]) -> None:
    known_saes(model)[sae_id] = dict(entry)


# -- jobs, runs, messages ---------------------------------------------------------------------------------
def jobs() -> dict[str, BackgroundJob]:
    return st.session_state[JOBS]


def train_runs() -> list[TrainingRun]:
    return st.session_state[TRAIN_RUNS]


def flash(kind: str, text: str) -> None:
    """Queue a message for the next run (``kind``: success, info, warning, error)."""
    st.session_state[FLASH].append((kind, text))


def pop_flash() -> list[tuple[str, str]]:
    messages = list(st.session_state[FLASH])
    st.session_state[FLASH].clear()
    return messages
