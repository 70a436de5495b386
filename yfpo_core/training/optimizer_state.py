"""AdamW state as flat tensors plus plain metadata (safetensors-friendly), and back: a checkpoint's optimizer (and
its trainable parameters)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

NamedParams = Sequence[tuple[str, torch.nn.Parameter, Any]]  # (name, parameter, gradient mask or None)


def optimizer_state(optimizer: torch.optim.Optimizer, params: NamedParams
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """AdamW state as flat tensors (safetensors-friendly) plus plain metadata."""
    tensors, meta = {}, {}
    names = {id(p): name for name, p, _ in params}
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            name = names[id(p)]
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"{name}::{key}"] = value.detach().cpu().clone().reshape(value.shape)
                else:
                    meta[f"{name}::{key}"] = value
    return tensors, meta


def load_optimizer_state(optimizer: torch.optim.Optimizer, params: NamedParams, tensors: dict[str, torch.Tensor],
                         meta: dict[str, Any]) -> None:
    """Put :func:`optimizer_state`'s tensors and metadata back into ``optimizer``, parameter by name."""
    by_name = {name: p for name, p, _ in params}
    for name, p in by_name.items():
        state = {}
        for key, value in tensors.items():
            pname, _, field_name = key.partition("::")
            if pname == name:
                state[field_name] = value.to(p.device)
        for key, value in meta.items():
            pname, _, field_name = key.partition("::")
            if pname == name:
                state[field_name] = value
        if state:
            if "step" in state and not torch.is_tensor(state["step"]):
                state["step"] = torch.tensor(float(state["step"]))
            optimizer.state[p] = state


def load_trainable(params: NamedParams, trainable: dict[str, torch.Tensor]) -> None:
    """Copy a checkpoint's trainable parameters into ``params``; refuse a checkpoint that lacks some of them."""
    from yfpo_core.errors import YfpoError

    by_name = {name: p for name, p, _ in params}
    missing = set(by_name) - set(trainable)
    if missing:
        raise YfpoError(f"the checkpoint lacks trainable parameters {sorted(missing)[:3]}: was it written "
                        "with another trainable scope?")
    with torch.no_grad():
        for name, p in by_name.items():
            p.copy_(trainable[name].to(p.device))
