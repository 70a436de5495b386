"""yfpo toy train (yfpo_core.cli.toy_commands): options reach the recipe, the result is summarised."""

from __future__ import annotations

from types import SimpleNamespace

from yfpo_core.cli import main
from yfpo_core.models.toy import toy_cache_dir
from yfpo_core.training import toy_pretraining


def test_toy_train_passes_its_options_and_prints_the_summary(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake_train(config, progress, out, device):  # the real one trains for minutes
        seen.update(config=config, out=out, device=device)
        progress(1, 1)
        return SimpleNamespace(train_seconds=12.0, saved_to=out, final={
            "exact_match": 0.75, "exact_match_by_kind": {"add": 1.0}, "ranking_accuracy": 0.5})

    monkeypatch.setattr(toy_pretraining, "train_toy_model", fake_train)
    assert main(["toy", "train", "--steps", "3", "--seed", "9", "--out", str(tmp_path / "toy")]) == 0
    assert (seen["config"].steps, seen["config"].seed, seen["out"], seen["device"]) == (3, 9, tmp_path / "toy", "cpu")
    out = capsys.readouterr().out
    assert f"toy-arith trained in 12 s, saved to {tmp_path / 'toy'}" in out
    assert "exact_match/add      1" in out and "ranking_accuracy     0.5000" in out
    assert main(["toy", "train"]) == 0
    assert seen["out"] == toy_cache_dir() and seen["config"] == toy_pretraining.ToyTrainConfig()  # the recipe's
