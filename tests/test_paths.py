"""Where user data lives (yfpo_core.paths): never in the repository."""

from __future__ import annotations

from pathlib import Path


def test_runs_live_under_the_user_data_directory_never_the_repository(monkeypatch, tmp_path):
    from yfpo_core.paths import runs_dir
    from yfpo_core.runs import new_run_dir

    monkeypatch.delenv("YFPO_RUNS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert runs_dir() == tmp_path / "data" / "yfpo" / "runs"
    made = new_run_dir("x")
    assert made.parent == tmp_path / "data" / "yfpo" / "runs" and not (tmp_path / "runs").exists()
    monkeypatch.delenv("XDG_DATA_HOME")
    assert runs_dir() == Path.home() / ".local" / "share" / "yfpo" / "runs"
    monkeypatch.setenv("YFPO_RUNS_DIR", str(tmp_path / "mine"))
    assert runs_dir() == tmp_path / "mine"
