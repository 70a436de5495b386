"""``yfpo pairs``, ``yfpo train``, ``yfpo runs`` and ``yfpo experiment``.

``yfpo train`` takes a JSON config (``--config run.json``) and/or one flag per :class:`YFPOConfig` field
(generated from the dataclass, with its help text). Under ``torchrun`` or ``accelerate launch`` with
several processes it trains data-parallel through ``accelerate`` (``--distributed`` forces it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
import os
from dataclasses import MISSING, fields
from pathlib import Path

from yfpo_core.cli.checks import check_output, count
from yfpo_core.errors import YfpoError
from yfpo_core.training import metric_names as M
from yfpo_core.training.config import PAIR_SOURCES, YFPOConfig

# What `yfpo runs compare` shows by default.
COMPARE_METRICS = (M.EVAL_RANKING_ACCURACY, M.EVAL_GOLD_LOGPROB, M.REWARDS_MARGINS, M.NEURON_MARGIN, M.LOSS)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One ``--flag`` per YFPOConfig field; unset flags keep the config file's or the default value."""
    group = p.add_argument_group("run configuration (see YFPOConfig)")
    for f in fields(YFPOConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if f.type in ("bool", bool):
            group.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = {"int": int, "float": float, "int | None": int}.get(str(f.type), str)
            group.add_argument(flag, dest=f.name, default=None, type=kind, help=help_text)


def config_from_args(args: argparse.Namespace) -> YFPOConfig:
    data = {}
    if getattr(args, "config", None):
        from yfpo_core.jsonio import parse_json

        try:
            data = parse_json(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise YfpoError(f"cannot read the config {args.config}: {exc}; it must be a JSON object of "
                            "YFPOConfig fields") from None
    for f in fields(YFPOConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = value
    return YFPOConfig.from_dict(data)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pairs", help="make preference pairs (chosen = gold, rejected = corrupted or sampled)")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model (its prompt format; samples for on-policy)")
    p.add_argument("--problems", default="gsm-symbolic")
    p.add_argument("--limit", type=count(1), default=64)
    p.add_argument("--source", choices=PAIR_SOURCES, default="corrupt-final")
    p.add_argument("--samples", type=count(1), default=4, help="samples per problem (on-policy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="pairs JSONL to write")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>")
    p.set_defaults(handler=cmd_pairs)

    p = sub.add_parser("train", help="train with YFPO (lam > 0) or DPO (lam = 0); metrics and checkpoints on disk")
    p.add_argument("--config", type=Path, help="JSON file with YFPOConfig fields; flags override it")
    p.add_argument("--out-dir", type=Path, help="run directory (default: <runs dir>/<time>-yfpo or -dpo, see yfpo runs list)")
    p.add_argument("--resume", type=Path, help="continue this run directory from its last checkpoint")
    p.add_argument("--distributed", action="store_true", help="train through accelerate even in one process")
    _add_config_flags(p)
    p.set_defaults(handler=cmd_train)

    runs = sub.add_parser("runs", help="list and compare training runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    p = runs_sub.add_parser("list", help="runs under ~/.local/share/yfpo/runs (or $YFPO_RUNS_DIR)")
    p.add_argument("--root", type=Path, default=None)
    p.set_defaults(handler=cmd_runs_list)
    p = runs_sub.add_parser("compare", help="final metrics side by side and overlaid curves (plotly HTML)")
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--metrics", default=",".join(COMPARE_METRICS))
    p.add_argument("--html", type=Path, help="write the curves as a self-contained HTML file")
    p.set_defaults(handler=cmd_runs_compare)

    p = sub.add_parser("experiment", help="DPO vs YFPO (located set) vs YFPO (random set), several seeds")
    p.add_argument("--set", dest="located_set", type=Path, help="the located (e.g. AttnLRP) set (required unless "
                                                                  "--rebuild)")
    p.add_argument("--rebuild", type=Path, metavar="DIR", help="re-read the finished runs of an experiment folder and "
                                                               "rewrite its tables; trains nothing")
    p.add_argument("--activation-set", type=Path, help="an activation-selected set as a fourth arm")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--extra-lams", default="", help="more lam values for the located set (dose-response), e.g. 1,10")
    p.add_argument("--out-dir", type=Path, default=None, help="default: <runs dir>/<time>-experiment")
    p.add_argument("--config", type=Path, help="JSON with shared YFPOConfig fields; flags override it")
    _add_config_flags(p)
    p.set_defaults(handler=cmd_experiment)


def cmd_pairs(args: argparse.Namespace) -> int:
    from yfpo_core.models import load_model
    from yfpo_core.problems import load_problems
    from yfpo_core.progress import tqdm_progress
    from yfpo_core.training.on_policy import on_policy_pairs
    from yfpo_core.training.pairs import corrupted_pairs
    from yfpo_core.training.pairs_io import save_pairs

    check_output(args.out)
    problems = load_problems(args.problems, limit=args.limit, seed=args.seed)
    model = load_model(args.model, device=args.device)
    if args.source == "on-policy":
        with tqdm_progress("sampling", unit="problem") as progress:
            pairs, stats = on_policy_pairs(model, problems, samples=args.samples, seed=args.seed, progress=progress)
        print(json.dumps(stats, indent=2))
    else:
        pairs = corrupted_pairs(problems, model.prompt_format, mode=args.source.split("-", 1)[1], seed=args.seed)
    path = save_pairs(pairs, args.out)
    print(f"wrote {len(pairs)} pairs from {len(problems)} problems to {path}")
    return 0


def _accelerator(args: argparse.Namespace, config: YFPOConfig):
    if not (args.distributed or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=config.device == "cpu")


def cmd_train(args: argparse.Namespace) -> int:
    from yfpo_core.runs import new_run_dir, read_run_config, run_slug

    if args.resume:
        config = read_run_config(args.resume)
        run_dir, resume = args.resume, True
    else:
        config = config_from_args(args)
        if args.out_dir is not None and args.out_dir.exists() and not args.out_dir.is_dir():
            raise YfpoError(f"--out-dir {args.out_dir} is a file; give a folder for the run")
        run_dir, resume = args.out_dir or new_run_dir(run_slug(config)), False
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    with _sigterm_as_interrupt():
        return _train(args, config, Path(run_dir), resume)


def _train(args: argparse.Namespace, config: YFPOConfig, run_dir: Path, resume: bool) -> int:
    from yfpo_core.cli.output import print_summary
    from yfpo_core.progress import tqdm_progress
    from yfpo_core.runs import execute, objective_label

    accelerator = _accelerator(args, config)
    main = accelerator is None or accelerator.is_main_process
    if main:
        print(f"run directory: {run_dir}  ({objective_label(config.to_dict())}, "
              f"{config.steps} steps{', resuming' if resume else ''}"
              f"{f', {accelerator.num_processes} processes' if accelerator else ''})")
    with tqdm_progress("training", unit="step", disable=not main) as progress:
        summary = execute(Path(run_dir), config, resume=resume, progress=progress, accelerator=accelerator)
    if main:
        final = {k: v for k, v in summary["final"].items() if isinstance(v, (int, float))}
        print_summary(f"{summary['state']} after {summary['last_step']} steps ({summary['seconds']} s)", final)
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While training, ``kill PID`` ends the run like Ctrl-C (status ``stopped``), not silently mid-write."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_runs_list(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_table
    from yfpo_core.runs import list_runs, read_metrics, read_run_config, run_state
    from yfpo_core.runs.run_dir import CONFIG_FILE

    rows = []
    for run in list_runs(args.root):
        # One damaged run must not hide the others: show what can be read, and why the rest cannot.
        try:
            config = read_run_config(run).to_dict()
            problem = ""
        except YfpoError as exc:
            config, problem = {}, f"unreadable {CONFIG_FILE} ({str(exc)[:60]})"
        metrics = read_metrics(run)
        last = metrics[-1] if metrics and isinstance(metrics[-1], dict) else {}
        rows.append({"run": run.name, "state": problem or run_state(run), "lam": config.get("lam"),
                     "steps": f"{last.get(M.STEP, 0)}/{config.get('steps', '?')}",
                     M.EVAL_RANKING_ACCURACY: last.get(M.EVAL_RANKING_ACCURACY)})
    print_table(rows)
    return 0


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_table
    from yfpo_core.runs.reports import compare_runs, curves_figure

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    check_output(args.html, "--html")
    print_table(compare_runs(args.dirs, metrics), max_width=40)
    if args.html:
        from yfpo_core.atomic import atomic_write

        figure = curves_figure(args.dirs, metrics)
        atomic_write(args.html, lambda tmp: figure.write_html(tmp, include_plotlyjs=True))
        print(f"wrote {args.html}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from yfpo_core.runs.experiment import (
        DESIGN_FILE,
        HTML_FILE,
        PAIRED_CSV_FILE,
        RUNS_CSV_FILE,
        TABLE_FILE,
        rebuild_experiment,
        run_experiment,
    )

    if args.rebuild:
        table = rebuild_experiment(Path(args.rebuild))
        print(table.markdown)
        print(f"\nrewrote {Path(args.rebuild) / TABLE_FILE}, {RUNS_CSV_FILE}, {PAIRED_CSV_FILE}, {DESIGN_FILE} and "
              f"{HTML_FILE}")
        return 0
    if args.located_set is None:
        raise YfpoError("yfpo experiment needs --set (the located neuron set), or --rebuild DIR")
    from yfpo_core.progress import tqdm_progress
    from yfpo_core.runs import new_run_dir

    shared = config_from_args(argparse.Namespace(**{**vars(args), "neuron_set": str(args.located_set)}))
    if shared.lam == 0:
        raise YfpoError("yfpo experiment: --lam must be > 0 (it is the YFPO arms' weight; the DPO arm uses 0)")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        extra_lams = [float(x) for x in args.extra_lams.split(",") if x.strip()]
    except ValueError:
        raise YfpoError("--seeds takes whole numbers and --extra-lams numbers, comma-separated") from None
    out = args.out_dir or new_run_dir("experiment")
    with tqdm_progress("experiment", unit="run") as progress:
        table = run_experiment(shared, Path(out), seeds, located_set=args.located_set,
                               activation_set=args.activation_set, extra_lams=extra_lams, progress=progress)
    print(table.markdown)
    print(f"\nwrote {Path(out) / TABLE_FILE}, {RUNS_CSV_FILE} and {HTML_FILE}")
    return 0
