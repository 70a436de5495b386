"""One unit of a neuron set, with what the user or the selection method said about it.

Kept apart from :mod:`~yfpo_core.units.neuron_set` so that the document's checks
(:mod:`~yfpo_core.units.document`) can name it without importing the set.
"""

from __future__ import annotations

from dataclasses import dataclass

from yfpo_core.units.unit import Unit


@dataclass(frozen=True)
class SetUnit:
    """One unit of a set, with what the user or the selection method said about it.

    Attributes:
        unit: The neuron or SAE feature.
        score: The selection method's score (attribution, activation difference, ...), or ``None``.
        label: A short name a person gave it (``"carry digit"``); shown in tables and exported to
            Neuronpedia as the description.
        note: Free text (why it was picked, what was seen in the browser).
        direction: +1 or -1, the sign of the unit's effect on the target (for example the sign of the gradient
            of the gold answer's log-prob with respect to it); the YFPO neuron term counts the unit with it
            when ``sign = set``. ``None``: not recorded.
    """

    unit: Unit
    score: float | None = None
    label: str = ""
    note: str = ""
    direction: int | None = None  # +1/-1: the sign of the unit's effect on the target (YFPO's sign = set)

    def __post_init__(self) -> None:
        if self.score is not None and not isinstance(self.score, float):
            object.__setattr__(self, "score", float(self.score))
        if self.direction is not None:
            object.__setattr__(self, "direction", -1 if self.direction < 0 else 1)

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity within a set: a neuron is its hook and index, a feature its SAE and index."""
        return unit_key(self.unit)


def unit_key(unit: Unit) -> tuple[str, str, int]:
    # Features are keyed by SAE, not hook: Unit.parse("sae:<id>:<i>") leaves the hook empty.
    if unit.kind == "sae_feature":
        return ("sae_feature", unit.sae_id or "", unit.index)
    return ("neuron", unit.hook_name, unit.index)


UnitRef = Unit | SetUnit | str
"""How a unit of a set is named in the editing methods: a :class:`Unit`, a :class:`SetUnit`, or text
that :meth:`Unit.parse` reads (``blocks.20.mlp.hook_post:1234``, ``L20N1234``, ``20:1234``,
``sae:<id>:<i>``) or a feature's short label (``L15F77``)."""
