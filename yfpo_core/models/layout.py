"""Weight memory layouts that spare TransformerLens a full copy of every weight on every forward pass.

Why: TransformerLens 3.9 matches Hugging Face's numerics by calling ``F.linear`` on *transposed, contiguous*
weights, so each forward makes them anew: ``W_gate.T.contiguous()``, ``W_in.T.contiguous()`` and
``W_out.T.contiguous()`` in the gated MLP, ``W_U.T.contiguous()`` in the unembedding (113 MB for SmolLM2),
and einops rearrangements of ``W_Q``/``W_K``/``W_V``/``W_O`` in attention. On the default model those copies
were 40 % of an answer-ranking forward on CPU (torch profiler: ``aten::copy_`` 1.74 s of 4.43 s).

:func:`use_fast_weight_layout` stores each such parameter so that the layout the forward asks for is the one
in memory: the parameter keeps its shape, its values and its name (``model.W_in`` is still
``[d_model, d_mlp]``), only its strides change, and ``.T.contiguous()`` or the rearrangement then returns a
view instead of a copy. The matmuls see the same contiguous operands as before, so outputs are bit for bit
the same; checkpoints already write ``.contiguous()`` tensors.
"""

from __future__ import annotations

import torch
from torch import nn

# (parameter name at the end of its module path, the permutation of its dims that the forward makes
# contiguous). The parameter is stored as that permutation, made contiguous, and viewed back.
_GATED_MLP = {"W_in": (1, 0), "W_gate": (1, 0), "W_out": (1, 0)}
_ATTENTION = {"W_Q": (0, 2, 1), "W_K": (0, 2, 1), "W_V": (0, 2, 1), "_W_K": (0, 2, 1), "_W_V": (0, 2, 1),
              "W_O": (2, 0, 1)}
_UNEMBED = {"W_U": (1, 0)}


def _inverse(permutation: tuple[int, ...]) -> tuple[int, ...]:
    out = [0] * len(permutation)
    for i, p in enumerate(permutation):
        out[p] = i
    return tuple(out)


def _relayout(parameter: nn.Parameter, permutation: tuple[int, ...]) -> bool:
    """Store ``parameter`` so that ``parameter.permute(permutation)`` is contiguous; ``False`` if it already was."""
    if parameter.dim() != len(permutation) or parameter.permute(permutation).is_contiguous():
        return False
    with torch.no_grad():
        parameter.data = parameter.data.permute(permutation).contiguous().permute(_inverse(permutation))
    return True


def _tables(module: nn.Module) -> dict[str, tuple[int, ...]]:
    from transformer_lens.components import GatedMLP, Unembed
    from transformer_lens.components.abstract_attention import AbstractAttention

    if isinstance(module, GatedMLP):
        return _GATED_MLP
    if isinstance(module, AbstractAttention):
        return _ATTENTION
    if isinstance(module, Unembed):
        return _UNEMBED
    return {}


def use_fast_weight_layout(model: nn.Module) -> int:
    """Re-store the weights of ``model`` (a ``HookedTransformer``) in the layouts its forward pass uses (see
    the module docstring). Idempotent; values, shapes, names and ``requires_grad`` are unchanged.

    Returns:
        How many parameters were re-stored.
    """
    changed = 0
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False))
        for name, permutation in _tables(module).items():
            if name in own:
                changed += _relayout(own[name], permutation)
    return changed
