"""Fixtures of the activation-index tests (index, dashboards, search): a tiny toy model, every text's activations
computed by brute force, and the index built over :data:`tests.helpers.INDEX_TEXTS`."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import INDEX_TEXTS, attribution_toy
from yfpo_core.analysis.activation_index import ActivationIndex, build_index
from yfpo_core.attribution.methods import activations
from yfpo_core.units.space import neuron_space


@pytest.fixture(scope="module")
def index_model():
    torch.set_num_threads(1)
    return attribution_toy()


@pytest.fixture(scope="module")
def index_brute(index_model):
    """Every text's token ids and activations ``[pos, units]``."""
    space = neuron_space(index_model.model)
    out = []
    with torch.no_grad():
        for t in INDEX_TEXTS:
            ids = index_model.encode_prompt(t.text)
            out.append((ids, activations(index_model, space, tuple(ids)).reshape(len(ids), -1).float()))
    return out


@pytest.fixture(scope="module")
def index_built(index_model, tmp_path_factory):
    folder = build_index(index_model, INDEX_TEXTS, folder=tmp_path_factory.mktemp("index") / "idx")
    return ActivationIndex(folder)
