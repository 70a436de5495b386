"""The attribution package's entry (yfpo_core/attribution/__init__.py): the registry costs no torch, the other
names load their module on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import yfpo_core.attribution as attribution
from yfpo_core.attribution import locate, registry, result


def test_the_method_and_target_lists_load_without_torch():
    code = ("import sys\nfrom yfpo_core.attribution import METHODS, TARGETS\n"
            "print(len(METHODS), len(TARGETS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(len(registry.METHODS)), str(len(registry.TARGETS)), "False"]


def test_lazy_names_are_the_modules_objects():
    assert attribution.attribute is locate.attribute and attribution.AttributionResult is result.AttributionResult
    assert set(attribution.__all__) >= {"METHODS", "TARGETS", "attribute", "AttributionResult", "neuron_space"}
    with pytest.raises(AttributeError, match="yfpo_core.attribution' has no attribute 'magic'"):
        attribution.magic  # noqa: B018
