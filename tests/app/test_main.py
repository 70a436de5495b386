"""The app's main file under a spawned worker: Streamlit runs it as ``__main__``, and a worker started with
``spawn`` (GSM-Symbolic generation) imports the parent's main file again. There it must draw and import
nothing: calling Streamlit outside a script run logs "missing ScriptRunContext", thousands of lines for one
problem set (issue 13)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

from yfpo_core.problems.timed_worker import run_with_time_limit

APP = Path(__file__).resolve().parents[2] / "app" / "main.py"


def app_imported(task: int) -> list[str]:
    """Run in the worker: which of the app's modules (and Streamlit) its start-up imported."""
    return sorted(name for name in sys.modules if name == "streamlit" or name.startswith("app."))


def test_a_worker_spawned_during_a_script_run_neither_runs_nor_imports_the_app(monkeypatch, capfd):
    main = types.ModuleType("__main__")  # what Streamlit installs while it runs the app's script
    main.__file__ = str(APP)
    monkeypatch.setitem(sys.modules, "__main__", main)
    run = run_with_time_limit(app_imported, [0], time_limit_s=120)
    assert run.results == {0: []}, run.failed
    assert "ScriptRunContext" not in capfd.readouterr().err
