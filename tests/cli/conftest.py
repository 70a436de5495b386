"""The CLI tests run the real commands in process on a tiny toy model registered as ``tiny-cli``
(:data:`tests.helpers.TINY_CLI`), with runs written under the test's folder."""

from __future__ import annotations

import pytest

from tests.helpers import TINY_CLI, cli_model
from yfpo_core.models import register_model


@pytest.fixture(autouse=True)
def tiny(monkeypatch, tmp_path):
    model = cli_model()
    register_model(TINY_CLI, lambda device: model)
    monkeypatch.setenv("YFPO_RUNS_DIR", str(tmp_path / "runs"))
    return model
