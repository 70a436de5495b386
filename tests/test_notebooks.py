"""The analysis notebooks: committed without outputs, and each one runs top to bottom on the toy model.

Every notebook is executed with ``nbclient`` in a copy inside a temporary folder (so its exported files,
runs and caches never touch the repository or the user's cache), on a Jupyter kernel whose spec is
written into that folder and points at the Python running the tests (this virtualenv's, whatever
kernels the machine has installed), with ``YFPO_NOTEBOOK_MODEL=toy-arith``. A cell that raises fails the
test with the cell's traceback.

The execution tests need the trained toy weights shipped in ``yfpo_core/assets/toy-arith/`` (a random
model would run, but the notebooks' plots and claims are about a model that can do arithmetic).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TOY_WEIGHTS = ROOT / "yfpo_core" / "assets" / "toy-arith" / "config.json"
KERNEL_NAME = "yfpo-notebook-test"
CELL_TIMEOUT_S = 300  # per cell; the slowest toy cell (notebook 03's experiment) takes well under a minute


def install_kernel(prefix: Path) -> Path:
    """A kernelspec for ``sys.executable`` under ``prefix``; returns the folder to put on ``JUPYTER_PATH``."""
    from ipykernel.kernelspec import install

    install(user=False, prefix=str(prefix), kernel_name=KERNEL_NAME, display_name="yfpo test kernel")
    return prefix / "share" / "jupyter"


def notebook_env(work: Path, model: str = "toy-arith") -> dict[str, str]:
    """Environment of the kernel: the toy model, offline, runs and caches inside ``work``."""
    return {
        "YFPO_NOTEBOOK_MODEL": model,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "YFPO_RUNS_DIR": str(work / "runs"),
        "YFPO_CACHE_DIR": str(work / "cache"),
        "YFPO_NOTEBOOK_OUT": str(work / "out"),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }


def execute_notebook(source: Path, work: Path, kernel_name: str = KERNEL_NAME,
                     timeout: int = CELL_TIMEOUT_S) -> tuple[object, list[float]]:
    """Run a copy of ``source`` in ``work`` (its working directory); returns the executed notebook and each
    code cell's seconds. Raises ``nbclient.exceptions.CellExecutionError`` when a cell raises."""
    from nbclient import NotebookClient

    work.mkdir(parents=True, exist_ok=True)
    copy = work / source.name
    shutil.copyfile(source, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=False,
                            record_timing=True, resources={"metadata": {"path": str(work)}})
    client.execute()
    seconds = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        timing = cell.metadata.get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        seconds.append(_seconds_between(start, end))
    return nb, seconds


def _seconds_between(start: str | None, end: str | None) -> float:
    from datetime import datetime

    if not start or not end:
        return float("nan")
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


# -- the committed files --------------------------------------------------------------------------
def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_locate_math_neurons.ipynb", "02_sae_features.ipynb",
                                           "03_yfpo_vs_dpo.ipynb"]


def _strip_script():
    spec = importlib.util.spec_from_file_location("strip_notebooks", ROOT / "scripts" / "strip_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} carry outputs or execution counts; run "
                       "`.venv/bin/python scripts/strip_notebooks.py` before committing")
    assert not _strip_script().strip(nb), (f"{path.name} carries run-time metadata; run "
                                           "`.venv/bin/python scripts/strip_notebooks.py` before committing")
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_strip_script_removes_outputs():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=3, outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=3)])])
    nb.cells[0].metadata["execution"] = {"shell.execute_reply": "2026-01-01T00:00:00Z"}
    strip = _strip_script().strip
    assert strip(nb) is True
    assert nb.cells[0].outputs == [] and nb.cells[0].execution_count is None and not nb.cells[0].metadata
    assert strip(nb) is False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_starts_with_description_and_config(path):
    nb = nbformat.read(path, as_version=4)
    first, config = nb.cells[0], nb.cells[1]
    assert first.cell_type == "markdown" and "CPU" in first.source, "first cell: what it shows, CPU runtime"
    assert config.cell_type == "code"
    assert 'os.environ.get("YFPO_NOTEBOOK_MODEL", "smollm2-135m-instruct")' in config.source


# -- running them ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = install_kernel(tmp_path_factory.mktemp("kernelspec"))
    return path


@pytest.mark.skipif(not TOY_WEIGHTS.exists(),
                    reason=f"the trained toy weights are not there yet ({TOY_WEIGHTS.relative_to(ROOT)})")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_toy_model(path, kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(kernel), os.environ.get("JUPYTER_PATH")])))
    for key, value in notebook_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    started = time.perf_counter()
    nb, seconds = execute_notebook(path, tmp_path / "notebooks")
    total = time.perf_counter() - started
    slowest = sorted(enumerate(seconds), key=lambda x: -x[1] if x[1] == x[1] else 0)[:3]
    print(f"{path.name}: {total:.1f} s on {sys.executable}; slowest code cells: "
          + ", ".join(f"#{i} {s:.1f} s" for i, s in slowest))
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
