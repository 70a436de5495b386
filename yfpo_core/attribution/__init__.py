"""Locating the units that carry the math: one entry point, :func:`attribute`, for every method.

``attribute(model, problems, method, target)`` scores every unit of a :class:`UnitSpace` (by default all
MLP neurons, ``blocks.L.mlp.hook_post[i]``) on each problem, streaming with a progress callback, and
returns an :class:`AttributionResult` with the mean score, the per-problem scores and, when they fit in
memory, per-token maps for drill-down. The methods and targets, with a line on each, are listed once, in
:mod:`yfpo_core.attribution.registry` (the CLI and the app read them there); their computations are in
:mod:`yfpo_core.attribution.methods`.

Targets are in :mod:`yfpo_core.attribution.targets`. Why a ranking means anything is a separate
question, answered by the ablation test in :mod:`yfpo_core.analysis.interventions`.

The package is imported lazily: ``METHODS`` and ``TARGETS`` (from :mod:`.registry`) cost no torch; the
other names load their module on first use (:mod:`.locate`, :mod:`.result`, :mod:`yfpo_core.units.space`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from yfpo_core.attribution.registry import METHODS, TARGETS

_LAZY = {
    "attribute": "yfpo_core.attribution.locate",
    "attribute_sharded": "yfpo_core.attribution.locate",
    "default_contrast_texts": "yfpo_core.attribution.locate",
    "token_scores": "yfpo_core.attribution.locate",
    "AttributionResult": "yfpo_core.attribution.result",
    "UnitScore": "yfpo_core.attribution.result",
    "UnitSpace": "yfpo_core.units.space",
    "neuron_space": "yfpo_core.units.space",
}

__all__ = ["METHODS", "TARGETS", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'yfpo_core.attribution' has no attribute {name!r}")
