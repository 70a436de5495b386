"""``yfpo toy train``: train the toy arithmetic model (a few minutes on 2 CPU cores)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    toy = sub.add_parser("toy", help="the toy arithmetic model")
    toy_sub = toy.add_subparsers(dest="toy_command", required=True, metavar="COMMAND")
    p = toy_sub.add_parser("train", help="train toy-arith from scratch (deterministic for a seed)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: the user cache, which `load_model('toy-arith')` then prefers "
                        "over the shipped weights)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>")
    p.set_defaults(handler=cmd_toy_train)


def cmd_toy_train(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_summary
    from yfpo_core.models.toy import toy_cache_dir
    from yfpo_core.progress import tqdm_progress
    from yfpo_core.training.toy_pretraining import ToyTrainConfig, train_toy_model

    overrides = {k: v for k, v in {"seed": args.seed, "steps": args.steps}.items() if v is not None}
    config = ToyTrainConfig(**overrides)
    out = args.out or toy_cache_dir()
    with tqdm_progress("training toy-arith", unit="step") as progress:
        result = train_toy_model(config, progress=progress, out=out, device=args.device)
    final = result.final
    summary = {"train_seconds": result.train_seconds, "exact_match": final.get("exact_match", float("nan")),
               **{f"exact_match/{k}": v for k, v in final.get("exact_match_by_kind", {}).items()},
               "ranking_accuracy": final.get("ranking_accuracy", float("nan"))}
    print_summary(f"toy-arith trained in {result.train_seconds:.0f} s, saved to {result.saved_to}", summary)
    return 0

