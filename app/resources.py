"""The only module with Streamlit cache decorators: shared models, SAEs, problem sets, attribution results.

The cached model is shared by every session and browser tab, so nothing may modify it in place
(training works on a copy). Everything here is safe to share between sessions: models are read-only,
problem lists are copied by ``st.cache_data``, and attribution results are never mutated by the app.

Models load in the background (:class:`ModelLoad`, a :class:`~yfpo_core.jobs.BackgroundJob` like the
pages' jobs): importing PyTorch and TransformerLens and loading the weights takes seconds, and the first
page must not wait for them. This module imports neither; keep it so
(``LoadedModel`` and the heavy core modules are imported inside functions or for type checking only).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from yfpo_core.jobs import BackgroundJob
from yfpo_core.models import load_model, register_model
from yfpo_core.problems import Problem, load_problems
from yfpo_core.progress import ProgressCallback

if TYPE_CHECKING:  # these import PyTorch / TransformerLens: keep this module light to import
    from yfpo_core.attribution import AttributionResult
    from yfpo_core.models import LoadedModel
    from yfpo_core.saes.sae import LoadedSAE

DEMO_MODEL = "tiny-demo"
DEMO_ARCHITECTURE = {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_mlp": 128, "n_ctx": 256}
KEEP_MODELS = 2  # models kept in memory (the least recently asked for is dropped first)
_TORCH_THREADS: list[int] = []  # set by configure_process, applied by the loader thread once torch is imported


class ModelLoad(BackgroundJob["LoadedModel"]):
    """One model loading (or loaded) in a :class:`~yfpo_core.jobs.BackgroundJob` thread; shared by every session
    of the server.

    Like every job it never calls Streamlit and reports its progress (importing PyTorch and TransformerLens,
    then the loader's own steps); pages poll it (the sidebar once a second, and it reruns the page when the
    model is there). On top of a job it can start late (:meth:`start` with a delay, brought forward by a
    plain :meth:`start`) and reads in the words of a load: :attr:`done`, :attr:`failed`, :attr:`model`.
    """

    def __init__(self, name: str, device: str, on_done: Callable[[ModelLoad], None] | None = None) -> None:
        self.name = name
        self.device = device
        self._start_lock = threading.Lock()
        self._go = threading.Event()  # set: the work may begin (the thread waits up to its delay for this)
        self._delay_s = 0.0
        super().__init__(self._load, label=f"Loading {name}", key=(name, device), on_finished=on_done)

    def start(self, delay_s: float = 0.0) -> ModelLoad:  # type: ignore[override]
        """Start the thread; with ``delay_s``, the work begins that many seconds later (or as soon as
        someone calls ``start()`` without a delay). Calling it again only ever brings the work forward."""
        with self._start_lock:
            if delay_s <= 0:
                self._go.set()
            if not self.started:
                self._delay_s = delay_s
                super().start()
        return self

    def _load(self, progress: ProgressCallback) -> LoadedModel:
        self._go.wait(self._delay_s)
        if "transformer_lens" not in sys.modules:  # seconds on a fresh server: say so
            progress(0, 0, "importing PyTorch and TransformerLens")
        import torch
        import transformer_lens  # noqa: F401 - imported here, in the thread, not by the first page

        if _TORCH_THREADS and torch.get_num_threads() != _TORCH_THREADS[-1]:
            torch.set_num_threads(_TORCH_THREADS[-1])
        progress(0, 0, "reading the weights")
        model = load_model(self.name, device=self.device, progress=progress)
        if model.has_hf_twin:  # generation's faster twin, built now so that "Ask the model" need not wait for it
            BackgroundJob(lambda _: model.hf_twin(), label=f"building the generation twin of {self.name}").start()
        return model

    @property
    def done(self) -> bool:
        return self.finished

    @property
    def failed(self) -> bool:
        return self.finished and not self.succeeded

    @property
    def model(self) -> LoadedModel | None:
        """The model once loaded; ``None`` while loading or after a failure."""
        return self.result if self.succeeded else None

    @property
    def message(self) -> str:
        """The loader's last progress message with its count ("converting… (2/5)"), for the page."""
        p = self.progress
        return f"{p.message} ({p.done}/{p.total})" if p.message and p.total else p.message

    def __repr__(self) -> str:
        status = "failed" if self.failed else "loaded" if self.done else "loading"
        return f"ModelLoad({self.name!r}, {self.device!r}, {status}, {self.elapsed_s:.1f} s)"


class ModelLoads:
    """The process's model loads by (name, device): asking for a model starts its load once; the same load
    (and then the same model object) is handed to every session. At most ``keep`` loaded models are kept
    (the least recently asked for is dropped when another one has loaded). A failed load is forgotten by
    :meth:`forget`, so that the next request tries again (like an exception, an error is never cached)."""

    def __init__(self, keep: int = KEEP_MODELS) -> None:
        self.keep = keep
        self._loads: OrderedDict[tuple[str, str], ModelLoad] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, device: str = "cpu", start: bool = True) -> ModelLoad:
        """The load of (name, device), created if there is none; started unless ``start`` is false (the
        caller then starts it later with :meth:`ModelLoad.start`)."""
        key = (name, device)
        with self._lock:
            load = self._loads.get(key)
            if load is None:
                load = self._loads[key] = ModelLoad(name, device, on_done=self._prune)
            self._loads.move_to_end(key)
        return load.start() if start else load

    def _prune(self, _: ModelLoad) -> None:
        """Drop the least recently asked-for loaded models beyond ``keep`` (loads still running stay)."""
        with self._lock:
            loaded = [key for key, load in self._loads.items() if load.model is not None]
            for key in loaded[: max(len(loaded) - self.keep, 0)]:
                del self._loads[key]

    def forget(self, load: ModelLoad) -> None:
        with self._lock:
            if self._loads.get((load.name, load.device)) is load:
                del self._loads[(load.name, load.device)]

    def clear(self) -> None:
        with self._lock:
            self._loads.clear()


@st.cache_resource(show_spinner=False)
def model_loads() -> ModelLoads:
    """The process-wide :class:`ModelLoads` (``st.cache_resource`` keeps it across reruns and sessions)."""
    return ModelLoads()


def model_load(name: str, device: str = "cpu", start: bool = True) -> ModelLoad:
    """The load of ``name`` on ``device``, shared by all sessions; started now (unless ``start`` is false)
    if no session started it before. Never blocks."""
    return model_loads().get(name, device, start=start)


def get_model(name: str, device: str = "cpu") -> LoadedModel:
    """The model, waiting for its load (with a spinner in a script run). Raises the load's error
    (:class:`~yfpo_core.errors.ModelUnavailableError` for a model that cannot be loaded), after which the
    next call tries again. Pages use :func:`app.sidebar.active_model`, which never waits."""
    load = model_load(name, device)
    if not load.done:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is not None:
            with st.spinner(f"Loading {name}…"):
                load.wait()
    if load.wait() and load.failed:
        model_loads().forget(load)
    return load.outcome()


def sae_stamp(ref: str) -> int:
    """When an SAE folder's weights were last written (0 for a release or a missing file): part of the cache
    key, so that an SAE trained again into the same folder is loaded afresh."""
    try:
        return (Path(ref).expanduser() / "sae_weights.safetensors").stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(max_entries=4, show_spinner="Loading the SAE…")
def _cached_sae(ref: str, fingerprint: str, device: str, stamp: int, _model: LoadedModel) -> LoadedSAE:
    from yfpo_core.saes.sae import load_sae

    return load_sae(ref, _model, device=device)


def get_sae(ref: str, model: LoadedModel) -> LoadedSAE:
    """The SAE ``ref`` (a folder or ``<release>/<sae_id>``) checked against ``model``, shared like the model:
    read-only for the app (the core splices it in under the model's lock). Raises what
    :func:`yfpo_core.saes.sae.load_sae` raises (an exception is never cached)."""
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


# No animations or transitions in the page (the "reduce motion" reset). Why: while a job runs, its progress
# bar redraws every two seconds and Streamlit's status widget, progress bar and fading elements animate; in the
# browser (software rendering, on the same two cores as the job) that cost about as much CPU as the progress
# fragment's script runs, time a job's two torch threads then waited for. Everything still appears, at once.
REDUCED_MOTION_CSS = """<style>
*, *::before, *::after { animation: none !important; transition: none !important; scroll-behavior: auto !important; }
</style>"""


def configure_process() -> None:
    """Process-wide settings: no full garbage collection after every script run (below); from the
    environment, the demo model and the number of torch threads (``YFPO_APP_TORCH_THREADS``; the demo uses
    1, since tiny models only lose time to a second thread). Never imports torch itself (the model loader's
    thread applies the thread count).

    Streamlit runs ``gc.collect(2)`` after every script run (``runner.postScriptGC``), fragment runs
    included: every two seconds for each progress bar, four times a second while an answer streams. With
    PyTorch, TransformerLens and a model in memory (about 500,000 objects) one such collection takes
    0.4-1.3 s on a two-core machine, all of it holding the GIL, so a background job's Python code (its
    operator dispatch, its hooks) stood still for most of each second. Python's own generational collector
    still runs as allocations call for it."""
    from streamlit import config as streamlit_config

    if streamlit_config.get_option("runner.postScriptGC"):
        streamlit_config.set_option("runner.postScriptGC", False)
    demo = os.environ.get("YFPO_APP_DEMO_TINY") == "1"
    if demo:
        register_demo_model()
    threads = os.environ.get("YFPO_APP_TORCH_THREADS") or ("1" if demo else "")
    if threads:  # applied by the model loader's thread: importing torch here would hold up the first page
        if "torch" in sys.modules:
            import torch

            if torch.get_num_threads() != int(threads):
                torch.set_num_threads(int(threads))
        _TORCH_THREADS[:] = [int(threads)]


@st.cache_data(max_entries=256, show_spinner=False)
def run_metrics(run_dir: str, mtime_ns: int) -> list[dict]:
    """A run's metrics rows; keyed by the file's modification time, so a growing file is re-read."""
    from yfpo_core.runs import read_metrics

    return read_metrics(run_dir)
