"""Where the scored units live: the hooks whose outputs hold their activations.

Scores form a matrix with one row per capture hook (for neurons: one row per layer,
``blocks.L.mlp.hook_post``) and one column per unit. SAE features (a later addition) use the same
interface, with a context manager that splices the SAE into the model while units are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

# Called with (row hook name, activation [batch, pos, width]); may return a replacement activation.
ReadFn = Callable[[str, torch.Tensor], "torch.Tensor | None"]

from yfpo_core.units.unit import Unit, layer_of, mlp_post_hook


@dataclass(frozen=True)
class UnitSpace:
    """The units an attribution scores.

    Attributes:
        kind: ``"neuron"`` or ``"sae_feature"``.
        hook_names: The capture hook of each row of the score matrix.
        width: Units per row (``d_mlp`` for neurons, ``d_sae`` for an SAE).
        sae_id: For SAE features, which SAE.
    """

    kind: str
    hook_names: tuple[str, ...]
    width: int
    sae_id: str | None = None

    @property
    def n_rows(self) -> int:
        return len(self.hook_names)

    def unit(self, row: int, index: int) -> Unit:
        if self.kind == "neuron":
            return Unit("neuron", self.hook_names[row], int(index))
        return Unit("sae_feature", self.unit_hook_names[row], int(index), sae_id=self.sae_id)

    @property
    def unit_hook_names(self) -> tuple[str, ...]:
        """The hook that names a unit (for features: the hook the SAE is attached to)."""
        return self.hook_names

    def row_of(self, unit: Unit) -> int:
        return self.unit_hook_names.index(unit.hook_name)

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(layer_of(h) for h in self.unit_hook_names)

    @contextmanager
    def reading(self, model: Any, fn: ReadFn) -> Iterator[None]:
        """While active, every forward pass calls ``fn(row_name, activations)`` for each row; a returned
        tensor replaces the activation (interventions), ``None`` keeps it. Hooks are removed on exit."""

        def hook(x: torch.Tensor, hook: Any) -> torch.Tensor:
            out = fn(hook.name, x)
            return x if out is None else out

        with model.hooks(fwd_hooks=[(name, hook) for name in self.hook_names]):
            yield

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hook_names": list(self.hook_names), "width": self.width, "sae_id": self.sae_id}


def neuron_space(model: Any, layers: Sequence[int] | None = None) -> UnitSpace:
    """All MLP neurons of ``model`` (a ``HookedTransformer``), or those of the given layers."""
    n_layers = model.cfg.n_layers
    chosen = list(range(n_layers)) if layers is None else sorted(set(int(x) for x in layers))
    bad = [x for x in chosen if not 0 <= x < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has layers 0..{n_layers - 1}")
    return UnitSpace("neuron", tuple(mlp_post_hook(x) for x in chosen), int(model.cfg.d_mlp))


def unit_problem(unit: Unit, model: Any, d_sae: int | None = None) -> str | None:
    """Why ``unit`` does not exist, or ``None`` when it does: a neuron in ``model`` (a loaded model or a
    ``HookedTransformer``), a feature among the ``d_sae`` features of its SAE.

    The one answer to "does this unit exist here?", for every page and function that takes a unit from a
    person; a neuron set's document checks the same ranges against its recorded dims
    (:func:`yfpo_core.units.document.set_problem`)."""
    if unit.kind == "sae_feature":
        if d_sae is None:
            return f"{unit.label} is an SAE feature: give its SAE"
        if not 0 <= unit.index < d_sae:
            return f"{unit.label} is out of range: SAE {unit.sae_id} has {d_sae} features (0-{d_sae - 1})"
        return None
    hooked = getattr(model, "model", model)
    cfg, name = hooked.cfg, getattr(model, "name", getattr(hooked.cfg, "model_name", "the model"))
    if not 0 <= unit.layer < cfg.n_layers or not 0 <= unit.index < cfg.d_mlp:
        return (f"{unit.label} is out of range for {name} ({cfg.n_layers} layers x {cfg.d_mlp} neurons: layers "
                f"0-{cfg.n_layers - 1}, neurons 0-{cfg.d_mlp - 1})")
    return None


def check(unit: Unit, model: Any, d_sae: int | None = None) -> Unit:
    """``unit`` when it exists (see :func:`unit_problem`); a ``ValueError`` saying why not otherwise."""
    problem = unit_problem(unit, model, d_sae)
    if problem:
        raise ValueError(problem)
    return unit
