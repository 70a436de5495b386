"""``yfpo faithfulness``: each attribution method's top-k units zeroed on held-out problems, against random
same-layer sets; writes JSON, CSV and a plotly HTML chart."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from yfpo_core.cli.checks import check_output, count, parse_layers
from yfpo_core.errors import YfpoError


def register(sub: argparse._SubParsersAction) -> None:
    from yfpo_core.attribution.registry import METHODS as ATTRIBUTION_METHODS, TARGETS as ATTRIBUTION_TARGETS

    p = sub.add_parser("faithfulness", help="faithfulness curves: zero each method's top-k units on held-out "
                                            "problems, against random same-layer sets")
    p.add_argument("--model", default=None, help="model name or folder (default: the embedded smollm2-135m-instruct)")
    p.add_argument("--problems", default=None, help="problem set name or file (default: the model's own: toy "
                                                    "problems for toy-arith, else gsm8k-test-100)")
    p.add_argument("--locate", type=count(1), default=10, help="rank the units on the first N problems (default 10)")
    p.add_argument("--heldout", type=count(1), default=20, help="measure on the next N problems (default 20)")
    p.add_argument("--methods", default=",".join(ATTRIBUTION_METHODS),
                   help=f"comma-separated methods (default all: {', '.join(ATTRIBUTION_METHODS)})")
    p.add_argument("--target", choices=ATTRIBUTION_TARGETS, default="answer_logprob")
    p.add_argument("--ks", default="1,5,10,20,50,100,200", help="set sizes, comma-separated (capped by the units)")
    p.add_argument("--random", type=count(1), default=2, help="random same-layer sets per point (default 2, the "
                                                              "fewest with a spread)")
    p.add_argument("--rank-by", choices=["value", "abs", "negative"], default="value")
    p.add_argument("--layers", default=None, help="comma-separated layers to rank (default: all)")
    p.add_argument("--units", default="neurons", help="neurons, or sae:<ref> for the features of an SAE")
    p.add_argument("--steps", type=count(1), default=4, help="integrated-gradients path points (default 4)")
    p.add_argument("--batch-size", type=count(1), default=1,
                   help="locate problems per attnlrp / grad_x_act pass (default 1: faster when larger, but scores "
                        "then depend on which problems share a pass, so near-tied units may rank differently "
                        "with another number of processes)")
    p.add_argument("--seed", type=int, default=0, help="seed for generated problem sets and the random sets")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>; under torchrun / accelerate launch, "
                                                   "cuda means each process's own GPU")
    p.add_argument("--out", type=Path, required=True, help="report stem: writes <out>.json, <out>.csv and "
                                                          "<out>.html (one chart per metric)")
    p.set_defaults(handler=cmd_faithfulness)


def _ks(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and 0 < int(p) < 10**6 for p in parts):
        raise YfpoError(f"--ks {text[:40]!r}: write set sizes of at least 1 separated by commas, like 1,5,10")
    return [int(p) for p in parts]


def cmd_faithfulness(args: argparse.Namespace) -> int:
    """Under torchrun / accelerate launch every process ranks its share of the locate problems and evaluates
    its share of the held-out ones; rank 0 reduces, prints and writes (see :mod:`yfpo_core.distributed`)."""
    from yfpo_core.attribution.registry import check_methods
    from yfpo_core.cli import print_error
    from yfpo_core.distributed import launched

    stem = Path(str(args.out).removesuffix(".json"))
    for suffix in (".json", ".csv", ".html"):
        check_output(stem.with_suffix(suffix))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        check_methods(methods)
    except ValueError as exc:
        raise YfpoError(f"--methods: {exc}") from None
    ks = _ks(args.ks)
    with launched(args.device, announce=print_error) as dist:
        return _faithfulness(args, dist, stem, methods, ks)


def _faithfulness(args: argparse.Namespace, dist, stem: Path, methods: list[str], ks: list[int]) -> int:
    from yfpo_core.atomic import atomic_write_text
    from yfpo_core.cli.locate_commands import _share, units_flag_sae
    from yfpo_core.cli.output import print_table
    from yfpo_core.analysis.faithfulness import (CURVE_METRICS, faithfulness_curves_sharded, faithfulness_figure,
                                                 split_problems)
    from yfpo_core.models import DEFAULT_MODEL, load_model
    from yfpo_core.problems import load_problems
    from yfpo_core.progress import tqdm_progress

    model = load_model(args.model or DEFAULT_MODEL, device=dist.device)
    layers = parse_layers(args.layers, int(model.model.cfg.n_layers))
    sae = units_flag_sae(args, model, dist.device)
    source = args.problems or ("toy" if model.native_problems == "toy" else "gsm8k-test-100")
    problems = load_problems(source, limit=args.locate + args.heldout, seed=args.seed)
    try:
        locate, heldout = split_problems(problems, args.locate)
        with tqdm_progress(f"faithfulness{_share(dist)}", unit="step", disable=not dist.is_main) as progress:
            report = faithfulness_curves_sharded(dist, model, locate, heldout, methods, target=args.target, ks=ks,
                                                 n_random=args.random, seed=args.seed, rank_by=args.rank_by,
                                                 layers=layers, sae=sae, steps=args.steps,
                                                 batch_size=args.batch_size, progress=progress)
    except ValueError as exc:
        raise YfpoError(str(exc)) from None
    if report is None:
        return 0  # rank 0 has every problem's rows and writes the files
    print(f"\nFaithfulness on {len(heldout)} held-out problems of {source} (ranked on {len(locate)} others), "
          f"{args.random} random same-layer sets per point" + (f" ({dist.world} processes)" if dist.world > 1 else "")
          + ":")
    print_table([{k: v for k, v in row.items() if not k.endswith("_std")} for row in report.rows()])
    print(f"\nOverlap of the methods' top-{min(100, report.settings['n_units'])} sets:")
    print_table(report.overlap)
    print(f"\ncost: attribution {report.seconds['attribution']:.1f} s, evaluation {report.seconds['evaluation']:.1f} s")
    data = report.to_dict()
    data["settings"]["problems"] = source
    atomic_write_text(stem.with_suffix(".json"), json.dumps(data, indent=2))
    atomic_write_text(stem.with_suffix(".csv"), report.to_csv())
    html = "\n".join(faithfulness_figure(report, metric).to_html(include_plotlyjs=not i, full_html=False)
                     for i, metric in enumerate(CURVE_METRICS))
    atomic_write_text(stem.with_suffix(".html"), f"<html><body>{html}</body></html>")
    print(f"wrote {stem}.json, {stem}.csv and {stem}.html")
    return 0
