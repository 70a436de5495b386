"""Strip outputs, execution counts and run-time metadata from notebooks, in place, before committing them.

    .venv/bin/python scripts/strip_notebooks.py              # every notebooks/*.ipynb
    .venv/bin/python scripts/strip_notebooks.py a.ipynb ...  # these files
    .venv/bin/python scripts/strip_notebooks.py --check      # exit 1 if any would change (CI, pre-commit)

Only what a run adds goes: cell outputs, execution counts, the per-cell ``execution`` timing and
``collapsed``/``scrolled`` view state, the notebook's ``widgets`` state and the kernel's
``language_info`` details (reduced to the language name). Sources, cell ids and the
kernelspec stay, so a stripped notebook diffs cleanly against the committed one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CELL_KEYS = ("execution", "collapsed", "scrolled", "ExecuteTime")


def strip(nb: nbformat.NotebookNode) -> bool:
    """Strip ``nb`` in place; returns whether anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                changed = True
            cell.outputs = []
            cell.execution_count = None
        for key in CELL_KEYS:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    if "widgets" in nb.metadata:
        del nb.metadata["widgets"]
        changed = True
    if nb.metadata.get("language_info", {"name": "python"}) != {"name": "python"}:
        nb.metadata["language_info"] = {"name": "python"}  # the kernel fills in its version on every run
        changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook has outputs")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if strip(nb):
            dirty.append(path)
            if not args.check:
                text = nbformat.writes(nb)
                path.write_text(text if text.endswith("\n") else text + "\n")
    for path in dirty:
        print(f"{'has outputs' if args.check else 'stripped'}: {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
