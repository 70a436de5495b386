"""``yfpo sae train`` and ``yfpo sae eval``: SAEs for models that have none anywhere."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from yfpo_core.saes.config import SAETrainConfig

    sae = sub.add_parser("sae", help="train and evaluate sparse autoencoders (sae-lens)")
    sae_sub = sae.add_subparsers(dest="sae_command", required=True, metavar="COMMAND")
    p = sae_sub.add_parser("train", help="train an SAE on math + non-math text with sae-lens's runner")
    defaults = SAETrainConfig()
    for f in fields(SAETrainConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                           default=value)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(value), default=value,
                           help=f"(default: {value})")
    p.add_argument("--out", type=Path, required=True, help="folder for the SAE (its name becomes the SAE id)")
    p.add_argument("--resume-from", type=Path, help="a sae-lens checkpoint folder to continue from")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>")
    p.set_defaults(handler=cmd_train)

    p = sae_sub.add_parser("eval", help="L0, explained variance and loss change of an SAE on held-out text")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--sae", default="default", help="default, a folder, or <release>/<sae_id>")
    p.add_argument("--texts", type=int, default=64, help="number of texts (GSM8K test problems + non-math)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<n>")
    p.set_defaults(handler=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_summary
    from yfpo_core.models import load_model
    from yfpo_core.saes.config import SAETrainConfig
    from yfpo_core.saes.sae import train_sae

    config = SAETrainConfig(**{f.name: getattr(args, f.name) for f in fields(SAETrainConfig)})
    model = load_model(config.model, device=args.device)
    loaded = train_sae(config, args.out, model=model, resume_from=args.resume_from)
    print_summary(f"SAE {loaded.sae_id} ({loaded.d_sae} features at {loaded.hook_name}) in {args.out}, "
                  f"{loaded.meta['train_seconds']} s", loaded.meta["quality"])
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from yfpo_core.cli.output import print_summary
    from yfpo_core.models import load_model
    from yfpo_core.saes.sae import held_out_texts, load_sae, sae_quality

    model = load_model(args.model, device=args.device)
    sae = load_sae(args.sae, model, device=args.device)
    texts = held_out_texts(model, args.texts)
    quality = sae_quality(model, sae, texts)
    print_summary(f"SAE {sae.sae_id} at {sae.hook_name} ({sae.d_sae} features) on {len(texts)} texts", quality)
    if sae.meta:
        print(json.dumps({k: sae.meta.get(k) for k in ("command", "train_seconds", "tokens_per_second")}, indent=2))
    return 0
