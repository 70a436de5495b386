"""Atomic writes: the old file survives a failed write, no temporary file is left, permissions are plain."""

from __future__ import annotations

import os
import stat

import pytest

from yfpo_core.atomic import atomic_write, atomic_write_text


def test_replaces_with_plain_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "sub" / "a.json", "new")
    finally:
        os.umask(old)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # what open() would give, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")

    def half_then_crash(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("ha")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
