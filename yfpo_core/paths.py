"""Where the workbench keeps files that are not in git: converted models, generated problems, runs.

Rebuildable files (converted models, generated problems) live under one user cache directory so that a user
can see (and delete) them in one place; ``YFPO_CACHE_DIR`` overrides it, which tests use to get a private,
empty cache. Training runs are the user's data, not a cache: they live under the user data directory
(``YFPO_RUNS_DIR`` overrides it). Nothing is written into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "YFPO_CACHE_DIR"


def _user_dir(override_var: str, xdg_var: str, default_base: Path, *parts: str) -> Path:
    """``$override_var`` if set, else ``$xdg_var/<parts>``, else ``default_base/<parts>`` (XDG base dirs)."""
    override = os.environ.get(override_var)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get(xdg_var)
    return (Path(xdg).expanduser() if xdg else default_base).joinpath(*parts)


def cache_dir() -> Path:
    """The root cache directory: ``$YFPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/yfpo``, else ``~/.cache/yfpo``."""
    return _user_dir(CACHE_ENV_VAR, "XDG_CACHE_HOME", Path.home() / ".cache", "yfpo")


RUNS_ENV_VAR = "YFPO_RUNS_DIR"


def runs_dir() -> Path:
    """Training runs: ``$YFPO_RUNS_DIR``, else ``$XDG_DATA_HOME/yfpo/runs``, else ``~/.local/share/yfpo/runs``."""
    return _user_dir(RUNS_ENV_VAR, "XDG_DATA_HOME", Path.home() / ".local" / "share", "yfpo", "runs")


def models_cache_dir() -> Path:
    """Converted model weights (safetensors) and tokenizers, one folder per model."""
    return cache_dir() / "models"


def problems_cache_dir() -> Path:
    """Generated problem sets (GSM-Symbolic variants), one JSONL file per generation setting."""
    return cache_dir() / "problems"


def package_assets_dir() -> Path:
    """Small assets that ship inside the repository (the trained toy model)."""
    return Path(__file__).resolve().parent / "assets"
