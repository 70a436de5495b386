"""Fixtures of the model tests: the embedded model's cache logic with the GGUF conversion and the load faked."""

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

    def fake_load(entry: Path, device: str, progress=None):
        calls["load"] += 1
        if calls["fail_load"]:
            calls["fail_load"] = False
            raise ValueError("header is garbage")
        return ("loaded", (entry / "tl" / "model.safetensors").stat().st_size)

    monkeypatch.setattr(smollm2, "cache_builder", fake_build)
    monkeypatch.setattr(smollm2, "load_cached", fake_load)
    return calls
