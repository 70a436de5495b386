"""The `yfpo` command (yfpo_core.cli): every command listed, a light parser, one-line errors. Each group of
commands has its own test module (test_locate_commands, test_train_commands, ...)."""

from __future__ import annotations

import subprocess
import sys

from yfpo_core.cli import main


def test_help_is_fast_and_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "yfpo_core", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("models", "problems", "eval", "locate", "ablate", "inspect", "pairs", "train", "runs",
                    "experiment", "sae", "toy", "steer", "faithfulness", "index", "search"):
        assert command in out.stdout


def test_building_the_parser_does_not_load_torch():
    code = ("import sys\nfrom yfpo_core.cli import build_parser\nbuild_parser()\n"
            "print(sorted({'torch', 'transformer_lens', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_errors_are_one_line_with_exit_code_2(capsys):
    assert main(["eval", "--model", "no-such-model-anywhere", "--problems", "toy", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("yfpo: error:") and err.count("\n") == 1
    assert main(["problems", "--source", "no-such-set"]) == 2
