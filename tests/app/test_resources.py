"""The app's model loads are BackgroundJobs: progress, a delayed start that can be brought forward, errors."""

from __future__ import annotations

import threading

import pytest

from app.resources import ModelLoad, ModelLoads
from tests.helpers import tiny_toy
from yfpo_core.errors import ModelUnavailableError
from yfpo_core.jobs import BackgroundJob
from yfpo_core.models import register_model


def test_a_model_load_is_a_background_job_that_reports_its_step_and_hands_over_the_model():
    model, gate = tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32), threading.Event()
    register_model("load-test-gated", lambda device: gate.wait(30) and model)
    load = ModelLoad("load-test-gated", "cpu").start()
    assert isinstance(load, BackgroundJob) and load.key == ("load-test-gated", "cpu")
    assert not load.wait(0.3) and not load.done and load.model is None
    assert load.message == "reading the weights"  # torch and TransformerLens are imported in this process
    gate.set()
    assert load.wait(30) and load.done and not load.failed
    assert load.model is model and load.outcome() is model


def test_a_delayed_start_waits_unless_brought_forward():
    model = tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32)
    register_model("load-test-delayed", lambda device: model)
    load = ModelLoad("load-test-delayed", "cpu").start(delay_s=60)
    assert load.started and not load.wait(0.3)  # the thread waits out its delay
    load.start()  # a page that needs the model now
    assert load.wait(30) and load.model is model


def test_a_failed_load_keeps_its_message_and_exception_and_is_forgotten():
    def broken(device):
        raise ModelUnavailableError("no weights for load-test-broken: put them in place")

    register_model("load-test-broken", broken)
    loads = ModelLoads()
    load = loads.get("load-test-broken")
    assert load.wait(30) and load.failed and load.model is None
    assert load.error == "no weights for load-test-broken: put them in place" and load.traceback is None
    with pytest.raises(ModelUnavailableError):
        load.outcome()
    assert loads.get("load-test-broken", start=False) is load
    loads.forget(load)
    assert loads.get("load-test-broken", start=False) is not load


def test_only_the_most_recently_asked_for_models_stay_loaded():
    """The prune runs as each load finishes (the job's on_finished): at most ``keep`` loaded models."""
    for name in ("keep-a", "keep-b", "keep-c"):
        register_model(name, lambda device: tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32))
    loads = ModelLoads(keep=2)
    for name in ("keep-a", "keep-b", "keep-c"):
        assert loads.get(name).wait(30)
    assert loads.get("keep-a", start=False).model is None  # dropped: a new, unstarted load
    assert loads.get("keep-c", start=False).model is not None


def test_script_runs_leave_the_full_garbage_collection_to_python():
    """Streamlit's gc.collect(2) after every run (``runner.postScriptGC``, fragment ticks included) costs about
    a second of GIL with a model loaded: the app's first run turns it off. (AppTest's own runner never
    collects, so the option is what can be checked here; bench/app.py measures the effect.)"""
    from streamlit import config as streamlit_config
    from streamlit.testing.v1 import AppTest

    from app import state
    from tests.app.test_app import APP

    streamlit_config.set_option("runner.postScriptGC", True)
    register_model("gc-test", lambda device: tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32))
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[state.MODEL_NAME] = "gc-test"
    at.run()
    assert not at.exception and streamlit_config.get_option("runner.postScriptGC") is False
