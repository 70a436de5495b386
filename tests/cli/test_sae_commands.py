"""yfpo sae train and eval (yfpo_core.cli.sae_commands): flags from the training config, eval of a tiny SAE."""

from __future__ import annotations

from dataclasses import fields

from tests.helpers import TINY_CLI, save_tiny_sae
from yfpo_core.cli import build_parser, main
from yfpo_core.saes.config import SAETrainConfig


def test_every_training_field_is_a_flag_with_its_default():
    args = build_parser().parse_args(["sae", "train", "--out", "x", "--width", "64", "--no-fp16"])
    defaults = SAETrainConfig()
    for f in fields(SAETrainConfig):
        expected = {"width": 64, "fp16": False}.get(f.name, getattr(defaults, f.name))
        assert getattr(args, f.name) == expected, f.name


def test_eval_prints_the_quality_of_an_sae(tmp_path, capsys):
    folder = save_tiny_sae(tmp_path / "tiny-sae")
    assert main(["sae", "eval", "--model", TINY_CLI, "--sae", str(folder), "--texts", "4"]) == 0
    out = capsys.readouterr().out
    assert "SAE tiny-sae at blocks.1.mlp.hook_post (16 features) on 4 texts" in out
    for key in ("l0", "explained_variance", "loss_recovered"):
        assert f"  {key}" in out
    assert main(["sae", "eval", "--model", TINY_CLI, "--sae", str(tmp_path / "nope")]) == 2
