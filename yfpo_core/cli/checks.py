"""Argument checks shared by the commands: counts, layer lists and output paths, refused before any work.

An output path that cannot be written is found here, in a second, not after an hour of attribution; the
write itself is still atomic (:mod:`yfpo_core.atomic`), and a disk that fills up meanwhile is reported by
the CLI's error policy like any other ``OSError``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from yfpo_core.errors import YfpoError


def count(minimum: int):
    """An argparse ``type`` for a whole number ``>= minimum`` (``--top-k 0`` and ``--random -3`` are refused)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def parse_layers(text: str | None, n_layers: int | None = None) -> list[int] | None:
    """``"26,27"`` as ``[26, 27]`` (``None`` for all layers), checked against ``n_layers`` when given."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
        raise YfpoError(f"--layers {text[:40]!r}: write layer numbers separated by commas, like 26,27,28,29")
    layers = [int(p) for p in parts]
    if n_layers is not None:
        outside = [layer for layer in layers if layer >= n_layers]
        if outside:
            raise YfpoError(f"--layers {text[:40]}: the model has layers 0-{n_layers - 1}, so {outside[0]} does not "
                            "exist; pick layers in that range")
    return layers


def check_output(path: Path | None, option: str = "--out") -> None:
    """Refuse an output path that is a folder, or whose folder cannot be created or written, before work."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise YfpoError(f"{option} {path} is a folder; give a file name inside it, like {path / 'out.json'}")
    folder = path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise YfpoError(f"{option} {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise YfpoError(f"{option} {path}: the folder {existing} is not writable; choose a folder you can write to")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(folder, os.W_OK):
        raise YfpoError(f"{option} {path} cannot be replaced (read-only); choose another path")
