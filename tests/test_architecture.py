"""The core never imports the UI: importing every yfpo_core module must not load streamlit."""

import pkgutil
import subprocess
import sys

import yfpo_core


def test_yfpo_core_never_imports_streamlit():
    modules = [m.name for m in pkgutil.walk_packages(yfpo_core.__path__, "yfpo_core.")
               if not m.name.endswith("__main__")]
    code = ("import sys, importlib\n"
            f"for name in {modules!r}:\n    importlib.import_module(name)\n"
            "assert 'streamlit' not in sys.modules, 'streamlit was imported'\nprint(len(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(modules) > 10
