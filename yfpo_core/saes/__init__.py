"""Sparse autoencoders: training (sae-lens), loading, splicing into the model, and their features as units.

:mod:`~yfpo_core.saes.config` holds the training config alone (no torch), so that ``yfpo --help`` stays light;
:mod:`~yfpo_core.saes.sae` holds the rest.
"""
