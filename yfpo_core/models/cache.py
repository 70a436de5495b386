"""A folder cache for converted models: built in a temporary folder, published by one atomic rename.

A cache entry is valid only if its ``manifest.json`` exists (it is written last, inside the temporary
folder), every file it lists has the recorded size and the recorded SHA-256 digest. A half-written,
truncated or overwritten entry therefore never looks valid; it is deleted and rebuilt.

Sizes are checked before a load; digests are checked on every load too, by :class:`DigestCheck` in a
background thread while the weights are read (``hashlib`` and file reads release the GIL, so on two cores
the check adds little to the load; ``bench/load.py`` measures it). Size and mtime would not catch an
overwrite that keeps the size, and sampling blocks would miss a damaged block: only a digest of every
byte is as strong as the manifest. ``verify_entry(..., full=True)`` checks every file's digest, for
``yfpo models --verify``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from yfpo_core.atomic import atomic_dir

MANIFEST = "manifest.json"


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def digest_problem(entry: Path, manifest: dict[str, Any], files: Iterable[str] | None = None) -> str | None:
    """``None`` if every listed file (default: all in the manifest) has its recorded SHA-256, else the reason."""
    recorded = manifest.get("files", {})
    for rel in (files if files is not None else recorded):
        info = recorded.get(rel)
        if info is None:
            return f"{rel} is not in the manifest"
        try:
            if file_sha256(entry / rel) != info.get("sha256"):
                return f"checksum of {rel} differs from the manifest (corrupted or overwritten)"
        except OSError as exc:
            return f"cannot read {rel} ({exc.strerror or exc})"
    return None


class DigestCheck:
    """Checks the digests of some files of an entry in a background thread; :meth:`result` waits for it.

    Start it, load the files meanwhile, then call :meth:`result` before handing the loaded model out."""

    def __init__(self, entry: Path, manifest: dict[str, Any], files: Iterable[str]) -> None:
        self._problem: str | None = None
        self._thread = threading.Thread(target=self._run, args=(entry, manifest, list(files)),
                                        name="yfpo-cache-digest", daemon=True)
        self._thread.start()

    def _run(self, entry: Path, manifest: dict[str, Any], files: list[str]) -> None:
        try:
            self._problem = digest_problem(entry, manifest, files)
        except Exception as exc:  # noqa: BLE001 - reported as a damaged entry, never lost in the thread
            self._problem = f"checksum failed ({type(exc).__name__}: {exc})"

    def result(self) -> str | None:
        self._thread.join()
        return self._problem


def invalidate(entry: Path) -> None:
    """Make the next load rebuild ``entry`` (its manifest goes; files mapped by this process stay readable)."""
    (entry / MANIFEST).unlink(missing_ok=True)


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
    return digest_problem(entry, manifest) if full else None


def build_entry(entry: Path, build: Callable[[Path], dict[str, Any]]) -> None:
    """Run ``build(tmp_folder)`` (which writes the files and returns extra manifest fields), write the
    manifest with sizes and digests of every file, then atomically move the folder to ``entry``."""
    def write(tmp: Path) -> None:
        extra = build(tmp)
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        (tmp / MANIFEST).write_text(json.dumps({**extra, "files": files}, indent=2))

    atomic_dir(entry, write)
