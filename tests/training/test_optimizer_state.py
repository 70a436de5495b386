"""AdamW state as flat tensors and back (yfpo_core.training.optimizer_state): a checkpoint continues exactly."""

from __future__ import annotations

import torch

from yfpo_core.training.optimizer_state import load_optimizer_state, optimizer_state


def _step(optimizer, params, grads):
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    optimizer.step()


def test_state_round_trips_and_training_continues_identically():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(2, 2))
    named = [("a", a, None), ("b", b, torch.ones(2, 2))]
    optimizer = torch.optim.AdamW([a, b], lr=0.1)
    grads = [torch.tensor([1.0, -2.0, 0.5]), torch.full((2, 2), 0.25)]
    _step(optimizer, [a, b], grads)
    tensors, meta = optimizer_state(optimizer, named)
    # after one step, exp_avg = (1 - beta1) * grad = 0.1 * grad, exp_avg_sq = (1 - beta2) * grad^2
    torch.testing.assert_close(tensors["a::exp_avg"], 0.1 * grads[0])
    torch.testing.assert_close(tensors["a::exp_avg_sq"], 0.001 * grads[0] ** 2)
    assert set(tensors) == {"a::step", "a::exp_avg", "a::exp_avg_sq", "b::step", "b::exp_avg", "b::exp_avg_sq"}
    copy_a, copy_b = (torch.nn.Parameter(p.detach().clone()) for p in (a, b))
    restored = torch.optim.AdamW([copy_a, copy_b], lr=0.1)
    load_optimizer_state(restored, [("a", copy_a, None), ("b", copy_b, None)], tensors, meta)
    _step(optimizer, [a, b], grads)
    _step(restored, [copy_a, copy_b], grads)
    assert torch.equal(a, copy_a) and torch.equal(b, copy_b)  # the second step is the same step
