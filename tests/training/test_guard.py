"""The NaN/Inf policy of a training step (yfpo_core.training.guard): no non-finite update is ever kept."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import trainer_config as config, trainer_for
from yfpo_core.training.trainer import NonFiniteLossError


def test_a_non_finite_update_is_rolled_back(setup):
    _, tmp = setup
    trainer = trainer_for(config(tmp))
    real_step = trainer.optimizer.step

    def overflowing_step():
        real_step()
        trainer.params[0][1].data[0].fill_(float("inf"))  # what lr=1e38 would do

    trainer.optimizer.step = overflowing_step
    before = {name: p.detach().clone() for name, p, _ in trainer.params}
    with pytest.raises(NonFiniteLossError, match="rolled back"):
        trainer.train_step(1)
    for name, p, _ in trainer.params:
        assert torch.equal(p.detach(), before[name]), name  # the model is exactly as before the step


def test_guarded_step_keeps_a_finite_step_and_undoes_a_non_finite_one():
    from yfpo_core.training.guard import guarded_step, non_finite_names

    a, b = torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.tensor([3.0]))
    params = [("a", a), ("b", b)]

    def good():
        with torch.no_grad():
            a.add_(1.0)

    assert guarded_step(good, params) == [] and a.tolist() == [2.0, 3.0]

    def overflowing():
        with torch.no_grad():
            a.mul_(0.5)
            b.fill_(float("inf"))

    assert guarded_step(overflowing, params) == ["b"]
    assert a.tolist() == [2.0, 3.0] and b.tolist() == [3.0]  # both put back, not only the bad one
    assert non_finite_names({"x": torch.tensor([1.0, float("nan")]), "n": torch.tensor([1, 2]),
                             "y": torch.tensor([-float("inf")]), "z": torch.zeros(2)}) == ["x", "y"]
