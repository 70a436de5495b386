"""How PyTorch's CPU threads wait between operations: passively, so that other work on the machine cannot
stall them.

PyTorch runs each CPU operation on an OpenMP team of threads (one per core by default), and by default
OpenMP threads *spin* at the end of every operation, waiting for the slowest of the team. When anything
else needs a core (the app's own server and browser, a second job, another user's process), one thread
of the team is descheduled and the others burn their time slices spinning for it: every small operation
then costs a scheduler quantum. Measured on a two-core machine with one other busy process, the ablation
check on ``toy-arith`` (10 problems, 5 random sets) took 28 s with the default policy, 0.96 s with
``OMP_WAIT_POLICY=PASSIVE`` and 0.88 s with one thread (``bench/app.py``); on a quiet machine passive
waiting costs nothing measurable. On SmolLM2 beside one other busy process: AttnLRP on 5 problems 71.6 s
spinning against 10.7 s passive, answer ranking of 10 problems 262 s against 18.7 s.

The policy is read once, when PyTorch loads its OpenMP runtime, so :func:`prefer_passive_waiting` must run
before ``import torch``; the app (``app/main.py``) and the ``yfpo`` command call it first thing. A value
the user set in the environment is kept.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets a policy. Returns whether the
    process will run with passive waiting (``False`` when PyTorch was imported first, or the user chose
    another policy)."""
    if "torch" in sys.modules:
        return os.environ.get(WAIT_POLICY_VAR, "").upper() == "PASSIVE"
    os.environ.setdefault(WAIT_POLICY_VAR, "PASSIVE")
    return os.environ[WAIT_POLICY_VAR].upper() == "PASSIVE"
