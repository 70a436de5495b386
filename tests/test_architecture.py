"""The layering of the code, checked statically (by reading the sources) so a reader can trust the tree.

* Packages of :mod:`yfpo_core` form layers (``LAYERS``, lowest first): a module imports only from its own
  package or from a lower layer, never upwards; the core never imports the UI.
* No module outside ``tests/`` is longer than ``MAX_LINES``: one module, one job.
* The files of a run folder are named only in :mod:`yfpo_core.runs`; everyone else (the CLI, the app)
  goes through :class:`~yfpo_core.runs.run_dir.RunDir`, so the app never touches a run folder's files.
* Metric names are written only in :mod:`yfpo_core.training.metric_names`; everyone else reads the constants.
* Importing every module of the core does not load streamlit (checked by really importing them).
* Tests mirror the package tree: every module of the core with logic (a function or a class) has its own
  ``tests/<package>/test_<module>.py`` (a package's ``__init__`` has ``tests/<package>/test_<package>.py``, the
  public API ``tests/test_yfpo_core.py``); the exceptions are listed with their reason in ``UNTESTED``.
* Tests use the code's public names only: no private name imported from :mod:`yfpo_core` (or from another
  test module: shared builders live in ``tests/helpers.py``), no private attribute read or patched.
"""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import yfpo_core

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "yfpo_core"

# Lowest layer first. "infra" is the shared infrastructure: the modules directly under yfpo_core/ (errors,
# progress, atomic, paths, jobs, jsonio, distributed, stats). Packages in the same layer do not import
# each other.
LAYERS: list[set[str]] = [
    {"infra"},
    {"problems"},
    {"models"},
    {"scoring", "units"},
    {"attribution", "training"},
    {"saes"},
    {"analysis"},
    {"runs"},
    {"cli"},
    {"api", "app"},  # yfpo_core/__init__.py (the public API) and the Streamlit app sit on top
]
RANK = {package: i for i, layer in enumerate(LAYERS) for package in layer}

MAX_LINES = 450
# Modules allowed over MAX_LINES (none: keep it so). A module may only leave this set.
OVERSIZE: set[str] = set()

# The files of a run folder. "config.json" also names a model folder's config (models/, saes/), so it is
# checked outside runs/ only where no model folder is handled.
RUN_FILE_NAMES = ("metrics.jsonl", "status.json", "summary.json", "units.json", "pairs.jsonl", "eval_final.json",
                  "neuron_set.json", "experiment.md", "experiment.csv", "state.json", "trainable.safetensors",
                  "optimizer.safetensors")
MODEL_FOLDER_READERS = ("yfpo_core/models/", "yfpo_core/saes/", "bench/")
# Places that still name run files themselves; the list may only shrink. The app benchmark watches a run's
# metrics file from outside, as a user would, and stays free of the core's imports (torch) to do so.
RUN_FILE_NAME_USERS: set[str] = {
    "bench/app.py",
}


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def package_of(module: str) -> str | None:
    """The layer name of a dotted module: ``app``, ``api``, a package of the core, or ``infra``."""
    parts = module.split(".")
    if parts[0] == "app":
        return "app"
    if parts[0] != "yfpo_core":
        return None
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "api"
    return parts[1] if (CORE / parts[1]).is_dir() else "infra"


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in a file, at any depth (function-level and TYPE_CHECKING imports count)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_every_core_package_has_a_layer():
    packages = {p.name for p in CORE.iterdir() if (p / "__init__.py").exists()} - {"assets"}
    assert packages - set(RANK) <= {"schemas"}, f"give these packages a layer: {sorted(packages - set(RANK))}"


def test_no_upward_imports():
    wrong = []
    for path in _sources("yfpo_core", "app"):
        own = package_of(module_of(path))
        for line, target in imported_modules(path):
            if target.split(".")[0] == "streamlit" and own != "app":
                wrong.append(f"{_rel(path)}:{line} imports streamlit")
            theirs = package_of(target)
            if theirs is None or theirs == own:
                continue
            if RANK[theirs] >= RANK[own]:
                wrong.append(f"{_rel(path)}:{line}: {own} imports {target} ({theirs} is not below it)")
    assert not wrong, "\n".join(wrong)


def test_the_layers_are_ordered_as_documented():
    assert package_of("yfpo_core.runs.run_dir") == "runs" and package_of("yfpo_core.errors") == "infra"
    assert RANK["problems"] < RANK["models"] < RANK["training"] < RANK["runs"] < RANK["cli"] < RANK["app"]
    assert RANK["scoring"] == RANK["units"]  # same layer: neither may import the other


def test_no_module_is_too_long():
    too_long = {_rel(p): n for p in _sources("yfpo_core", "app", "bench", "scripts")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert set(too_long) <= OVERSIZE, f"split these modules (over {MAX_LINES} lines): " \
                                      f"{ {k: v for k, v in too_long.items() if k not in OVERSIZE} }"
    assert set(too_long) == OVERSIZE, f"these were split: remove them from OVERSIZE: {sorted(OVERSIZE - set(too_long))}"


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of a file, docstrings excluded (prose may name a file; code must not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def run_file_names_in(path: Path, rel: str | None = None) -> list[str]:
    rel = rel or _rel(path)
    names = RUN_FILE_NAMES if rel.startswith(MODEL_FOLDER_READERS) else (*RUN_FILE_NAMES, "config.json")
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in names) + r")(?![\w])")
    return [f"{rel}:{line}: {m.group(1)}" for line, text in _code_strings(path) for m in pattern.finditer(text)]


def test_run_folder_files_are_named_only_in_runs():
    users: dict[str, list[str]] = {}
    for path in _sources("yfpo_core", "app", "bench"):
        if _rel(path).startswith("yfpo_core/runs/"):
            continue
        if found := run_file_names_in(path):
            users[_rel(path)] = found
    unexpected = {k: v for k, v in users.items() if k not in RUN_FILE_NAME_USERS}
    assert not unexpected, f"go through yfpo_core.runs instead: {unexpected}"
    gone = sorted(RUN_FILE_NAME_USERS - set(users))
    assert not gone, f"these no longer name run files: remove them from RUN_FILE_NAME_USERS: {gone}"


def test_the_run_file_check_sees_a_name_in_code_but_not_in_a_docstring(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text('"""Reads metrics.jsonl."""\nPATH = "run/summary.json"\nCFG = "config.json"\n', encoding="utf-8")
    assert run_file_names_in(source, "app/probe.py") == ["app/probe.py:2: summary.json", "app/probe.py:3: config.json"]
    assert run_file_names_in(source, "yfpo_core/models/probe.py") == ["yfpo_core/models/probe.py:2: summary.json"]


def metric_names_in(path: Path) -> list[str]:
    """Metric names written as text in a file's code (docstrings may name them). The plain words among the
    names (``step``, ``loss``, ``lr``, ``elapsed_s``) are left out: they are also ordinary keys elsewhere (a
    checkpoint's step, a background job's elapsed time)."""
    from yfpo_core.training import metric_names as M

    names = sorted((v for k, v in vars(M).items() if k.isupper() and isinstance(v, str)
                    and ("/" in v or v in (M.GRAD_NORM, M.STEP_SECONDS))), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w/])(" + "|".join(map(re.escape, names)) + r")(?![\w/])")
    return [f"{_rel(path)}:{line}: {m.group(1)}" for line, text in _code_strings(path) for m in pattern.finditer(text)]


def test_metric_names_are_written_only_in_metric_names():
    found = [hit for path in _sources("yfpo_core", "app") if path.name != "metric_names.py"
             for hit in metric_names_in(path)]
    assert not found, "use yfpo_core.training.metric_names instead:\n" + "\n".join(found)


def test_yfpo_core_never_imports_streamlit():
    modules = [m.name for m in pkgutil.walk_packages(yfpo_core.__path__, "yfpo_core.")
               if not m.name.endswith("__main__")]
    code = ("import sys, importlib\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "assert 'streamlit' not in sys.modules, 'streamlit was imported'\nprint(len(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(modules) > 10


def private_names_reached(path: Path, rel: str | None = None) -> list[str]:
    """Where a test file reaches a private name (one leading underscore; dunders are public protocol):
    ``from x import _y`` (of any module), ``import yfpo_core._x`` (or a test module's), an attribute
    ``obj._y`` of anything (the code's objects, or a library's: a test that needs one asks for a public
    way), or ``setattr(obj, "_y", ...)`` / ``monkeypatch.setattr(obj, "_y", ...)`` by name."""
    rel = rel or _rel(path)

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [a.name for a in node.names if private(a.name)]
            if node.module.split(".")[0] in ("yfpo_core", "tests"):
                names += [part for part in node.module.split(".") if private(part)]
            found += [f"{rel}:{node.lineno}: from {node.module} import {n}" for n in names]
        elif isinstance(node, ast.Import):
            found += [f"{rel}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] in ("yfpo_core", "tests") and any(map(private, a.name.split(".")))]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            found.append(f"{rel}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "setattr" \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and private(node.args[1].value.rsplit(".", 1)[-1]):
            found.append(f"{rel}:{node.lineno}: setattr {node.args[1].value}")
    return sorted(found, key=lambda hit: int(hit.split(":")[1]))


# A library's private name a test may use, each with why no public way exists.
LIBRARY_PRIVATES = {
    "tests/app/test_app_behaviour.py: ._page_hash": "AppTest.switch_page takes file pages only; the workbench's "
    "pages are callables under a url path, and switching to one the way the sidebar does needs its hash",
}


def test_tests_reach_no_private_names():
    found = [hit for path in _sources("tests") for hit in private_names_reached(path)
             if f"{hit.split(':')[0]}:{hit.split(':', 2)[2]}" not in LIBRARY_PRIVATES]
    assert not found, "go through a public name instead (make one public if it deserves it):\n" + "\n".join(found)


def test_the_private_name_check_sees_imports_attributes_and_patches(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from yfpo_core.models.smollm2 import NAME, _hidden\nimport yfpo_core._secret\n"
                     "from tests.helpers import tiny_toy\nfrom torch import _C\n"
                     "x = obj._cache + obj.__class__.__name__\nmonkeypatch.setattr(mod, '_build', 1)\n"
                     "monkeypatch.setattr(mod, 'build', 1)\nsetattr(obj, 'x._y', 2)\n", encoding="utf-8")
    assert private_names_reached(probe, "tests/probe.py") == [
        "tests/probe.py:1: from yfpo_core.models.smollm2 import _hidden", "tests/probe.py:2: import yfpo_core._secret",
        "tests/probe.py:4: from torch import _C", "tests/probe.py:5: ._cache", "tests/probe.py:6: setattr _build", "tests/probe.py:8: setattr x._y"]


# Modules of the core with no test module of their own, and why. The list may only shrink.
UNTESTED: dict[str, str] = {
    "yfpo_core/saes/config.py": "a dataclass of defaults with no logic; its fields become `yfpo sae train` flags, "
                                "checked in tests/cli/test_sae_commands.py",
}


def expected_test_module(path: Path) -> Path | None:
    """Where the tests of a core module live: ``yfpo_core/a/b.py`` -> ``tests/a/test_b.py``; a package's
    ``__init__`` -> ``tests/a/test_a.py``; the public API -> ``tests/test_yfpo_core.py``."""
    parts = path.relative_to(CORE).with_suffix("").parts
    if parts == ("__init__",):
        return ROOT / "tests" / "test_yfpo_core.py"
    if parts[-1] == "__init__":
        return ROOT / "tests" / Path(*parts[:-1]) / f"test_{parts[-2]}.py"
    return ROOT / "tests" / Path(*parts[:-1]) / f"test_{parts[-1]}.py"


def has_logic(path: Path) -> bool:
    """A module defines a function or a class (re-exports, constants and data files have nothing to test)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body)


def test_every_logic_module_has_its_own_test_module():
    missing = {_rel(p): _rel(expected_test_module(p)) for p in _sources("yfpo_core")
               if has_logic(p) and not expected_test_module(p).exists()}
    unexpected = {k: v for k, v in missing.items() if k not in UNTESTED}
    assert not unexpected, f"add these test modules (or an UNTESTED entry with its reason): {unexpected}"
    tested = sorted(set(UNTESTED) - set(missing))
    assert not tested, f"these have tests now: remove them from UNTESTED: {tested}"


def test_the_mirror_maps_modules_packages_and_the_api():
    assert expected_test_module(CORE / "runs" / "run_dir.py") == ROOT / "tests" / "runs" / "test_run_dir.py"
    assert expected_test_module(CORE / "problems" / "__init__.py") == ROOT / "tests" / "problems" / "test_problems.py"
    assert expected_test_module(CORE / "errors.py") == ROOT / "tests" / "test_errors.py"
    assert expected_test_module(CORE / "__init__.py") == ROOT / "tests" / "test_yfpo_core.py"
    assert has_logic(CORE / "runs" / "run_dir.py") and not has_logic(CORE / "training" / "metric_names.py")
