"""Plain-text tables for the terminal (pandas does the layout), shared by every command.

Text from files (questions, labels, ids) may hold escape sequences that would move the cursor, recolour or
retitle the terminal: every cell goes through :func:`yfpo_core.errors.printable` before it is printed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def shorten(text: str, width: int) -> str:
    from yfpo_core.errors import printable

    text = printable(" ".join(str(text).split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                max_width: int = 60) -> None:
    """Print ``rows`` as an aligned table; long cells are shortened to ``max_width`` characters."""
    import pandas as pd

    if not rows:
        print("(no rows)")
        return
    frame = pd.DataFrame(list(rows), columns=list(columns) if columns else None)
    for column in frame.columns:  # every column: pandas 3 gives text its own dtype, not object
        frame[column] = frame[column].map(lambda v: shorten(v, max_width) if isinstance(v, str) else v)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", max_width,
                           "display.float_format", "{:.3f}".format):
        print(frame.to_string(index=False))


def print_summary(title: str, values: Mapping[str, float]) -> None:
    from yfpo_core.errors import printable

    print(f"\n{printable(title)}")
    for key, value in values.items():
        shown = f"{value:.4f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:g}"
        print(f"  {key:<20} {shown}")
