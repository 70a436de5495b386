"""AttnLRP propagation rules, written as TransformerLens forward hooks (Achtibat et al., ICML 2024).

AttnLRP's rules can be run as Input x Gradient with a *modified* backward pass (Arras et al. 2025,
arXiv 2502.15886): after one backward pass through the modified graph, the relevance of any activation
``a`` is ``a * a.grad``. We modify the backward pass with forward hooks that swap a tensor for one with
the same value and a different gradient, so the model code is untouched and every rule is undone when
the ``with`` block ends. The rules, and where each one is applied:

* **Linear layers (epsilon rule, epsilon -> 0)**: plain gradient; nothing to hook.
* **Normalisation (identity rule)**: LayerNorm / RMSNorm divide by a scale computed from the input.
  The scale is treated as a constant (its gradient is stopped) at every ``*.hook_scale``, so a norm
  passes relevance through like a fixed linear map.
* **Element-wise activation (identity rule)**: GELU / SiLU pass relevance through unchanged: at
  ``blocks.L.mlp.hook_post`` the gradient reaching the pre-activation is ``grad * act(x) / x``, so that
  ``x * grad_x = act(x) * grad_act``.
* **Gated MLP product (uniform rule)**: ``post = act(gate) * up`` splits its relevance half and half
  between the two factors (the identity rule is applied to ``act`` on the gate side).
* **Attention products (uniform rule)**: ``scores = q . k`` and ``z = pattern . v`` are bilinear; each
  factor gets half of the gradient: hooks on ``hook_q``, ``hook_k``, ``hook_v`` and ``hook_pattern``
  scale the gradient by 1/2 (so q and k end up with 1/4, as in LXT).
* **Softmax**: its ordinary gradient, which is AttnLRP's softmax rule in Input x Gradient form. This
  rule is not conservative: part of the relevance goes to an implicit bias term (see
  ``relevance_budget`` in :mod:`yfpo_core.attribution.attnlrp`).

``constant_attention=True`` instead holds every attention pattern constant (detached, no halving at
``v``): then, in a model without biases, relevance is conserved exactly from the target down to the
input embeddings, which is what the conservation tests check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformer_lens import HookedTransformer

ACTIVATION_SLOPE_AT_ZERO = 0.5  # GELU(x)/x and SiLU(x)/x both tend to 1/2 as x -> 0


class _ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass, gradient multiplied by ``factor`` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    return _ScaleGradient.apply(x, factor)


def identity_rule(pre: torch.Tensor, post_value: torch.Tensor) -> torch.Tensor:
    """``post_value`` (= ``act(pre)``), with AttnLRP's identity rule for an elementwise activation in the
    backward pass: the gradient to ``pre`` is ``grad * act(pre) / pre``, so relevance passes unchanged."""
    return _IdentityRule.apply(pre, post_value)


def gated_half_rule(gate: torch.Tensor, up: torch.Tensor, act_gate: torch.Tensor) -> torch.Tensor:
    """``act_gate * up`` (a gated MLP's product), with the uniform rule on the product and the identity rule
    on ``act``: each factor receives half of the product's relevance."""
    return _GatedHalfRule.apply(gate, up, act_gate)


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` with the activation's slope at zero where the denominator vanishes."""
    tiny = denominator.abs() < 1e-12
    ratio = numerator / torch.where(tiny, torch.ones_like(denominator), denominator)
    return torch.where(tiny, torch.full_like(ratio, ACTIVATION_SLOPE_AT_ZERO), ratio)


class _IdentityRule(torch.autograd.Function):
    """Output ``act(pre)`` (given), gradient to ``pre`` = ``grad * act(pre) / pre``: relevance passes unchanged."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, post_value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(_safe_ratio(post_value, pre))
        return post_value.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


class _GatedHalfRule(torch.autograd.Function):
    """``act(gate) * up`` with the uniform rule on the product and the identity rule on ``act``.

    Gradients: to ``up`` half of ``grad * act(gate)``; to ``gate`` half of ``grad * up * act(gate) / gate``.
    Each factor then holds half of the product's relevance ``post * grad``.
    """

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor, act_gate: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(up, act_gate, _safe_ratio(act_gate, gate))
        return act_gate * up

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        up, act_gate, ratio = ctx.saved_tensors
        return 0.5 * grad * up * ratio, 0.5 * grad * act_gate, None


@contextmanager
def attnlrp_rules(model: HookedTransformer, constant_attention: bool = False) -> Iterator[None]:
    """Apply the AttnLRP rules to ``model`` for the duration of the ``with`` block (forward hooks only).

    Args:
        model: A ``HookedTransformer`` of the GPT-2 family (LayerNorm, GELU MLP) or the Llama family
            (RMSNorm, gated SiLU MLP, rotary attention); folded ``LNPre`` / ``RMSPre`` norms work too.
        constant_attention: Hold attention patterns constant (for conservation checks).
    """
    cfg = model.cfg
    if cfg.act_fn not in ("gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "silu", "relu"):
        raise NotImplementedError(f"no AttnLRP identity rule for act_fn={cfg.act_fn!r}")
    stash: dict[str, torch.Tensor] = {}

    def stop_gradient(x, hook):
        return x.detach()

    def half_gradient(x, hook):
        return scale_gradient(x, 0.5)

    def remember(x, hook):
        stash[hook.name] = x
        return x

    def mlp_rule(post, hook):
        prefix = hook.name.rsplit(".", 1)[0]
        pre = stash.pop(f"{prefix}.hook_pre")
        if cfg.gated_mlp:
            up = stash.pop(f"{prefix}.hook_pre_linear")
            act_gate = model.blocks[int(prefix.split(".")[1])].mlp.act_fn(pre).detach()
            bias = (post - act_gate * up).detach()  # b_in (zero in Llama): a constant, gets no relevance
            return gated_half_rule(pre, up, act_gate) + bias
        return identity_rule(pre, post.detach())

    hooks = [(lambda name: name.endswith("hook_scale"), stop_gradient),
             (lambda name: name.endswith("mlp.hook_pre") or name.endswith("mlp.hook_pre_linear"), remember),
             (lambda name: name.endswith("mlp.hook_post"), mlp_rule)]
    if constant_attention:
        hooks.append((lambda name: name.endswith("attn.hook_pattern"), stop_gradient))
    else:
        hooks.append((lambda name: name.split(".")[-1] in ("hook_q", "hook_k", "hook_v", "hook_pattern")
                      and ".attn." in name, half_gradient))
    try:
        with model.hooks(fwd_hooks=hooks):
            yield
    finally:
        stash.clear()
