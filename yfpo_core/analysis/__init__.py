"""Analysis of located units: interventions and the ablation test, a unit's profile, a set's activations.

These answer "does this unit matter, and what does it do?" after attribution has ranked the units:
:mod:`~yfpo_core.analysis.interventions` (zero, mean or scale units; ablation against random sets),
:mod:`~yfpo_core.analysis.inspection` (one unit's profile) and :mod:`~yfpo_core.analysis.set_activations`
(a set's activations and relevance, token by token).
"""
