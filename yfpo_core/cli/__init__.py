"""The ``yfpo`` command line (also ``python -m yfpo_core``).

Each command group lives in its own module with a ``register(subparsers)`` function; this module only
assembles them and applies one error policy: every failure a user can fix (a
:class:`~yfpo_core.errors.YfpoError`, a bad option, a path that cannot be written, an input nested too deeply)
prints ``yfpo: error: <what, where, how to fix>`` on one line of at most a few hundred characters and exits
with code 2; Ctrl-C exits with 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from yfpo_core.errors import user_message


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error line: ``yfpo: error: <command>: <problem>; see --help``, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from yfpo_core.errors import clip, printable

        command = self.prog.removeprefix("yfpo").strip()
        where = f"{command}: " if command else ""
        help_hint = f"yfpo {command} --help" if command else "yfpo --help"
        self.exit(2, f"yfpo: error: {clip(printable(where + message))}; see {help_hint}\n")


def build_parser() -> argparse.ArgumentParser:
    from yfpo_core.cli import (
        data_commands,
        eval_command,
        faithfulness_command,
        index_commands,
        locate_commands,
        sae_commands,
        steer_commands,
        toy_commands,
        train_commands,
    )

    parser = _Parser(
        prog="yfpo", description="YFPO Workbench: locate math neurons in language models and fine-tune with them.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data_commands, eval_command, locate_commands, sae_commands, train_commands, toy_commands,
                   steer_commands, faithfulness_command, index_commands):
        module.register(sub)
    return parser


def print_error(message: str) -> None:
    """The one error line every command ends with (also what rank 0 says for a data-parallel run)."""
    print(f"yfpo: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``yfpo`` command and return its exit code.

    A process of a data-parallel run (``torchrun``, ``accelerate launch``) ends here with ``os._exit`` once
    its output is flushed: in the interpreter's own teardown, after the process group was destroyed, a C++
    thread of torch.distributed could abort the process ("terminate called without an active exception",
    SIGABRT) about one run in ten on 2 busy cores, failing a run whose results were already written."""
    from yfpo_core.distributed import world_size

    code = _run(argv)
    if world_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(argv: Sequence[str] | None) -> int:
    from yfpo_core.cpu import prefer_passive_waiting

    prefer_passive_waiting()  # before any command imports torch (see yfpo_core.cpu: a busy machine stalls spinning)
    os.environ.setdefault("WANDB_MODE", "disabled")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # The project's own warnings (a question cut to the model's context, ...) read like its errors.
    warnings.formatwarning = lambda message, category, *rest, **kw: f"yfpo: warning: {message}\n"
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad option (2, message already printed): a code, like the rest
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("yfpo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - worded if a user can fix it, else re-raised as a bug
        message = user_message(exc)
        if message is None:
            raise
        if not getattr(exc, "quiet", False):  # a data-parallel failure was already said by rank 0
            print_error(message)
        return 2


if __name__ == "__main__":
    sys.exit(main())
