"""LoadedModel's helpers (yfpo_core.models.base)."""

from __future__ import annotations

import torch

from tests.helpers import tiny_hooked
from yfpo_core.models.base import weights_fingerprint


def test_fingerprint_sees_a_single_changed_weight():
    model = tiny_hooked("llama")
    before = weights_fingerprint(model)
    with torch.no_grad():
        model.blocks[1].mlp.W_out[3, 4] += 1e-3
    assert weights_fingerprint(model) != before
