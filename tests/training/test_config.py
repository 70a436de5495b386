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
