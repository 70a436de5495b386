"""The only module with Streamlit cache decorators: shared models, SAEs, problem sets, attribution results.

The cached model is shared by every session and browser tab, so nothing may modify it in place
(training works on a copy). Everything here is safe to share between sessions: models are read-only,
problem lists are copied by ``st.cache_data``, and attribution results are never mutated by the app.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from yfpo_core.models import LoadedModel, load_model, register_model
from yfpo_core.problems import Problem, load_problems

if TYPE_CHECKING:  # the attribution package imports TransformerLens: keep this module light to import
    from yfpo_core.attribution import AttributionResult
    from yfpo_core.saes import LoadedSAE

DEMO_MODEL = "tiny-demo"
DEMO_ARCHITECTURE = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 128, "n_ctx": 256}


@st.cache_resource(max_entries=2, show_spinner="Loading the model (the first load of the default model "
                                               "converts it, about a minute)…")
def get_model(name: str, device: str = "cpu") -> LoadedModel:
    return load_model(name, device=device)


def sae_stamp(ref: str) -> int:
    """When an SAE folder's weights were last written (0 for a release or a missing file): part of the cache
    key, so that an SAE trained again into the same folder is loaded afresh."""
    try:
        return (Path(ref).expanduser() / "sae_weights.safetensors").stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(max_entries=4, show_spinner="Loading the SAE…")
def _cached_sae(ref: str, fingerprint: str, device: str, stamp: int, _model: LoadedModel) -> LoadedSAE:
    from yfpo_core.saes import load_sae

    return load_sae(ref, _model, device=device)


def get_sae(ref: str, model: LoadedModel) -> LoadedSAE:
    """The SAE ``ref`` (a folder or ``<release>/<sae_id>``) checked against ``model``, shared like the model:
    read-only for the app (the core splices it in under the model's lock). Raises what
    :func:`yfpo_core.saes.load_sae` raises (an exception is never cached)."""
    return _cached_sae(ref, model.fingerprint, str(model.model.cfg.device), sae_stamp(ref), model)


@st.cache_data(max_entries=16, show_spinner="Loading problems…")
def get_problems(source: str, limit: int | None, seed: int = 0) -> list[Problem]:
    return load_problems(source, limit=limit, seed=seed)


class ResultStore:
    """The last few attribution results, keyed by (model fingerprint, settings); shared by all sessions.

    Why shared: an attribution of the default model takes minutes on a CPU, and a second tab (or the same
    tab after a page switch) asking the same question should get the answer at once. Thread-safe because
    the background jobs of several sessions finish concurrently.
    """

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, AttributionResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> AttributionResult | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: Hashable, result: AttributionResult) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@st.cache_resource
def attribution_store() -> ResultStore:
    return ResultStore()


def register_demo_model() -> None:
    """Register :data:`DEMO_MODEL`, a tiny random toy-family model, for demos and browser tests
    (``YFPO_APP_DEMO_TINY=1``): every page works on it in well under a second per action."""
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs, wrap_toy_model

    def factory(device: str) -> LoadedModel:
        return wrap_toy_model(build_toy_model(toy_config_kwargs(DEMO_ARCHITECTURE), seed=0, device=device),
                              source="demo: random weights")

    register_model(DEMO_MODEL, factory)


def configure_process() -> None:
    """Process-wide settings read from the environment: the demo model and the number of torch threads
    (``YFPO_APP_TORCH_THREADS``; the demo uses 1, since tiny models only lose time to a second thread)."""
    demo = os.environ.get("YFPO_APP_DEMO_TINY") == "1"
    if demo:
        register_demo_model()
    threads = os.environ.get("YFPO_APP_TORCH_THREADS") or ("1" if demo else "")
    if threads:
        import torch

        if torch.get_num_threads() != int(threads):
            torch.set_num_threads(int(threads))


@st.cache_data(max_entries=256, show_spinner=False)
def run_metrics(run_dir: str, mtime_ns: int) -> list[dict]:
    """A run's metrics rows; keyed by the file's modification time, so a growing file is re-read."""
    from yfpo_core.runs import read_metrics

    return read_metrics(run_dir)
