"""Run inputs: the held-out split (yfpo_core.runs.inputs)."""

from __future__ import annotations

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
