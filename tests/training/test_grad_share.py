"""The gradient share's vector arithmetic (yfpo_core.training.grad_share), by hand."""

from __future__ import annotations

import pytest
import torch

from yfpo_core.training.grad_share import aux_gradients, vector_dot, vector_norm

T = torch.tensor


def test_norm_and_dot_take_several_tensors_as_one_vector():
    a = [T([3.0, 0.0]), None, T([[4.0]])]  # one vector (3, 0, [zeros], 4): norm 5
    b = [T([1.0, 2.0]), T([7.0]), T([[0.5]])]
    assert vector_norm(a) == pytest.approx(5.0)
    assert vector_norm([None, None]) == 0.0
    assert vector_dot(a, b) == pytest.approx(3 * 1 + 0 * 2 + 4 * 0.5)  # the None part counts as zeros
    with pytest.raises(ValueError):
        vector_dot(a, b[:2])  # the two lists must cover the same parameters


def test_aux_gradients_mask_and_zero_fill():
    w = torch.nn.Parameter(T([1.0, 2.0, 3.0]))
    unused = torch.nn.Parameter(T([5.0]))
    aux = (w * T([2.0, -1.0, 4.0])).sum()  # d aux / d w = (2, -1, 4)
    grads = aux_gradients(aux, [w, unused], [T([1.0, 0.0, 1.0]), None])
    assert grads[0].tolist() == [2.0, 0.0, 4.0]  # the unit scope's mask applies
    assert grads[1].tolist() == [0.0]  # a parameter the term does not reach gets zeros, not None
    assert w.grad is None  # nothing was accumulated into the parameters
    assert aux_gradients(T(1.0), [w], [None]) is None  # a term without a graph has no gradient
