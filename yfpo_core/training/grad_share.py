"""The gradient share: how much of an update the neuron term supplies, from its gradient and DPO's.

The two gradients are two vector fields over the same trainable parameters; their norms and cosine are
taken over all parameters as one vector (``yfpo/grad_norm_aux``, ``yfpo/grad_norm_dpo``, ``yfpo/grad_cos``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def vector_norm(tensors: Sequence[torch.Tensor | None]) -> float:
    """The L2 norm of several tensors taken as one vector (None counts as zeros)."""
    present = [t.detach().float() for t in tensors if t is not None]
    return float(torch.sqrt(sum((t * t).sum() for t in present))) if present else 0.0


def vector_dot(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor | None]) -> float:
    """The inner product of two lists of tensors taken as vectors (None counts as zeros)."""
    total = 0.0
    for x, y in zip(a, b, strict=True):
        if x is not None and y is not None:
            total += float((x.detach().float() * y.detach().float()).sum())
    return total


def aux_gradients(aux: torch.Tensor, params: list[torch.nn.Parameter], masks: Sequence[torch.Tensor | None],
                  world: int = 1) -> list[torch.Tensor] | None:
    """The neuron term's gradient on every trainable parameter (zeros where it has none), averaged over
    processes (``world``) so that every replica applies the same update; ``masks``: the unit scope's
    gradient masks, aligned with ``params``."""
    if not aux.requires_grad:
        return None
    grads = torch.autograd.grad(aux, params, retain_graph=True, allow_unused=True)
    out = [torch.zeros_like(p) if g is None else g if mask is None else g * mask.to(g.device)
           for p, g, mask in zip(params, grads, masks, strict=True)]  # a unit-scope mask applies here too
    if world > 1:
        import torch.distributed as dist

        flat = torch.cat([g.flatten() for g in out])
        dist.all_reduce(flat)
        flat /= world
        out, offset = [], 0
        for p in params:
            out.append(flat[offset: offset + p.numel()].view_as(p))
            offset += p.numel()
    return out
