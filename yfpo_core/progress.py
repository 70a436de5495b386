"""Progress reporting that works the same in the CLI (tqdm), the app (st.progress) and tests (a list).

Long-running core functions take ``progress: ProgressCallback | None``. They call it with
``(done, total, message)`` after each unit of work; the caller decides how to show it. The core never
imports a UI library, so the app passes a callback that updates a Streamlit widget.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class ProgressCallback(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


def report(progress: ProgressCallback | None, done: int, total: int, message: str = "") -> None:
    """Call ``progress`` if there is one; a no-op otherwise, so callers need no ``if``."""
    if progress is not None:
        progress(done, total, message)


@contextmanager
def tqdm_progress(description: str, unit: str = "it", disable: bool | None = None) -> Iterator[ProgressCallback]:
    """A :class:`ProgressCallback` that draws a tqdm bar on stderr (for the CLI).

    The bar is created lazily on the first call, when the total is known.
    """
    from tqdm.auto import tqdm

    bar: list = []

    def callback(done: int, total: int, message: str = "") -> None:
        if not bar:
            bar.append(tqdm(total=total, desc=description, unit=unit, file=sys.stderr, disable=disable,
                            dynamic_ncols=True))
        b = bar[0]
        if b.total != total:
            b.total = total
        b.n = done
        if message:
            b.set_postfix_str(message, refresh=False)
        b.refresh()

    try:
        yield callback
    finally:
        if bar:
            bar[0].close()
