"""The model cache is published atomically and a damaged entry is detected."""

from pathlib import Path

import pytest

from yfpo_core.models import smollm2
from yfpo_core.models.cache import build_entry, read_manifest, verify_entry


def _builder(folder: Path) -> dict:
    (folder / "tl").mkdir()
    (folder / "tl" / "weights.bin").write_bytes(b"x" * 1000)
    return {"format": 1}


def test_build_writes_manifest_with_sizes_and_digests(tmp_path):
    entry = tmp_path / "model"
    build_entry(entry, _builder)
    manifest = read_manifest(entry)
    assert manifest["files"]["tl/weights.bin"]["size"] == 1000
    assert len(manifest["files"]["tl/weights.bin"]["sha256"]) == 64
    assert verify_entry(entry, {"format": 1}, full=True) is None


def test_truncated_corrupt_or_stale_entries_are_rejected(tmp_path):
    entry = tmp_path / "model"
    build_entry(entry, _builder)
    assert "format changed" in verify_entry(entry, {"format": 2})
    weights = entry / "tl" / "weights.bin"
    weights.write_bytes(b"y" * 1000)  # same size, other bytes: only the full check sees it
    assert verify_entry(entry, {"format": 1}) is None
    assert "checksum" in verify_entry(entry, {"format": 1}, full=True)
    weights.write_bytes(b"x" * 10)
    assert "size" in verify_entry(entry, {"format": 1})
    weights.unlink()
    assert "missing file" in verify_entry(entry, {"format": 1})
    (entry / "manifest.json").unlink()
    assert "manifest" in verify_entry(entry, {"format": 1})


def test_failed_build_leaves_no_entry_and_no_temp_folder(tmp_path):
    entry = tmp_path / "model"

    def broken(folder: Path) -> dict:
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        build_entry(entry, broken)
    assert not entry.exists()
    assert list(tmp_path.iterdir()) == []


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
