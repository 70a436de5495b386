"""Issue 11, item 6: one policy for every CLI failure a user can cause.

Each case below ended in a traceback (exit 1) before the fix. Now each ends in one line
``yfpo: error: <what, where, how to fix>`` of at most a few hundred characters, with exit code 2.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.helpers import DEEP, TINY_CLI as TINY
from yfpo_core.cli import main
from yfpo_core.units.neuron_set import NeuronSet
from yfpo_core.units.unit import Unit



def _set(tmp: Path, model, **changes) -> Path:
    doc = json.loads(NeuronSet.create([Unit.neuron(1, 2)], model).to_json())
    doc.update(changes)
    path = tmp / "set.json"
    path.write_text(json.dumps(doc) if "selection" not in changes else
                    json.dumps(doc).replace('"selection": "DEEP"', '"selection": {"x": ' + DEEP + "}"))
    return path


def _sae_folder(tmp: Path, damage: str) -> Path:
    from sae_lens import StandardSAE, StandardSAEConfig

    cfg = StandardSAEConfig(d_in=64, d_sae=16)
    cfg.metadata.hook_name = "blocks.1.mlp.hook_post"
    folder = tmp / "sae"
    StandardSAE(cfg).save_model(str(folder))
    weights = next(folder.glob("*.safetensors"))
    if damage == "garbage":
        weights.write_bytes(b"\x00" * 64)
    else:
        weights.write_bytes(weights.read_bytes()[:100])
    return folder


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def _config(tmp: Path, **values) -> Path:
    return _write(tmp, "run.json", json.dumps({"model": TINY, "lam": 0, "problems": "toy", "eval_problems": "toy",
                                               **values}))


def _pickle_folder(tmp: Path) -> Path:
    folder = tmp / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    return folder


def _full_disk(monkeypatch) -> None:
    import pandas as pd

    def no_space(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)


EVAL = ["eval", "--model", TINY, "--problems", "toy", "--limit", "2"]
LOCATE = ["locate", "--model", TINY, "--problems", "toy", "--limit", "2", "--method", "grad_x_act"]
TRAIN = ["train", "--model", TINY, "--problems", "toy", "--eval-problems", "toy", "--lam", "0", "--steps", "1",
         "--last-k", "2"]  # the tiny model has 2 blocks (last_k is bounded by them)

# name -> (argv builder (tmp, model, monkeypatch) -> argv, words the message must contain)
CASES: dict[str, tuple[Callable, str]] = {
    "deep problem file": (lambda t, m, mp: [*EVAL[:3], "--problems", str(_write(t, "deep.jsonl", DEEP))],
                          "deeper than 64"),
    "deep neuron-set selection": (lambda t, m, mp: ["ablate", "--model", TINY, "--set",
                                                    str(_set(t, m, selection="DEEP"))], "deeper than 64"),
    "empty units": (lambda t, m, mp: ["ablate", "--model", TINY, "--problems", "toy", "--set",
                                      str(_set(t, m, units=[]))], "has no units"),
    "corrupt SAE file": (lambda t, m, mp: [*LOCATE, "--units", f"sae:{_sae_folder(t, 'garbage')}", "--out",
                                           str(t / "o.json")], "is damaged"),
    "truncated SAE file": (lambda t, m, mp: [*LOCATE, "--units", f"sae:{_sae_folder(t, 'truncate')}", "--out",
                                             str(t / "o.json")], "is damaged"),
    "5000-digit answer": (lambda t, m, mp: ["problems", "--source", str(_write(
        t, "big.jsonl", json.dumps({"question": "Q?", "answer": "9" * 5000}) + "\n"))], "5,000 digits"),
    "steps as text": (lambda t, m, mp: ["train", "--config", str(_config(t, steps="10"))], "steps must be a whole"),
    "steps null": (lambda t, m, mp: ["train", "--config", str(_config(t, steps=None))], "steps must be set"),
    "config not an object": (lambda t, m, mp: ["train", "--config", str(_write(t, "c.json", "[1]"))],
                             "must be a JSON object"),
    "--layers a": (lambda t, m, mp: [*LOCATE, "--layers", "a", "--out", str(t / "o.json")], "layer numbers"),
    "--layers 7": (lambda t, m, mp: [*LOCATE, "--layers", "7", "--out", str(t / "o.json")], "layers 0-1"),
    "--top-k -1": (lambda t, m, mp: [*LOCATE, "--top-k", "-1", "--out", str(t / "o.json")], "at least 1"),
    "--top-k 0": (lambda t, m, mp: [*LOCATE, "--top-k", "0", "--out", str(t / "o.json")], "at least 1"),
    "--random 0": (lambda t, m, mp: ["ablate", "--set", str(_set(t, m)), "--random", "0"], "at least 1"),
    "--random -3": (lambda t, m, mp: ["ablate", "--set", str(_set(t, m)), "--random", "-3"], "at least 1"),
    "--max-length 1": (lambda t, m, mp: [*TRAIN, "--max-length", "1", "--out-dir", str(t / "r")],
                       "max_length must be >= 8"),
    "--max-length above the model's context": (lambda t, m, mp: [*TRAIN, "--max-length", "1000", "--out-dir",
                                                                  str(t / "r")],
                                                "max_length 1000 exceeds the model's context of 256 tokens"),
    "--last-k above the blocks": (lambda t, m, mp: [*TRAIN, "--last-k", "5", "--out-dir", str(t / "r")],
                                  "last_k 5 exceeds the model's 2 blocks"),
    "--max-length shorter than a prompt": (lambda t, m, mp: [*TRAIN, "--max-length", "9", "--out-dir",
                                                              str(t / "r")], "raise max_length"),
    "pickle-only model folder": (lambda t, m, mp: [*EVAL[:1], "--model", str(_pickle_folder(t)), "--problems",
                                                   "toy"], "never loads"),
    "output is a folder": (lambda t, m, mp: [*LOCATE, "--out", str(t)], "is a folder"),
    "output under a file": (lambda t, m, mp: [*EVAL, "--out", str(_write(t, "f", "x") / "r.csv")], "is a file"),
    "full disk": (lambda t, m, mp: (_full_disk(mp), [*EVAL, "--out", str(t / "r.csv")])[1],
                  "No space left on device"),
    "surrogate in a set label": (lambda t, m, mp: ["ablate", "--set", str(_write(
        t, "s.json", NeuronSet.create([Unit.neuron(1, 2)], m).to_json().replace(
            '"index": 2', '"index": 2, "label": "\\ud800"')))], "surrogate"),
    "pairs file not UTF-8": (lambda t, m, mp: [*TRAIN, "--pairs", str(Path(t / "p.jsonl")), "--out-dir",
                                               str(t / "r")] if (t / "p.jsonl").write_bytes(b"\xff\xfe") else [],
                             "not UTF-8"),
    "--resume on a file": (lambda t, m, mp: ["train", "--resume", str(_write(t, "f", "x"))], "is a file"),
    "--out-dir is a file": (lambda t, m, mp: [*TRAIN, "--out-dir", str(_write(t, "f", "x"))], "is a file"),
}
if not torch.cuda.is_available():
    CASES["--device cuda without CUDA"] = (lambda t, m, mp: [*EVAL, "--device", "cuda"], "CUDA is not available")


@pytest.mark.parametrize("name", list(CASES))
def test_failure_is_one_line_with_exit_code_2(name, tmp_path, tiny, monkeypatch, capsys):
    build, words = CASES[name]
    argv = build(tmp_path, tiny, monkeypatch)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("yfpo: error:") and words in last, err[-800:]
    assert "Traceback" not in err and len(last) <= 500


def test_locate_checks_its_output_before_working(tmp_path, capsys):
    assert main([*LOCATE, "--out", str(tmp_path)]) == 2
    assert not list(tmp_path.glob("*.scores.*"))  # refused in a second, nothing computed or written


def test_train_refuses_a_max_length_above_the_context_before_any_work(tmp_path, capsys):
    """The core's rule (training.config.sequence_length), applied as soon as the model is known: no pairs,
    no metrics; the run folder says why it failed. The default max_length (320) is lowered to the context."""
    from yfpo_core.runs import RunDir

    run = tmp_path / "r"
    assert main([*TRAIN, "--max-length", "257", "--out-dir", str(run)]) == 2
    assert "set max_length to 256 or less" in capsys.readouterr().err
    status = RunDir(run).status()
    assert status["state"] == "failed" and "exceeds the model's context of 256" in status["error"]
    assert RunDir(run).metrics() == [] and RunDir(run).units_doc() == {} and RunDir(run).summary() == {}
    assert main([*TRAIN, "--out-dir", str(tmp_path / "default")]) == 0  # 320 by default: trains with 256
