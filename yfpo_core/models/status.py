"""Human-readable state of the built-in models' files, for ``yfpo models`` and the app's sidebar."""

from __future__ import annotations

from yfpo_core.errors import ModelUnavailableError
from yfpo_core.models.cache import read_manifest, verify_entry


def _folder_size_mb(manifest: dict) -> float:
    return sum(f["size"] for f in manifest.get("files", {}).values()) / 1e6


def model_status(verify: bool = False) -> list[str]:
    """One line per built-in model: is it installed, is its cache built and valid, where it lives."""
    return model_status_report(verify)[0]


def model_status_report(verify: bool = False) -> tuple[list[str], list[str]]:
    """(the lines of :func:`model_status`, one line per damaged cache). Every load checks the digests too,
    so "the next load rebuilds it" is what will happen."""
    from yfpo_core.models import smollm2

    lines: list[str] = []
    damaged: list[str] = []
    try:
        gguf = smollm2.locate_gguf()
        entry = smollm2.cache_entry()
        manifest = read_manifest(entry)
        if manifest is None:
            state = f"not converted yet (the first load converts it into {entry}, about a minute)"
        else:
            problem = verify_entry(entry, smollm2.expected_manifest(gguf), full=verify)
            state = (f"cache OK{' (checksums verified)' if verify else ''}: {entry} ({_folder_size_mb(manifest):.0f} MB)"
                     if problem is None else f"cache invalid ({problem}); the next load rebuilds it")
            if problem is not None:
                damaged.append(f"{smollm2.NAME}: the cache in {entry} is damaged ({problem}); it is never used: "
                               "the next load rebuilds it (about a minute)")
        lines.append(f"{smollm2.NAME}: GGUF {gguf} ; {state}")
    except ModelUnavailableError as exc:
        lines.append(f"{smollm2.NAME}: unavailable: {exc}")
    try:
        from yfpo_core.models.toy import resolve_toy_folder

        lines.append(f"toy-arith: weights in {resolve_toy_folder()}")
    except (ModelUnavailableError, ImportError) as exc:
        lines.append(f"toy-arith: unavailable: {exc}")
    return lines, damaged
