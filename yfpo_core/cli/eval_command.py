"""``yfpo eval``: answer-ranking accuracy or exact match of a model on a problem set."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from yfpo_core.atomic import atomic_write, atomic_write_text
from yfpo_core.cli.checks import check_output, count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a model on problems (answer ranking or exact match)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name or folder (see `yfpo models`)")
    p.add_argument("--problems", default="gsm8k-test-100", help="problem set name or file (see `yfpo problems`)")
    p.add_argument("--metric", choices=["ranking", "exact"], default="ranking",
                   help="ranking: teacher-forced gold answer vs nearby wrong ones (fast); "
                        "exact: greedy generation, final answer compared (slow)")
    p.add_argument("--limit", type=count(1), default=None, help="use the first N problems")
    p.add_argument("--seed", type=int, default=0, help="seed for generated problem sets")
    p.add_argument("--max-new-tokens", type=count(1), default=256, help="generation budget for --metric exact")
    p.add_argument("--batch-size", type=count(1), default=8, help="generation batch size for --metric exact")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>; under torchrun / accelerate "
                                                   "launch, cuda means each process's own GPU")
    p.add_argument("--out", type=Path, help="write per-problem rows (.csv or .jsonl) and a .summary.json beside")
    p.add_argument("--quiet", action="store_true", help="print only the summary, not the per-problem table")
    p.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Under torchrun / accelerate launch every process scores its share of the problems (ranking or
    generation), rank 0 gathers the rows in problem order, prints and writes (see :mod:`yfpo_core.distributed`)."""
    from yfpo_core.cli import print_error
    from yfpo_core.distributed import launched

    check_output(args.out)
    if args.out is not None:
        check_output(args.out.with_suffix(".summary.json"))
    with launched(args.device, announce=print_error) as dist:
        return _eval(args, dist)


def _eval(args: argparse.Namespace, dist) -> int:
    from yfpo_core.cli.output import print_summary, print_table
    from yfpo_core.scoring.evaluate import ExactMatchReport, RankingReport, answer_ranking, exact_match
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems
    from yfpo_core.progress import tqdm_progress

    problems = load_problems(args.problems, limit=args.limit, seed=args.seed)
    model = load_model(args.model, device=dist.device)
    started = time.perf_counter()
    share = f" (rank 0's share, {dist.world} processes)" if dist.world > 1 else ""
    with tqdm_progress(f"{args.metric} {model.name}{share}", unit="problem", disable=not dist.is_main) as progress:
        if args.metric == "ranking":
            rows = dist.map(problems, lambda mine: answer_ranking(model, mine, progress=progress).rows)
            result = RankingReport(rows=rows) if rows is not None else None
            columns = ["id", "gold", "best_wrong", "margin", "gold_logprob", "correct"]
        else:
            rows = dist.map(problems, lambda mine: exact_match(model, mine, max_new_tokens=args.max_new_tokens,
                                                                batch_size=args.batch_size, progress=progress).rows)
            result = ExactMatchReport(rows=rows) if rows is not None else None
            columns = ["id", "gold", "predicted", "correct", "stop_reason", "output"]
    if result is None:
        return 0  # rank 0 has every problem's row and writes the files
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print_table(result.rows, columns)
    summary = {**result.summary(), "seconds": round(elapsed, 1), "processes": dist.world}
    print_summary(f"{args.metric} on {args.problems} ({len(problems)} problems), model {model.name}", summary)
    if args.out:
        _write_rows(args.out, result.to_frame())
        atomic_write_text(args.out.with_suffix(".summary.json"), json.dumps(
            {"model": model.name, "fingerprint": model.fingerprint, "problems": args.problems,
             "metric": args.metric, **summary}, indent=2))
        print(f"\nwrote {args.out} and {args.out.with_suffix('.summary.json')}")
    return 0


def _write_rows(path: Path, frame) -> None:
    """Per-problem rows as JSON lines (``.jsonl``) or CSV, written atomically (a kill never leaves half a file)."""
    if path.suffix == ".jsonl":
        atomic_write(path, lambda tmp: frame.to_json(tmp, orient="records", lines=True))
    else:
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
