"""``yfpo index build`` (the activation index), ``yfpo search`` (units by text) and the index dashboard that
``yfpo inspect --from-index`` prints."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from yfpo_core.cli.checks import count
from yfpo_core.errors import YfpoError


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model name or folder (default: the embedded smollm2-135m-instruct)")
    p.add_argument("--units", default="neurons", help="neurons (all MLP neurons) or sae:<ref> for an SAE's features")
    p.add_argument("--corpus", default="default", help="default (GSM8K-100 with solutions, GSM-Symbolic variants, "
                                                       "non-math texts; the toy model's own texts for toy-arith) or "
                                                       "a JSONL file with a \"text\" (and \"id\", \"math\") per line")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>; under torchrun / accelerate launch, "
                                                   "cuda means each process's own GPU")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="the activation index behind corpus-wide unit dashboards and search")
    commands = p.add_subparsers(dest="index_command", required=True, metavar="SUBCOMMAND")
    b = commands.add_parser("build", help="build (or resume) the index of a model's units over a corpus")
    _model_args(b)
    b.add_argument("--no-gsm-symbolic", action="store_true", help="leave the GSM-Symbolic variants out of the "
                                                                  "default corpus (about 5x fewer tokens)")
    b.add_argument("--limit", type=count(1), default=None, help="use the first N texts of the corpus")
    b.add_argument("--checkpoint-every", type=float, default=60.0, help="seconds between checkpoints (default 60)")
    b.add_argument("--folder", type=Path, default=None, help="where to write it (default: the user cache)")
    b.set_defaults(handler=cmd_index_build)

    s = sub.add_parser("search", help="units that fire most on a token: live on a text, or from the index")
    _model_args(s)
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="run the model on this text and rank units at --position")
    what.add_argument("--token", help="rank units whose top corpus contexts peak on this token (needs the index)")
    s.add_argument("--position", type=int, default=-1, help="token position in --text (default -1: the last)")
    s.add_argument("--rank-by", choices=["activation", "relative"], default="activation",
                   help="relative: activation / the unit's max over the indexed corpus (needs the index)")
    s.add_argument("--k", type=count(1), default=20)
    s.set_defaults(handler=cmd_search)


def _setup(args: argparse.Namespace, device: str | None = None):
    from yfpo_core.cli.locate_commands import units_flag_sae
    from yfpo_core.models import DEFAULT_MODEL, load_model

    device = device or args.device
    model = load_model(args.model or DEFAULT_MODEL, device=device)
    return model, units_flag_sae(args, model, device)


def _corpus(args: argparse.Namespace, model):
    from yfpo_core.analysis.activation_index import default_corpus, read_corpus

    if args.corpus == "default":
        texts, name = default_corpus(model, gsm_symbolic=not args.no_gsm_symbolic), "default"
    else:
        texts, name = read_corpus(args.corpus), re.sub(r"[^\w.]", "_", Path(args.corpus).stem)
    if args.limit is not None:
        texts, name = texts[: args.limit], f"{name}_first{args.limit}"
    return texts, name


def cmd_index_build(args: argparse.Namespace) -> int:
    """Under torchrun / accelerate launch every process indexes its share of the texts; rank 0 merges the
    shares and alone writes the index (see :mod:`yfpo_core.analysis.activation_index`)."""
    from yfpo_core.cli import print_error
    from yfpo_core.distributed import launched

    with launched(args.device, announce=print_error) as dist:
        return _index_build(args, dist)


def _index_build(args: argparse.Namespace, dist) -> int:
    from yfpo_core.analysis.activation_index import META_FILE, build_index
    from yfpo_core.cli.locate_commands import _share
    from yfpo_core.progress import tqdm_progress

    model, sae = _setup(args, dist.device)
    texts, name = _corpus(args, model)
    with tqdm_progress(f"indexing {len(texts)} texts{_share(dist)}", unit="text",
                       disable=not dist.is_main) as progress:
        folder = build_index(model, texts, sae=sae, folder=args.folder, corpus_name=name,
                             checkpoint_s=args.checkpoint_every, progress=progress, dist=dist)
    if not dist.is_main:
        return 0  # rank 0 merged the shares, wrote the index and reports
    meta = json.loads((folder / META_FILE).read_text())
    processes = meta.get("processes", 1)
    print(f"index of {meta['n_units']} units over {meta['n_texts']} texts ({meta['n_tokens']} tokens) in {folder}")
    print(f"build time {meta['build_seconds']:.1f} s ({meta['tokens_per_second']:.0f} tokens/s)"
          + (f" on {processes} processes" if processes > 1 else ""))
    return 0


def find_index_or_fail(model, sae, corpus: str | None = None, model_arg: str | None = None):
    from yfpo_core.analysis.activation_index import find_index

    index = find_index(model, sae, None if corpus in (None, "default") else re.sub(r"[^\w.]", "_", Path(corpus).stem))
    if index is None:
        what = f" --units sae:{sae.source}" if sae is not None else ""
        name = model_arg or model.name
        raise YfpoError(f"no activation index for {name}{' / ' + sae.sae_id if sae else ''} yet: build it with "
                        f"`yfpo index build --model {name}{what}`")
    return index


def cmd_search(args: argparse.Namespace) -> int:
    from yfpo_core.analysis.activation_index import find_index
    from yfpo_core.cli.output import print_table
    from yfpo_core.analysis.unit_search import search_index, search_live, text_tokens

    model, sae = _setup(args)
    try:
        if args.token is not None:
            rows = search_index(find_index_or_fail(model, sae, args.corpus, args.model), model, args.token, k=args.k)
            print(f"Units whose top corpus contexts peak on {args.token!r}:")
        else:
            index = find_index(model, sae) if args.rank_by == "relative" else None
            if args.rank_by == "relative" and index is None:
                find_index_or_fail(model, sae, model_arg=args.model)
            tokens = text_tokens(model, args.text)
            rows = search_live(model, args.text, args.position, sae=sae, index=index, k=args.k, rank_by=args.rank_by)
            print(f"Units most active on token {args.position} ({tokens[args.position]!r}) of the text:")
    except ValueError as exc:
        raise YfpoError(str(exc)) from None
    print_table(rows)
    return 0


def print_dashboard(model, unit, sae, corpus: str | None = None, top: int = 8, model_arg: str | None = None) -> int:
    """What ``yfpo inspect --from-index`` prints: the unit's corpus dashboard from the activation index."""
    from yfpo_core.analysis.dashboards import unit_dashboard
    from yfpo_core.errors import printable

    index = find_index_or_fail(model, sae, corpus, model_arg)
    dash = unit_dashboard(index, unit, model, sae=sae, n_top=top)
    s = dash.stats
    print(f"{unit.label} over {dash.corpus['n_texts']} texts ({dash.corpus['n_tokens']} tokens, corpus "
          f"{dash.corpus['corpus']}): mean {s['mean']:.3f}, std {s['std']:.3f}, max {s['max']:.3f}, "
          f"active (> 0) on {s['density']:.2%} of tokens")
    print(f"math mean {s['math_mean']:.4f} · non-math mean {s['nonmath_mean']:.4f}\n")

    def line(e) -> str:
        text = "".join(f"[{t}]" if j == e.center else t for j, t in enumerate(e.tokens))
        return f"  {e.value:8.3f}  {e.text_id:<28} {printable(' '.join(text.split()))!r}"

    print("Top contexts (the max token in [brackets]):")
    for e in dash.top:
        print(line(e))
    for q in dash.quantiles:
        print(f"\nQuantile {q['label']} of active tokens ({q['low']:.3g} to {q['high']:.3g}):")
        for e in q["examples"]:
            print(line(e))
    print("\nLogit effect (direct path): promoted", ", ".join(f"{t!r} {v:+.2f}" for t, v in dash.promoted[:8]))
    print("                           suppressed", ", ".join(f"{t!r} {v:+.2f}" for t, v in dash.suppressed[:8]))
    print(f"\n(drawn from the index in {1000 * dash.seconds:.0f} ms)")
    return 0
