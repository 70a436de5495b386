"""A folder cache for converted models: built in a temporary folder, published by one atomic rename.

A cache entry is valid only if its ``manifest.json`` exists (it is written last, inside the temporary
folder) and every file it lists has the recorded size. A half-written or truncated entry therefore
never looks valid; it is deleted and rebuilt. ``verify_entry(..., full=True)`` also checks SHA-256
digests, for ``yfpo models --verify``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(entry: Path) -> dict[str, Any] | None:
    try:
        return json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def verify_entry(entry: Path, expected: dict[str, Any], full: bool = False) -> str | None:
    """``None`` if the entry is usable, else a short reason (for logs and ``yfpo models --verify``).

    Args:
        entry: The cache folder.
        expected: Manifest keys that must match (format version, source file identity).
        full: Also compare SHA-256 digests of every file (slow for large weights).
    """
    manifest = read_manifest(entry)
    if manifest is None:
        return "missing or unreadable manifest"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"{key} changed ({manifest.get(key)!r} -> {value!r})"
    for rel, info in manifest.get("files", {}).items():
        path = entry / rel
        if not path.is_file():
            return f"missing file {rel}"
        if path.stat().st_size != info["size"]:
            return f"size of {rel} differs from the manifest (truncated or replaced)"
        if full and file_sha256(path) != info["sha256"]:
            return f"checksum of {rel} differs from the manifest (corrupted)"
    return None


def build_entry(entry: Path, build: Callable[[Path], dict[str, Any]]) -> None:
    """Run ``build(tmp_folder)`` (which writes the files and returns extra manifest fields), write the
    manifest with sizes and digests of every file, then atomically move the folder to ``entry``."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        extra = build(tmp)
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / MANIFEST).write_text(json.dumps({**extra, "files": files}, indent=2))
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
