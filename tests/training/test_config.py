"""The run configuration (yfpo_core.training.config): the max_length rule every front end applies."""

from __future__ import annotations

import pytest

from yfpo_core.errors import YfpoError
from yfpo_core.training.config import DEFAULT_MAX_LENGTH, YFPOConfig, sequence_length


def test_a_max_length_the_context_holds_is_used_as_it_is():
    assert sequence_length(100, 256) == 100
    assert sequence_length(256, 256) == 256
    assert sequence_length(DEFAULT_MAX_LENGTH, 8192) == 320


def test_the_default_is_lowered_to_a_shorter_context():
    assert YFPOConfig(lam=0).max_length == DEFAULT_MAX_LENGTH == 320
    assert sequence_length(320, 256) == 256  # the toy model's 256 positions
    assert sequence_length(320, 64) == 64


@pytest.mark.parametrize("asked, n_ctx", [(321, 320), (400, 256), (4096, 256), (257, 256)])
def test_any_other_length_above_the_context_is_refused_in_words(asked, n_ctx):
    with pytest.raises(YfpoError) as err:
        sequence_length(asked, n_ctx)
    assert str(err.value) == (f"invalid training config: max_length {asked} exceeds the model's context of {n_ctx} "
                              f"tokens; set max_length to {n_ctx} or less")


@pytest.mark.parametrize("change, words", [
    ({"steps": 5.5}, "steps must be a whole number, got 5.5"),
    ({"steps": "10"}, "steps must be a whole number, got '10' (str)"),
    ({"steps": None}, "steps must be set (got null)"),
    ({"lr": float("inf")}, "lr must be a finite number, got inf"),
    ({"lr": float("nan")}, "lr must be a finite number, got nan"),
    ({"lr": 1e6}, "lr must be > 0 and <= 1"),
    ({"beta": float("inf")}, "beta must be a finite number"),
    ({"grad_clip": -1}, "grad_clip must be > 0"),
    ({"grad_clip": 0}, "grad_clip must be > 0"),
    ({"n_eval_problems": -1}, "n_eval_problems must be >= 0"),
    ({"max_length": 1}, "max_length must be >= 8"),
    ({"standardize": "yes"}, "standardize must be true or false"),
    ({"model": 3}, "model must be text"),
    ({"device": "gpu"}, "device must be cpu, cuda"),
])
def test_every_config_field_is_type_and_range_checked(change, words):
    with pytest.raises(YfpoError) as info:
        YFPOConfig.from_dict({"lam": 0, **change})
    assert words in str(info.value)


def test_config_files_of_earlier_versions_still_load_and_whole_floats_are_counts():
    old = {"model": "m", "lam": 0, "steps": 12.0, "beta": 1}  # written before the new fields existed
    config_ = YFPOConfig.from_dict(old)
    assert config_.steps == 12 and isinstance(config_.steps, int) and config_.beta == 1.0
