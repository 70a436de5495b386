"""Atomic file and folder writes: a reader (the app, a resumed run, another process) sees the old file or the
new one, never half of one, and a crash mid-write keeps the old file.

The data goes to a temporary file in the same folder (so the final ``os.replace`` is a rename on one file
system), is flushed and fsynced, gets the permissions a plain ``open`` would give (``mkstemp`` makes files
private to their owner, which would surprise whoever shares a run or a neuron set), then replaces the target.
"""

from __future__ import annotations

import os
import tempfile
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def plain_permissions(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Give a ``mkstemp``/``mkdtemp`` result the mode ``open``/``mkdir`` would have given it."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Make ``path`` by calling ``write(temporary_path)`` then renaming; returns ``path``.

    ``write`` may open the temporary path itself (safetensors' ``save_file`` does) or be any writer.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        plain_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_dir(path: str | os.PathLike[str], write: Callable[[Path], T], *, plain: bool = False) -> T:
    """Make the folder ``path`` by calling ``write(temporary_folder)`` in a sibling temporary folder, then
    renaming it over ``path`` (an older folder there is removed first); returns what ``write`` returned.

    A crash or an error in ``write`` leaves no half-written folder at ``path``. With ``plain``, the folder
    gets the permissions ``mkdir`` would have given it (``mkdtemp`` makes it private to its owner)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    if plain:
        plain_permissions(tmp, directory=True)
    try:
        result = write(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result
