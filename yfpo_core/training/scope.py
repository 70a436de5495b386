"""What a run trains: the trainable scope of the model, and frozen private copies of the SAEs it reads.

The scope decides the lowest trainable block, below which everything is a frozen prefix computed once
(:data:`~yfpo_core.training.forward.FROM_TOKENS` when the embeddings train and nothing can be cached).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from yfpo_core.errors import YfpoError
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.forward import FROM_TOKENS, UnitLayout
from yfpo_core.units.space import unit_problem
from yfpo_core.units.unit import Unit


def trainable_parameters(model: torch.nn.Module, config: YFPOConfig, layout: UnitLayout
                         ) -> tuple[list[tuple[str, torch.nn.Parameter, torch.Tensor | None]], int]:
    """Set ``requires_grad`` for the configured scope; return (name, param, gradient mask or None) and the
    lowest block whose parameters train (everything below it is the frozen prefix).

    The ``units`` scope trains the selected neurons' own weights (their rows of ``W_in``/``W_gate``/``b_in``
    and ``W_out``); an SAE feature has no weights of its own in the model, so a set with features needs
    ``mlp_last_k`` or ``all`` (in ``units+mlp_last_k`` the features change through the last blocks only)."""
    n_layers = model.cfg.n_layers
    if config.trainable == "units" and layout.sae_ids:
        features = [u.label for u in layout.units if u.kind == "sae_feature"]
        raise YfpoError(f"trainable=units trains only the selected neurons' own weights, and SAE features have "
                        f"none in the model ({len(features)} in the set: {', '.join(features[:3])}"
                        f"{', ...' if len(features) > 3 else ''}): use trainable=mlp_last_k (with last_k reaching "
                        "the features' layer) or trainable=all for a set with SAE features")
    for p in model.parameters():
        p.requires_grad_(False)
    chosen: dict[str, tuple[torch.nn.Parameter, torch.Tensor | None]] = {}
    named = dict(model.named_parameters())
    if config.trainable == "all":
        for name, p in named.items():
            chosen[name] = (p, None)
    if config.trainable in ("mlp_last_k", "units+mlp_last_k"):
        for layer in range(max(0, n_layers - config.last_k), n_layers):
            for name, p in named.items():
                if name.startswith(f"blocks.{layer}.mlp."):
                    chosen[name] = (p, None)
    if config.trainable in ("units", "units+mlp_last_k"):
        for hook, index in layout.neuron_index_by_hook().items():
            prefix = hook.rsplit(".", 1)[0]  # blocks.L.mlp
            for suffix, axis in (("W_in", -1), ("W_gate", -1), ("b_in", -1), ("W_out", 0)):
                name = f"{prefix}.{suffix}"
                if name not in named or (name in chosen and chosen[name][1] is None):
                    continue
                p = named[name]
                mask = chosen[name][1] if name in chosen else torch.zeros_like(p)
                if axis == 0:
                    mask[index] = 1.0
                else:
                    mask[..., index] = 1.0
                chosen[name] = (p, mask)
    if not chosen:
        raise YfpoError(f"trainable={config.trainable} selects no parameters")
    out = []
    for name, (p, mask) in chosen.items():
        p.requires_grad_(True)
        if mask is not None:
            p.register_hook(lambda g, mask=mask: g * mask.to(g.device))
        out.append((name, p, mask))
    if any(not name.startswith(("blocks.", "ln_final.", "unembed.")) for name, _, _ in out):
        return out, FROM_TOKENS  # embeddings train: nothing below can be cached
    layers = [int(name.split(".")[1]) for name, _, _ in out if name.startswith("blocks.")]
    return out, min(layers) if layers else n_layers


def frozen_saes(units: Sequence[Unit], saes: Mapping[str, Any]) -> dict[str, torch.nn.Module]:
    """Private, frozen copies (``requires_grad`` False, eval mode) of the sae-lens SAEs of ``units``'s
    features, from ``saes`` (sae_id -> :class:`yfpo_core.saes.sae.LoadedSAE`).

    Raises:
        YfpoError: A feature's SAE is missing, or it reads another hook than the feature's.
    """
    out: dict[str, torch.nn.Module] = {}
    for unit in units:
        if unit.kind != "sae_feature":
            continue
        loaded = saes.get(unit.sae_id or "")
        if loaded is None:
            given = ", ".join(map(repr, saes)) or "none"
            raise YfpoError(f"{unit.label} is a feature of SAE {unit.sae_id!r}, which the trainer was not given "
                            f"(given: {given}): describe it in the neuron set's \"sae\" section with its "
                            "path_or_release, or pass saes={sae_id: load_sae(...)}")
        if unit.hook_name != loaded.hook_name:
            raise YfpoError(f"{unit.label} is recorded at hook {unit.hook_name or '(none)'!r}, but SAE "
                            f"{unit.sae_id!r} ({loaded.source}) reads {loaded.hook_name!r}: fix the set's \"sae\" "
                            "section or point it at the right SAE")
        if unit.sae_id not in out:
            with torch.no_grad():
                sae = copy.deepcopy(loaded.sae)
            sae.eval()
            for p in sae.parameters():
                p.requires_grad_(False)
            out[unit.sae_id] = sae
        problem = unit_problem(unit, None, int(out[unit.sae_id].cfg.d_sae))
        if problem:
            raise YfpoError(problem)
    return out
