"""Run inputs: the held-out split (yfpo_core.runs.inputs)."""

from __future__ import annotations

from yfpo_core.problems import load_problems
from yfpo_core.runs.inputs import resolve_inputs
from yfpo_core.training.config import YFPOConfig


def _config(**overrides) -> YFPOConfig:
    base = dict(model="toy-arith", problems="toy", eval_problems="toy", n_train_problems=64, lam=0.0,
                neuron_set=None, eval_seed=1000)
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
