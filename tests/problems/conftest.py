"""Fixtures of the problem-source tests: a private cache for generated problems, and fake per-template
generators for the worker tests (in a module written to ``tmp_path``: the ``spawn`` worker imports them by name
from ``sys.path``)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A private, empty YFPO cache for tests that write generated problems."""
    path = tmp_path / "cache"
    monkeypatch.setenv("YFPO_CACHE_DIR", str(path))
    return path


FAKE_GENERATORS = '''
"""Fake per-template generators for the worker tests (imported by the spawned worker by name)."""
import os
import time


def variants(task):
    """Two variants per task; task 1 is slow, 2 raises, 3 kills its worker, 5 has a bad answer and a duplicate."""
    if task == 1:
        time.sleep(60)
    if task == 2:
        raise RuntimeError("template is broken")
    if task == 3:
        os._exit(3)
    if task == 5:
        return [{"question": "Same?", "solution": "No marker here 7", "gsm8k_index": 5},
                {"question": "Same?", "solution": "#### 8", "gsm8k_index": 5},
                {"question": "Same?", "solution": "#### 8", "gsm8k_index": 5}]
    return [{"question": f"Question {task} {k}?", "solution": f"{task}+{k}={task + k}\\n#### {task + k}",
             "gsm8k_index": 100 + task} for k in range(2)]


def echo(task):
    return task * 10


def broken_prepare():
    raise OSError("no templates here")
'''


@pytest.fixture
def fake_generators(tmp_path, monkeypatch):
    """The module above, importable in this process and in spawned workers (they inherit sys.path)."""
    folder = tmp_path / "fakes"
    folder.mkdir()
    (folder / "yfpo_fake_generators.py").write_text(textwrap.dedent(FAKE_GENERATORS))
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("yfpo_fake_generators", None)
    import yfpo_fake_generators

    yield yfpo_fake_generators
    sys.modules.pop("yfpo_fake_generators", None)
