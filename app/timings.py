"""How long a Locate attribution takes, for the hint under its button: measured, never guessed.

Two sources, the first that has a number wins:

* this session's own runs: every finished attribution records its seconds (``result.params["seconds"]``,
  the work alone, without the model load); per problem, by model fingerprint and method;
* the measurements below, made on the project's machine (2 CPU cores, quiet, torch's default 2 threads,
  batches of 4 problems) with the CLI, which runs the same ``attribute`` as the page::

      yfpo locate --model <model> --method <method> --problems <gsm8k-test-100 | toy> --limit 8 --out /tmp/t.json
      python -c "import json; print(json.load(open('/tmp/t.scores.json'))['params']['seconds'] / 8)"

  measured 2026-12-01 (after the weight layout, ``yfpo_core/models/layout.py``; the figures of 2026-11-30,
  taken at a load of 3.5, were 5-50x these).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from app import state

if TYPE_CHECKING:
    from yfpo_core.attribution import AttributionResult
    from yfpo_core.models import LoadedModel

# Seconds per problem, by model name and method (see the module docstring for how they were measured).
MEASURED_S_PER_PROBLEM: dict[str, dict[str, float]] = {
    "smollm2-135m-instruct": {"attnlrp": 1.53, "grad_x_act": 1.16},
    "toy-arith": {"attnlrp": 0.011, "grad_x_act": 0.011},
}


def remember(fingerprint: str, result: AttributionResult) -> None:
    """Keep a finished attribution's seconds per problem for the hint (this tab, this model, this method)."""
    seconds, n = result.params.get("seconds"), len(result.problem_ids)
    if isinstance(seconds, int | float) and n:
        st.session_state[state.LOCATE_TIMINGS][(fingerprint, result.method)] = float(seconds) / n


def hint(model: LoadedModel, method: str, n_problems: int) -> str:
    """A line such as "attnlrp: about 0.9 s per problem for this model (your last run here) → about 9 s
    for 10 problems"; says so when nothing was measured for this model and method yet."""
    own = st.session_state[state.LOCATE_TIMINGS].get((model.fingerprint, method))
    measured = MEASURED_S_PER_PROBLEM.get(model.name, {}).get(method)
    if own is not None:
        per, where = own, "measured on your last run here"
    elif measured is not None:
        per, where = measured, "measured with the CLI on a quiet 2-core CPU; more when other work shares it"
    else:
        return (f"**{method}** on {model.name}: not timed yet; the time per problem is shown here after the first "
                "run (it grows with the model's size and the problems' length).")
    return (f"**{method}** on {model.name}: about {per:.2g} s per problem ({where}) → "
            f"{_duration(per * n_problems)} for {n_problems} problem{'s' if n_problems != 1 else ''}.")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.1f} min"
