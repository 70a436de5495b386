"""The public API (yfpo_core/__init__.py): lazy names, and each function is the submodule's under one import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import yfpo_core as yf
from tests.helpers import trainer_config


def test_importing_the_package_loads_no_torch():
    code = "import sys, yfpo_core\nprint(sorted({'torch', 'transformer_lens'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_every_public_name_resolves_to_its_module_s_object():
    for name in yf.__all__:
        assert getattr(yf, name) is not None, name
    assert yf.NeuronSet is importlib.import_module("yfpo_core.units.neuron_set").NeuronSet
    assert yf.load_sae is importlib.import_module("yfpo_core.saes.sae").load_sae
    assert yf.METHODS == importlib.import_module("yfpo_core.attribution.registry").METHODS
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        yf.nothing_here  # noqa: B018


def test_the_functions_are_the_submodules_work(setup, tmp_path):
    from yfpo_core.scoring.evaluate import answer_ranking
    from yfpo_core.training.pairs import corrupted_pairs

    model, tmp = setup
    problems = yf.load_problems("toy", limit=3)
    assert [p.id for p in problems] == [f"toy/s0-{i:05d}" for i in range(3)]
    assert yf.evaluate(model, problems).rows == answer_ranking(model, problems).rows
    assert yf.make_pairs(model, problems, mode="final", seed=2) == corrupted_pairs(problems, model.prompt_format,
                                                                                    seed=2)
    run = yf.train(trainer_config(tmp, steps=2, eval_every=0, checkpoint_every=0), run_dir=tmp_path / "run",
                   model=model)
    assert run == tmp_path / "run" and [row["step"] for row in yf.read_metrics(run)] == [0, 1, 2]
