"""Reference work per batch, when the run reads no units: computed when a step first needs it, and still the
base model's after the policy has moved."""

from __future__ import annotations

import torch

from tests.helpers import trainer_config as config
from yfpo_core.runs import resolve_inputs
from yfpo_core.training.reference import PerBatch
from yfpo_core.training.shared_cache import clear_shared
from yfpo_core.training.trainer import YFPOTrainer


def test_per_batch_values_are_computed_once_on_first_access():
    calls = []
    values = PerBatch(3, lambda i: calls.append(i) or i * 10)
    assert values.computed == 0 and len(values) == 3
    assert values[1] == 10 and values[-1] == 20 and values[1] == 10
    assert calls == [1, 2] and values.computed == 2
    assert list(values) == [0, 10, 20] and calls == [1, 2, 0]


def test_a_run_without_units_takes_each_reference_from_the_base_model_when_a_step_first_needs_it(setup):
    _, tmp = setup
    clear_shared()
    cfg = config(tmp, lam=0.0, neuron_set=None, trainable="mlp_last_k", last_k=1, n_train_problems=16,
                 batch_pairs=2, lr=5e-2)
    inputs = resolve_inputs(cfg)
    lazy = YFPOTrainer(cfg, inputs.base, inputs.pairs, inputs.eval_problems)
    assert isinstance(lazy.ref_logps, PerBatch) and lazy.ref_logps.computed == 0  # nothing before step 1
    used = {lazy.batch_index(1), lazy.batch_index(2)}
    lazy.train_step(1)
    lazy.train_step(2)
    assert lazy.ref_logps.computed == len(used)
    later = next(i for i in range(len(lazy.batches)) if i not in used)

    clear_shared()  # a fresh trainer computes its own, from a policy that has not moved
    fresh = YFPOTrainer(cfg, inputs.base, inputs.pairs, inputs.eval_problems)
    expected = fresh.policy_pass(later)[0].detach()
    assert torch.equal(lazy.ref_logps[later], expected)
    # The policy has moved, so a reference taken from it would differ: the test can tell.
    assert not torch.allclose(lazy.policy_pass(later)[0].detach(), expected)
    # And the lazy reference did not leave the base weights in the policy.
    assert not torch.allclose(lazy.policy_pass(later)[0].detach(), fresh.policy_pass(later)[0].detach())
