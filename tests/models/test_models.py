"""Loading models by name (yfpo_core.models.load_model): registered models, unknown names, bad folders."""

from __future__ import annotations

import pytest

from tests.helpers import tiny_toy
from yfpo_core.errors import ModelUnavailableError
from yfpo_core.models import load_model, register_model


def test_unknown_name_and_bad_folder(tmp_path):
    with pytest.raises(ModelUnavailableError, match="not a built-in model"):
        load_model("no-such-model-anywhere")
    with pytest.raises(ModelUnavailableError, match="config.json"):
        load_model(str(tmp_path))


def test_registered_models_and_handles_pass_through():
    from yfpo_core.models.toy import build_toy_model, toy_config_kwargs

    tiny = tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32)
    register_model("tiny-for-test", lambda device: tiny)
    assert load_model("tiny-for-test") is tiny
    assert load_model(tiny) is tiny
    copy = tiny.with_model(build_toy_model(toy_config_kwargs({"n_layers": 1, "d_model": 16, "n_heads": 2,
                                                              "d_mlp": 32}), seed=1))
    assert copy.fingerprint != tiny.fingerprint and copy.hf_twin() is None
