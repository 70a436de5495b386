"""Shared fixtures: offline environment, a private cache, tiny random models built from a config.

Fast tests never touch the user's cache: ``YFPO_CACHE_DIR`` points at a new temporary folder per test.
Tests marked ``slow`` use the real embedded model and keep the normal cache (set ``YFPO_CACHE_DIR``
yourself to isolate them), so that its one-minute conversion happens once per machine, not per run.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from tests.helpers import TINY_TRAINER, save_tiny_hf_folders, tiny_hooked, tiny_toy, trainer_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(autouse=True)
def _private_cache(request, tmp_path_factory, monkeypatch):
    threads = torch.get_num_threads()
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("YFPO_CACHE_DIR", str(tmp_path_factory.mktemp("yfpo-cache")))
        monkeypatch.setenv("YFPO_RUNS_DIR", str(tmp_path_factory.mktemp("yfpo-runs")))  # never the user's runs
        # Tiny models run ops of microseconds, where a second thread only adds contention (up to 50x slower
        # on a busy 2-core machine); the real model in slow tests keeps both threads.
        torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["gpt2", "llama"])
def tiny_model(request):
    """A tiny random HookedTransformer of each family, without tokenizer."""
    return tiny_hooked(request.param)


@pytest.fixture(scope="module")
def toy():
    """A tiny random model of the toy family (2 layers of 64 neurons), shared by a module's tests."""
    return tiny_toy(n_layers=2, d_model=32, n_heads=4, d_mlp=64)


@pytest.fixture(scope="module")
def local_folders(tmp_path_factory):
    """Tiny random GPT-2 and Llama models saved as Hugging Face folders (``gpt2``, ``llama``), shared by a
    module's tests."""
    return save_tiny_hf_folders(tmp_path_factory.mktemp("hf-folders"))


@pytest.fixture(scope="module")
def toy_problems():
    """Four toy problems."""
    from yfpo_core.problems import load_problems

    return load_problems("toy", limit=4)


@pytest.fixture
def setup(tmp_path):
    """The trainer tests' model, registered as :data:`~tests.helpers.TINY_TRAINER`, and a five-neuron set
    in ``tmp_path / "set.json"``: ``(model, tmp_path)``."""
    from yfpo_core.models import register_model
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.units.unit import Unit

    model = trainer_model()
    register_model(TINY_TRAINER, lambda device: model)
    units = [Unit.neuron(1, i) for i in range(5)]
    NeuronSet.create(units, model, scores=[1.0] * 5).save(tmp_path / "set.json")
    return model, tmp_path
