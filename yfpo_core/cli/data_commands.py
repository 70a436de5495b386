"""``yfpo models`` and ``yfpo problems``: what can be loaded, and a look at problem sets."""

from __future__ import annotations

import argparse
import json

from yfpo_core.cli.checks import count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models the workbench can load and the state of their caches")
    p.add_argument("--verify", action="store_true", help="also checksum every cached file (a few seconds); exit 2 if a cache is damaged")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("problems", help="list or show problems from a problem set")
    p.add_argument("--source", default="gsm8k-test-100",
                   help="problem set name (see --list-sources) or a .jsonl/.json/.csv/.parquet file")
    p.add_argument("--limit", type=count(1), default=20, help="show at most N problems (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed for generated sets (gsm-symbolic, toy)")
    p.add_argument("--show", metavar="ID", help="print one problem in full")
    p.add_argument("--jsonl", action="store_true", help="print the problems as JSON lines")
    p.add_argument("--list-sources", action="store_true", help="list the problem sets and exit")
    p.add_argument("--ship", action="store_true",
                   help="(maintainers) with --source gsm-symbolic: generate every template for --seed and write "
                        "its raw variants into yfpo_core/assets/gsm-symbolic, which a fresh install reads "
                        "instead of generating")
    p.set_defaults(handler=cmd_problems)


def cmd_models(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_table
    from yfpo_core.models import BUILTIN_MODELS
    from yfpo_core.errors import YfpoError
    from yfpo_core.models.status import model_status_report

    rows = [{"name": m.name, "offline": "yes" if m.offline else "needs hub", "description": m.description}
            for m in BUILTIN_MODELS]
    print_table(rows, max_width=90)
    print()
    lines, damaged = model_status_report(verify=args.verify)
    for line in lines:
        print(line)
    if damaged:  # exit 2 so that scripts and CI notice
        raise YfpoError("; ".join(damaged))
    return 0


def cmd_problems(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_table
    from yfpo_core.problems import list_sources, load_problems

    if args.ship:
        return _ship(args)
    if args.list_sources:
        print_table([{"source": s.name, "offline": "yes" if s.offline else "needs hub", "description": s.description}
                     for s in list_sources()], max_width=90)
        return 0
    problems = load_problems(args.source, limit=None if args.show else args.limit, seed=args.seed)
    if args.show:
        match = [p for p in problems if p.id == args.show]
        if not match:
            print(f"no problem with id {args.show!r} in {args.source}")
            return 1
        p = match[0]
        from yfpo_core.errors import printable

        print(printable(f"id:       {p.id}\nsource:   {p.source}\nanswer:   {p.answer}\n\nquestion:\n{p.question}"
                        f"\n\nsolution:\n{p.solution}"))
        return 0
    if args.jsonl:
        for p in problems:
            print(json.dumps(p.to_dict()))
        return 0
    print_table([{"id": p.id, "answer": p.answer, "question": p.question} for p in problems], max_width=80)
    print(f"\n{len(problems)} problems from {args.source}")
    return 0


def _ship(args: argparse.Namespace) -> int:
    from yfpo_core.errors import YfpoError
    from yfpo_core.problems.gsm_symbolic import SHIPPED_SEEDS, ship_variants
    from yfpo_core.progress import tqdm_progress

    if args.source != "gsm-symbolic":
        raise YfpoError(f"--ship writes GSM-Symbolic variants; use it with --source gsm-symbolic, not {args.source}")
    with tqdm_progress(f"gsm-symbolic seed {args.seed}", unit="template") as progress:
        path, variants = ship_variants(args.seed, progress=progress)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): {variants.summary()}")
    if args.seed not in SHIPPED_SEEDS:
        print(f"note: seed {args.seed} is not one of the seeds the tests expect to ship ({SHIPPED_SEEDS})")
    return 0
