"""Fixtures of the neuron-set tests: a fake model (no weights) and a demo set of two neurons and one SAE
feature."""

from __future__ import annotations

import pytest

from tests.helpers import DEMO_SAE, fake_model
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit


@pytest.fixture
def model():
    return fake_model()


@pytest.fixture
def demo(model) -> NeuronSet:
    units = [Unit.neuron(2, 5), Unit.neuron(0, 7), Unit("sae_feature", "blocks.2.hook_resid_post", 3, "res2")]
    return NeuronSet.create(units, model, scores=[0.5, -1.25, None], sae=DEMO_SAE, name="demo", description="d",
                            selection={"method": "attribution", "target": "answer logprob", "params": {"a": 1},
                                       "top_k": 3},
                            problems={"source": "synthetic", "n": 10, "ids": [1, "x"]})
