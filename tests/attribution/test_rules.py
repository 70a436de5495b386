"""The AttnLRP rules (yfpo_core.attribution.rules): each rule against hand-computed relevance, and conservation
with attention held constant."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer, HookedTransformerConfig

from tests.helpers import tiny_hooked
from yfpo_core.attribution.rules import attnlrp_rules, gated_half_rule, identity_rule, scale_gradient


def test_identity_rule_passes_relevance_through_the_activation():
    pre = torch.tensor([2.0, -1.0, 0.0], requires_grad=True)
    post = F.gelu(pre.detach())
    out = identity_rule(pre, post)
    out.backward(torch.ones(3))
    # relevance at the input x * grad equals relevance at the output act(x) * 1: GELU(2)=1.9545, GELU(-1)=-0.1587
    torch.testing.assert_close(pre.detach() * pre.grad, torch.tensor([1.9545, -0.1587, 0.0]), atol=1e-4, rtol=0)
    assert pre.grad[2] == 0.5  # at x = 0 the ratio is the activation's slope, 1/2


def test_gated_product_splits_relevance_half_and_half():
    gate = torch.tensor([2.0], requires_grad=True)
    up = torch.tensor([3.0], requires_grad=True)
    act = F.silu(gate.detach())  # SiLU(2) = 1.76159
    out = gated_half_rule(gate, up, act)
    assert math.isclose(out.item(), 1.76159 * 3, rel_tol=1e-5)
    out.backward()
    # each factor gets half of the product's relevance 5.28478
    assert math.isclose((gate * gate.grad).item(), 2.64239, rel_tol=1e-4)
    assert math.isclose((up * up.grad).item(), 2.64239, rel_tol=1e-4)


def test_scale_gradient_keeps_the_value_and_halves_the_gradient():
    x = torch.tensor([1.5, -2.0], requires_grad=True)
    y = scale_gradient(x, 0.5)
    assert torch.equal(y, x.detach())
    (3 * y).sum().backward()
    assert x.grad.tolist() == [1.5, 1.5]


def _attention_only_model() -> HookedTransformer:
    """One head, uniform attention (W_Q = W_K = 0), identity value/output/unembedding, no norms, no biases."""
    cfg = HookedTransformerConfig(n_layers=1, d_model=2, n_heads=1, d_head=2, d_vocab=2, n_ctx=4, attn_only=True,
                                  normalization_type=None, positional_embedding_type="standard", act_fn="relu",
                                  device="cpu", dtype=torch.float32)
    model = HookedTransformer(cfg, move_to_device=False)
    eye = torch.eye(2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E.copy_(eye)
        model.blocks[0].attn.W_V[0].copy_(eye)
        model.blocks[0].attn.W_O[0].copy_(eye)
        model.W_U.copy_(eye)
    return model


def _input_relevance(model: HookedTransformer, tokens: list[int], readout, rules: str | None) -> torch.Tensor:
    """Relevance ``e * de`` of each input embedding for a scalar ``readout(logits)``, under a rule set."""
    store = {}

    def leaf(x, hook):
        store["e"] = x.detach().requires_grad_(True)
        return store["e"]

    ctx = nullcontext() if rules is None else attnlrp_rules(model, constant_attention=rules == "constant")
    with ctx, model.hooks(fwd_hooks=[("hook_embed", leaf)]):
        readout(model(torch.tensor([tokens]))).backward()
    return (store["e"] * store["e"].grad).detach()[0].sum(-1)


def test_attention_value_half_rule_by_hand():
    """Tokens [0, 1]; at position 1 the head averages e0 = (1, 0) and e1 = (0, 1), so logit_0 = 0.5 comes
    only from e0 through the attention path (e1 has no component 0).

    Plain gradient: e0 gets 0.5. AttnLRP: the gradient at v is halved, so e0 gets 0.25; the other half
    goes to the pattern, whose scores q.k are 0 (W_Q = W_K = 0) and pass nothing on. Holding the pattern
    constant gives 0.5 again (conservation)."""
    model = _attention_only_model()
    for rules, expected in ((None, 0.5), ("lrp", 0.25), ("constant", 0.5)):
        relevance = _input_relevance(model, [0, 1], lambda logits: logits[0, 1, 0], rules)
        assert math.isclose(float(relevance[0]), expected, abs_tol=1e-6), rules
        assert math.isclose(float(relevance[1]), 0.0, abs_tol=1e-6), rules


def test_mlp_neuron_relevance_by_hand():
    """One layer with a 2-neuron GELU MLP and no attention effect (W_O = 0), no norms, no biases.

    Token 0 embeds to (1, 2); neuron pre-activations W_in^T e = (1*1 + 2*0, 1*0 + 2*1) = (1, 2);
    post = (GELU(1), GELU(2)) = (0.8413, 1.9545). W_out maps neuron 0 to (1, 0) and neuron 1 to (0, 3),
    W_U = I, target = logit_0 + logit_1 (via a contrast of 0 with token 1 reversed is not linear, so the
    test reads the relevance with a direct readout). Neuron relevance = post * dtarget/dpost =
    (0.8413 * 1, 1.9545 * 3) under both the plain gradient and AttnLRP (the rules act below the neuron).
    The identity rule then hands each neuron's relevance to the pre-activation unchanged, so the input
    relevance is e . (1, 2) direct path (1 + 2 = 3) plus 0.8413 + 5.8636."""
    cfg = HookedTransformerConfig(n_layers=1, d_model=2, n_heads=1, d_head=2, d_mlp=2, d_vocab=2, n_ctx=4,
                                  normalization_type=None, positional_embedding_type="standard", act_fn="gelu",
                                  device="cpu", dtype=torch.float32)
    model = HookedTransformer(cfg, move_to_device=False)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E.copy_(torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
        model.blocks[0].mlp.W_in.copy_(torch.eye(2))
        model.blocks[0].mlp.W_out.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
        model.W_U.copy_(torch.eye(2))
    readout = lambda logits: logits[0, 0].sum()  # noqa: E731  logit_0 + logit_1 at position 0
    expected_neurons = torch.tensor([0.8413, 1.9545 * 3])
    for rules in (None, "lrp"):
        store = {}

        def capture(x, hook):
            x.retain_grad()
            store["post"] = x
            return x

        ctx = nullcontext() if rules is None else attnlrp_rules(model)
        with ctx, model.hooks(fwd_hooks=[("blocks.0.mlp.hook_post", capture)]):
            readout(model(torch.tensor([[0]]))).backward()
        neurons = (store["post"] * store["post"].grad).detach()[0, 0]
        torch.testing.assert_close(neurons, expected_neurons, atol=1e-4, rtol=0)
    relevance = _input_relevance(model, [0], readout, "lrp")
    assert math.isclose(float(relevance[0]), 3 + 0.8413 + 5.8636, abs_tol=1e-3)


BIASES = {"b", "b_in", "b_out", "b_Q", "b_K", "b_V", "_b_K", "_b_V", "b_O", "b_U"}


def _bias_free(model: HookedTransformer) -> HookedTransformer:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] in BIASES:
                p.zero_()
    return model


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_relevance_is_conserved_with_constant_attention(family):
    """No biases, attention patterns held constant: the relevance reaching the input embeddings equals the
    (linear) target, through LayerNorm/RMSNorm, GELU or gated SiLU, rotary attention and grouped KV heads."""
    model = _bias_free(tiny_hooked(family, d_vocab=40))
    tokens = [3, 17, 5, 22, 9, 30, 1]
    readout = lambda logits: logits[0, -1, 7] - logits[0, -1, 11]  # noqa: E731
    with torch.no_grad():
        target = float(readout(model(torch.tensor([tokens]))))
    relevance = _input_relevance(model, tokens, readout, "constant")
    if family == "gpt2":  # learned positions carry relevance too
        store = {}

        def leaves(x, hook):
            store[hook.name] = x.detach().requires_grad_(True)
            return store[hook.name]

        with attnlrp_rules(model, constant_attention=True), \
                model.hooks(fwd_hooks=[("hook_embed", leaves), ("hook_pos_embed", leaves)]):
            readout(model(torch.tensor([tokens]))).backward()
        total = sum(float((x.detach() * x.grad).sum()) for x in store.values())
    else:
        total = float(relevance.sum())
    assert abs(total - target) <= 0.01 * abs(target), (total, target)
