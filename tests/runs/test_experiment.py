"""The experiment on a tiny model: every arm runs, the paired table matches the runs' own rows by hand."""

from __future__ import annotations

import json
import statistics

import pytest

from tests.helpers import trainer_config as config
from yfpo_core.runs.experiment import paired_rows, rebuild_experiment, run_experiment
from yfpo_core.runs import EVAL_ROWS_FILE
from yfpo_core.training import metric_names as M


def test_experiment_runs_every_arm_and_pairs_them_by_problem(setup):  # noqa: F811
    _, tmp = setup
    shared = config(tmp, trainable="mlp_last_k", last_k=1, steps=3, eval_every=3, checkpoint_every=3,
                    n_eval_problems=6, eval_seed=7)
    out = tmp / "exp"
    table = run_experiment(shared, out, [0, 1], located_set=tmp / "set.json", activation_set=tmp / "set.json",
                           extra_lams=[3.0])
    arms = ["dpo", "yfpo-located", "yfpo-random", "yfpo-activation", "yfpo-located-lam3"]
    assert [a["arm"] for a in table.arms] == arms
    assert {(r["arm"], r["seed"]) for r in table.runs} == {(a, s) for a in arms for s in (0, 1)}
    for name in ("experiment.md", "experiment.csv", "paired.csv", "experiment.json", "experiment.html"):
        assert (out / name).stat().st_size > 0
    # every arm of a seed saw the same held-out problems
    ids = {json.dumps([r["id"] for r in json.loads((out / f"{a}-s0" / EVAL_ROWS_FILE).read_text())["ranking"]])
           for a in arms}
    assert len(ids) == 1
    # the paired difference, recomputed by hand from the files
    run_dirs = {(r["arm"], r["seed"]): out / r["run"] for r in table.runs}
    row = next(p for p in table.paired if p["arm"] == "yfpo-located" and p["metric"] == M.EVAL_GOLD_LOGPROB)
    by_hand = []
    for seed in (0, 1):
        a = json.loads((out / f"yfpo-located-s{seed}" / EVAL_ROWS_FILE).read_text())["ranking"]
        d = {r["id"]: r["gold_logprob"] for r in json.loads((out / f"dpo-s{seed}" / EVAL_ROWS_FILE).read_text())["ranking"]}
        by_hand.append(statistics.fmean(r["gold_logprob"] - d[r["id"]] for r in a))
    assert row["difference"] == pytest.approx(statistics.fmean(by_hand))
    assert row["per_seed"] == pytest.approx(by_hand)
    assert row["boot_low"] <= row["difference"] <= row["boot_high"]
    assert paired_rows(run_dirs, "yfpo-located", "dpo", M.EVAL_NEURON_MARGIN)
    # the probe is the located set in every arm, so at step 0 all arms agree
    starts = {r[f"{M.EVAL_NEURON_MARGIN} start"] for r in table.runs if r["seed"] == 0 and r["arm"] != "yfpo-activation"}
    assert len(starts) == 1
    assert "95% bootstrap" in table.markdown
    # the tables can be rebuilt from the run folders alone, with the same numbers
    (out / "experiment.md").unlink()
    rebuilt = rebuild_experiment(out)
    assert [(p["arm"], p["metric"], p["difference"], p["boot_low"]) for p in rebuilt.paired] == \
        [(p["arm"], p["metric"], p["difference"], p["boot_low"]) for p in table.paired]
    assert (out / "experiment.md").read_text() == table.markdown
