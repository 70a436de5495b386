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
from yfpo_core.training.config import DEFAULT_LAST_K, YFPOConfig
from yfpo_core.training.forward import FROM_TOKENS, UnitLayout
from yfpo_core.units.space import unit_problem
from yfpo_core.units.unit import Unit


LAST_K_SCOPES = ("mlp_last_k", "units+mlp_last_k")  # the scopes that read last_k


def scope_problem(config: YFPOConfig, n_layers: int) -> str | None:
    """What is wrong with ``config``'s trainable scope for a model of ``n_layers`` blocks, or ``None``.

    ``last_k`` counts the final MLP blocks that train, so it cannot exceed the model's blocks (a larger value
    would silently train them all). The default (:data:`DEFAULT_LAST_K`) is the exception: it reads "the last
    four blocks, or all of a smaller model", so that ``yfpo train --model toy-arith`` (2 blocks) runs as it is.
    The config alone cannot check it: it does not know the model."""
    if config.trainable in LAST_K_SCOPES and config.last_k > n_layers and config.last_k != DEFAULT_LAST_K:
        return (f"last_k {config.last_k} exceeds the model's {n_layers} blocks; set last_k to at most {n_layers} "
                f"(last_k = {n_layers} trains every MLP block), or use trainable=all")
    return None


def check_scope(config: YFPOConfig, n_layers: int) -> None:
    """Raise :class:`YfpoError` with :func:`scope_problem`'s words when the scope does not fit the model."""
    problem = scope_problem(config, n_layers)
    if problem:
        raise YfpoError(f"invalid training config: {problem}")


def lowest_trainable_layer(config: YFPOConfig, units: Sequence[Unit], n_layers: int) -> int:
    """The lowest block whose parameters :func:`trainable_parameters` trains for ``units`` (0 when the
    embeddings train), read from the config without building anything (the Train form asks before a run)."""
    if config.trainable == "all":
        return 0
    layers = [max(0, n_layers - config.last_k)] if config.trainable in LAST_K_SCOPES else []
    if config.trainable in ("units", "units+mlp_last_k"):
        layers += [u.layer for u in units if u.kind == "neuron"]
    return min(layers) if layers else n_layers


def units_out_of_reach(config: YFPOConfig, units: Sequence[Unit], n_layers: int) -> list[Unit]:
    """The units below the lowest trainable block: training cannot change their activations, so the neuron
    term cannot move them (they show a change of exactly 0 before/after)."""
    lowest = lowest_trainable_layer(config, units, n_layers)
    return [u for u in units if u.layer < lowest]


def trainable_parameters(model: torch.nn.Module, config: YFPOConfig, layout: UnitLayout
                         ) -> tuple[list[tuple[str, torch.nn.Parameter, torch.Tensor | None]], int]:
    """Set ``requires_grad`` for the configured scope; return (name, param, gradient mask or None) and the
    lowest block whose parameters train (everything below it is the frozen prefix).

    The ``units`` scope trains the selected neurons' own weights (their rows of ``W_in``/``W_gate``/``b_in``
    and ``W_out``); an SAE feature has no weights of its own in the model, so a set with features needs
    ``mlp_last_k`` or ``all`` (in ``units+mlp_last_k`` the features change through the last blocks only)."""
    n_layers = model.cfg.n_layers
    check_scope(config, n_layers)
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
