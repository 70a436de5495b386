"""The fast weight layout: TransformerLens's per-forward weight copies become views, and nothing else changes."""

from __future__ import annotations

import copy

import einops
import pytest
import torch

from tests.helpers import tiny_hooked
from yfpo_core.models.layout import use_fast_weight_layout


def _forward_operands(model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each re-stored parameter and the operand TransformerLens's forward builds from it."""
    block = model.blocks[0]
    w_k = dict(block.attn.named_parameters())["_W_K"]  # the grouped-query key weights, [kv_heads, d_model, d_head]
    return {
        "W_in": (block.mlp.W_in, block.mlp.W_in.T.contiguous()),
        "W_gate": (block.mlp.W_gate, block.mlp.W_gate.T.contiguous()),
        "W_out": (block.mlp.W_out, block.mlp.W_out.T.contiguous()),
        "W_U": (model.unembed.W_U, model.unembed.W_U.T.contiguous()),
        "W_Q": (block.attn.W_Q, einops.rearrange(block.attn.W_Q, "h m d -> (h d) m")),
        "_W_K": (w_k, einops.rearrange(w_k, "h m d -> (h d) m")),
        "W_O": (block.attn.W_O, einops.rearrange(block.attn.W_O, "h d m -> m (h d)").contiguous()),
    }


def test_the_forward_no_longer_copies_the_weights():
    model = tiny_hooked("llama")
    before = {name: operand.data_ptr() == weight.data_ptr() for name, (weight, operand) in _forward_operands(model).items()}
    assert not any(before.values())  # TransformerLens copies every one of them as stored by default
    assert use_fast_weight_layout(model) == 2 * (3 + 4) + 1  # per block: 3 MLP + W_Q, _W_K, _W_V, W_O; W_U
    after = {name: operand.data_ptr() == weight.data_ptr() for name, (weight, operand) in _forward_operands(model).items()}
    assert all(after.values()), after
    assert use_fast_weight_layout(model) == 0  # idempotent


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_values_names_shapes_and_outputs_are_unchanged(family):
    plain = tiny_hooked(family)
    fast = copy.deepcopy(plain)
    use_fast_weight_layout(fast)
    plain_params, fast_params = dict(plain.named_parameters()), dict(fast.named_parameters())
    assert list(plain_params) == list(fast_params)
    for name, p in plain_params.items():
        assert fast_params[name].shape == p.shape and torch.equal(fast_params[name], p), name
    tokens = torch.randint(0, 40, (2, 12))
    assert torch.equal(plain(tokens), fast(tokens))  # the same contiguous operands: bit for bit


def test_gradients_and_an_optimizer_step_match_the_plain_layout():
    plain = tiny_hooked("llama")
    fast = copy.deepcopy(plain)
    use_fast_weight_layout(fast)
    tokens = torch.randint(0, 40, (2, 12))
    for model in (plain, fast):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model(tokens, return_type="loss").backward()
        optimizer.step()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7, msg=name)


def test_every_loaded_model_uses_it(toy):
    assert toy.model.unembed.W_U.T.is_contiguous()
    assert toy.model.blocks[0].attn.W_O.permute(2, 0, 1).is_contiguous()
