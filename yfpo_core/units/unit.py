"""Names for the units the workbench locates, inspects, ablates and trains on.

A unit is an MLP neuron, named exactly as TransformerLens names its activation
(``blocks.20.mlp.hook_post`` and an index), or an SAE feature (the SAE's id, the hook it reads, an index).
Using TransformerLens hook names as identifiers means no second naming scheme: a unit's hook name is
where to attach a hook to read or change it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

UnitKind = Literal["neuron", "sae_feature"]
NEURON_HOOK = re.compile(r"^blocks\.(\d+)\.mlp\.hook_post$")
_LABEL = re.compile(r"^(?:(?P<hook>blocks\.\d+\.[\w.]+?)|L(?P<layer>\d+))[:N/](?P<index>\d+)$")
_SAE_LABEL = re.compile(r"^sae:(?P<sae>[^:]+):(?P<index>\d+)$")


def mlp_post_hook(layer: int) -> str:
    """The TransformerLens hook name of layer ``layer``'s MLP neurons (post-activation)."""
    return f"blocks.{layer}.mlp.hook_post"


def layer_of(hook_name: str) -> int:
    match = re.match(r"^blocks\.(\d+)\.", hook_name)
    if match is None:
        raise ValueError(f"hook name {hook_name!r} does not start with blocks.<layer>.")
    return int(match.group(1))


def block_of(hook_name: str) -> int | None:
    """The block a hook point sits in (``blocks.7.mlp.hook_post`` -> 7), ``None`` outside the blocks."""
    try:
        return layer_of(hook_name)
    except ValueError:
        return None


@dataclass(frozen=True, order=True)
class Unit:
    """One neuron or SAE feature.

    Attributes:
        kind: ``"neuron"`` or ``"sae_feature"``.
        hook_name: For a neuron, its activation's hook (``blocks.L.mlp.hook_post``); for a feature, the
            hook the SAE reads and writes.
        index: Neuron index in ``d_mlp``, or feature index in ``d_sae``.
        sae_id: For features, the id of the SAE (as given to :func:`yfpo_core.saes.sae.load_sae`).
    """

    kind: UnitKind
    hook_name: str
    index: int
    sae_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("neuron", "sae_feature"):
            raise ValueError(f"unknown unit kind {self.kind!r} (use 'neuron' or 'sae_feature')")
        if self.index < 0:
            raise ValueError(f"unit index must be >= 0, got {self.index}")
        if self.kind == "sae_feature" and not self.sae_id:
            raise ValueError("an SAE feature needs its sae_id")

    @classmethod
    def neuron(cls, layer: int, index: int) -> Unit:
        return cls("neuron", mlp_post_hook(layer), int(index))

    @property
    def layer(self) -> int:
        return layer_of(self.hook_name)

    @property
    def label(self) -> str:
        """``blocks.20.mlp.hook_post:1234`` for neurons, ``sae:<sae_id>:1234`` for features."""
        if self.kind == "sae_feature":
            return f"sae:{self.sae_id}:{self.index}"
        return f"{self.hook_name}:{self.index}"

    @property
    def short_label(self) -> str:
        """``L20N1234`` for neurons, ``L15F77`` for features: for plots and tables."""
        return f"L{self.layer}{'F' if self.kind == 'sae_feature' else 'N'}{self.index}"

    @classmethod
    def parse(cls, text: str) -> Unit:
        """Read a unit from ``blocks.20.mlp.hook_post:1234``, ``L20N1234``, ``20:1234`` or ``sae:<id>:<i>``
        (features read this way get their hook from the SAE when it is loaded; here it is left empty)."""
        text = text.strip()
        sae = _SAE_LABEL.match(text)
        if sae:
            return cls("sae_feature", "", int(sae.group("index")), sae_id=sae.group("sae"))
        short = re.match(r"^L(\d+)N(\d+)$", text) or re.match(r"^(\d+):(\d+)$", text)
        if short:
            return cls.neuron(int(short.group(1)), int(short.group(2)))
        match = _LABEL.match(text)
        if match and match.group("hook"):
            return cls("neuron", match.group("hook"), int(match.group("index")))
        raise ValueError(f"cannot read a unit from {text!r}: write blocks.<layer>.mlp.hook_post:<index>, "
                         "L<layer>N<index>, <layer>:<index> or sae:<sae_id>:<index>")
