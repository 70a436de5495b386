"""The only module with Streamlit cache decorators: shared models and problem sets.

The cached model is shared by every session and browser tab, so nothing may modify it in place
(training works on a copy).
"""

from __future__ import annotations

import streamlit as st

from yfpo_core.models import LoadedModel, load_model
from yfpo_core.problems import Problem, load_problems


@st.cache_resource(max_entries=2, show_spinner="Loading the model (the first load of the default model "
                                               "converts it, about a minute)…")
def get_model(name: str, device: str = "cpu") -> LoadedModel:
    return load_model(name, device=device)


@st.cache_data(max_entries=16, show_spinner="Loading problems…")
def get_problems(source: str, limit: int | None, seed: int = 0) -> list[Problem]:
    return load_problems(source, limit=limit, seed=seed)
