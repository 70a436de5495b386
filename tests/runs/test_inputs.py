"""Run inputs (yfpo_core.runs.inputs): the held-out split, objects held in memory, the max_length rule."""

from __future__ import annotations

import pytest

from yfpo_core.problems import load_problems
from yfpo_core.runs.inputs import resolve_inputs
from yfpo_core.training.config import YFPOConfig


def _config(**overrides) -> YFPOConfig:
    base = dict(model="toy-arith", problems="toy", eval_problems="toy", n_train_problems=64, lam=0.0,
                neuron_set=None, eval_seed=1000, last_k=2)  # toy-arith has 2 blocks (last_k is bounded by them)
    return YFPOConfig(**{**base, **overrides})


def test_a_generated_pool_grows_until_the_template_split_leaves_what_was_asked():
    """The toy source's default 200 problems leave 87 after the template split; asking for 150 grows the pool,
    and the first held-out problems stay the same ones (the source's first problems do not depend on n)."""
    small = resolve_inputs(_config(n_eval_problems=80))
    large = resolve_inputs(_config(n_eval_problems=150, n_exact_problems=120))
    assert len(small.eval_problems) == 80
    assert len(large.eval_problems) == 150 and len(large.exact_problems) == 120
    assert [p.id for p in large.eval_problems[:80]] == [p.id for p in small.eval_problems]
    pool = {p.id for p in load_problems("toy", seed=1000, n=800)}
    assert {p.id for p in large.eval_problems} <= pool and len({p.id for p in large.eval_problems}) == 150


def test_a_set_and_saes_held_in_memory_are_taken_as_they_are(setup, tmp_path, monkeypatch):
    """The app passes its current set and the SAEs it has loaded: the run reads neither back from disk."""
    from tests.helpers import save_tiny_sae
    from tests.helpers import trainer_config as config
    from yfpo_core.saes import set_saes
    from yfpo_core.saes.sae import load_sae
    from yfpo_core.units.neuron_set import NeuronSet
    from yfpo_core.units.unit import Unit

    model, tmp = setup
    folder = save_tiny_sae(tmp_path / "tiny-sae")
    sae = load_sae(str(folder), model)
    feature = Unit("sae_feature", "blocks.1.mlp.hook_post", 2, sae_id="tiny-sae")
    in_memory = NeuronSet.create([Unit.neuron(0, 7), feature], model, scores=[0.5, 2.0],
                                 sae={"tiny-sae": sae.neuron_set_entry()})

    def no_reading(*args, **kwargs):
        raise AssertionError("read from disk although it was given")

    monkeypatch.setattr(NeuronSet, "load", no_reading)
    monkeypatch.setattr(set_saes, "load_sae", no_reading)
    cfg = config(tmp, neuron_set=str(tmp / "not-written.json"), trainable="mlp_last_k")
    inputs = resolve_inputs(cfg, neuron_set=in_memory, saes={"tiny-sae": sae})
    assert inputs.units == [Unit.neuron(0, 7), feature] and inputs.scores == [0.5, 2.0]
    assert inputs.saes == {"tiny-sae": sae} and inputs.saes["tiny-sae"] is sae
    assert inputs.probe_units == inputs.units


def test_a_max_length_above_the_context_is_refused_before_any_work(setup, monkeypatch):
    from tests.helpers import trainer_config as config
    from yfpo_core.errors import YfpoError
    import yfpo_core.problems

    _, tmp = setup
    monkeypatch.setattr(yfpo_core.problems, "load_problems", lambda *a, **k: 1 / 0)  # not reached
    with pytest.raises(YfpoError, match="max_length 129 exceeds the model's context of 128 tokens"):
        resolve_inputs(config(tmp, max_length=129))


def test_gsm_symbolic_held_out_problems_come_from_as_few_templates_as_needed(monkeypatch):
    """The default split (templates 0-19 train, the rest held out): the held-out side loads 10 templates at a
    time until it has the problems asked for, and they are the first ones of all 80 templates. Seeds 0 and 1
    ship with the package, so nothing is generated (a first run starts at once)."""
    from tests.helpers import tiny_toy
    from yfpo_core.problems import gsm_symbolic

    def no_generation(*args, **kwargs):
        raise AssertionError("the shipped variants should have answered")

    monkeypatch.setattr(gsm_symbolic, "generate_variants", no_generation)
    asked = []
    real = gsm_symbolic.load_gsm_symbolic
    monkeypatch.setattr(gsm_symbolic, "load_gsm_symbolic",
                        lambda **kw: asked.append((kw["seed"], kw.get("templates"))) or real(**kw))
    base = tiny_toy(n_layers=1, d_model=16, n_heads=2, d_mlp=32, n_ctx=512)
    config = YFPOConfig(problems="gsm-symbolic", eval_problems="gsm-symbolic", lam=0.0, neuron_set=None,
                        n_train_problems=8, n_eval_problems=32)
    inputs = resolve_inputs(config, base)
    assert asked == [(0, list(range(20))), (1, list(range(20, 30)))]
    every = load_problems("gsm-symbolic", seed=1, templates=list(range(20, 100)))
    assert [p.id for p in inputs.eval_problems] == [p.id for p in every[:32]]
    asked.clear()
    more = resolve_inputs(YFPOConfig(**{**config.__dict__, "n_eval_problems": 100}), base)
    assert [t[0] for _, t in asked[1:]] == [20, 30, 40] and len(more.eval_problems) == 100
    assert [p.id for p in more.eval_problems] == [p.id for p in every[:100]]
