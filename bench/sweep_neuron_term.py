"""The small sweep behind the neuron term's defaults, on the training split only.

Training pairs come from GSM-Symbolic templates 0-9 and the validation problems from templates 10-19 (both
inside the experiment's training templates 0-19, data seed 99): no held-out template of the experiment is
read. Every setting trains the same steps on the same pairs from the same base; the table reports, per
setting, the share of the update the neuron term supplied, the movement of the located set's margin on the
validation pairs, and the validation gold log-prob and ranking accuracy, each as the change from step 0.

    python bench/sweep_neuron_term.py --set docs/results/smollm2-attnlrp-last4-top64.json --steps 12

Rule fixed before running (README, "The experiment"): among the direction-aware settings, take the smallest
lam whose validation probe margin moves at least twice as much as under DPO, provided its validation gold
log-prob does not fall more than 0.5 nats below DPO's.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from yfpo_core.models import load_model
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.problems import load_problems
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import YFPOConfig
from yfpo_core.training.pairs import corrupted_pairs
from yfpo_core.training.fit import fit
from yfpo_core.training.trainer import YFPOTrainer

SETTINGS = [  # (name, overrides); lam 0 is DPO
    ("dpo", dict(lam=0.0)),
    ("mean/none lam1", dict(pooling="mean", sign="none", lam=1.0)),
    ("diverge/none lam1", dict(pooling="diverge", sign="none", lam=1.0)),
    ("diverge/pairs lam1", dict(pooling="diverge", sign="pairs", lam=1.0)),
    ("diverge/pairs lam3", dict(pooling="diverge", sign="pairs", lam=3.0)),
    ("diverge/pairs lam10", dict(pooling="diverge", sign="pairs", lam=10.0)),
    ("diverge/pairs lam30", dict(pooling="diverge", sign="pairs", lam=30.0)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--n-val", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("docs/results/sweep-neuron-term.json"))
    args = parser.parse_args()

    base = load_model("smollm2-135m-instruct")
    train_problems = load_problems("gsm-symbolic", seed=99, templates=list(range(0, 10)))
    val_problems = load_problems("gsm-symbolic", seed=99, templates=list(range(10, 20)))[: args.n_val]
    pairs = corrupted_pairs(train_problems, base.prompt_format, mode="final", seed=99)
    neuron_set = NeuronSet.load(str(args.set), base)
    units, scores = neuron_set.units_only(), [u.score for u in neuron_set.units]
    shared = YFPOConfig(neuron_set=str(args.set), trainable="mlp_last_k", last_k=4, steps=args.steps,
                        batch_pairs=4, lr=5e-5, warmup_steps=2, eval_every=args.steps, checkpoint_every=0, seed=99)
    results = []
    print(f"{len(pairs)} training pairs (templates 0-9), {len(val_problems)} validation problems (templates 10-19)")
    for name, overrides in SETTINGS:
        config = replace(shared, **overrides)
        started = time.perf_counter()
        trainer = YFPOTrainer(config, base, pairs, val_problems, units, scores, probe_units=units, probe_scores=scores)
        rows: list[dict] = []
        fit(trainer, on_metrics=rows.append)
        first, last = rows[0], rows[-1]
        train_rows = [r for r in rows if r["step"] > 0]
        result = {"setting": name, **overrides, "seconds": round(time.perf_counter() - started, 1),
                  "aux_share": sum(r[M.AUX_SHARE] for r in train_rows) / len(train_rows),
                  "grad_cos": sum(r[M.GRAD_COS] for r in train_rows) / len(train_rows),
                  "step_seconds": sum(r[M.STEP_SECONDS] for r in train_rows) / len(train_rows)}
        for metric in (M.EVAL_NEURON_MARGIN, M.EVAL_GOLD_LOGPROB, M.EVAL_RANKING_ACCURACY, M.EVAL_MEAN_MARGIN):
            result[f"Δ {metric}"] = last[metric] - first[metric]
        results.append(result)
        print(json.dumps(result), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
