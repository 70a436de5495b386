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
