"""The only place that names session-state keys, with their defaults."""

from __future__ import annotations

import os

import streamlit as st

MODEL_NAME = "model_name"
DEVICE = "device"
PROBLEM_SOURCE = "problem_source"
PROBLEM_LIMIT = "problem_limit"
MODEL_ANSWERS = "model_answers"  # {(fingerprint, problem id): {"generation": ..., "ranking": ...}}

DEFAULTS = {
    MODEL_NAME: os.environ.get("YFPO_APP_MODEL", "smollm2-135m-instruct"),
    DEVICE: "cpu",
    PROBLEM_SOURCE: None,  # None: the model's natural set (toy problems for the toy model)
    PROBLEM_LIMIT: 100,
    MODEL_ANSWERS: {},
}


def init_state() -> None:
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if isinstance(value, dict) else value
