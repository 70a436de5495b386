"""Passive OpenMP waiting: set before torch loads its OpenMP runtime, never over the user's own choice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = """
import os, sys
from yfpo_core.cpu import prefer_passive_waiting
{before}
print(prefer_passive_waiting(), os.environ.get("OMP_WAIT_POLICY"))
"""


def run(before: str = "", **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", CODE.format(before=before)], env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("before, env, expected", [
    ("", {}, "True PASSIVE"),  # a fresh process: set
    ("", {"OMP_WAIT_POLICY": "ACTIVE"}, "False ACTIVE"),  # the user's choice stays
    ("import torch", {}, "False None"),  # too late: the runtime has read its settings, nothing is changed
])
def test_passive_waiting_is_set_only_before_torch_and_never_over_the_user(before, env, expected):
    assert run(before, **env) == expected


def test_the_yfpo_command_waits_passively():
    code = ("import os\nfrom yfpo_core.cli import main\nmain(['problems', '--list-sources'])\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "PASSIVE"
