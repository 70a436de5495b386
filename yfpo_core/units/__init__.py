"""Units: the things the workbench locates and trains with, and the sets a user picks of them.

:mod:`~yfpo_core.units.unit` names a unit by its TransformerLens hook (an MLP neuron or an SAE feature),
:mod:`~yfpo_core.units.space` lays a family of units out as one flat index for attribution, and
:mod:`~yfpo_core.units.neuron_set` is the picked set with its versioned JSON document (schema in
``schemas/``). This package is kept free of heavy imports at package level so that naming a unit is cheap.
"""
