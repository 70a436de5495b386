"""JSON Schemas of the workbench's file formats, shipped as package data.

A package (not a bare folder) so that ``importlib.resources.files("yfpo_core.units.schemas")`` finds the
files both in a source checkout and in an installed wheel.
"""
