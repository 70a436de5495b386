"""The ``yfpo`` command line (also ``python -m yfpo_core``).

Each command group lives in its own module with a ``register(subparsers)`` function; this module only
assembles them and turns :class:`~yfpo_core.errors.YfpoError` into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from yfpo_core.errors import YfpoError


def build_parser() -> argparse.ArgumentParser:
    from yfpo_core.cli import (
        data_commands,
        eval_command,
        locate_commands,
        sae_commands,
        toy_commands,
        train_commands,
    )

    parser = argparse.ArgumentParser(
        prog="yfpo", description="YFPO Workbench: locate math neurons in language models and fine-tune with them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data_commands, eval_command, locate_commands, sae_commands, train_commands, toy_commands):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("WANDB_MODE", "disabled")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except YfpoError as exc:
        print(f"yfpo: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("yfpo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
