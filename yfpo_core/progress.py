"""Progress reporting that works the same in the CLI (tqdm), the app (st.progress) and tests (a list).

Long-running core functions take ``progress: ProgressCallback | None``. They call it with
``(done, total, message)`` after each unit of work (and with ``done = 0`` when a part begins, so that a
wait never shows an old message); the caller decides how to show it. The core never imports a UI
library, so the app passes a callback that updates a Streamlit widget.

Two helpers compose the reports of a job made of parts: :func:`phase` names one phase of a preparation
(each phase keeps its own count: "reference log-probs: 3/8"), :func:`part` places one part's count inside
the job's total (the ablation check counts problems across all its unit sets).
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


def phase(progress: ProgressCallback | None, name: str, total: int = 0) -> ProgressCallback | None:
    """The callback of one phase ``name`` of a longer job: its reports keep their own count and get the
    phase's name in front of their message (``"pairs: problem 12"``). Reports ``(0, total, name)`` at once,
    so that the phase shows from its first second, before its first unit of work is done."""
    if progress is None:
        return None
    report(progress, 0, total, name)

    def callback(done: int, total: int, message: str = "") -> None:
        progress(done, total, f"{name}: {message}" if message and message != name else name)

    return callback


def part(progress: ProgressCallback | None, start: int, total: int, label: str = "") -> ProgressCallback | None:
    """The callback of one part of a job counted in ``total`` units, the part's units starting after
    ``start``: the part's ``(done, n, message)`` is reported as ``(start + done, total, "label: message")``.
    Reports ``(start, total, label)`` at once."""
    if progress is None:
        return None
    report(progress, start, total, label)

    def callback(done: int, n: int, message: str = "") -> None:
        text = f"{label}: {message}" if label and message else label or message
        progress(start + min(done, n), total, text)

    return callback


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
