"""Errors meant to be read by a user, and the one way every front end turns an exception into words.

Every :class:`YfpoError` message says what is wrong and how to fix it, in one or two sentences. The CLI
prints it without a traceback and the app shows it with ``st.error``; anything that is *not* a
``YfpoError`` is a bug and keeps its traceback, with three exceptions that :func:`user_message` also
words, because their cause is the user's environment rather than the code: an ``OSError`` that names a
file (a folder where a file should be, a read-only folder, a full disk), a ``RecursionError`` (an input
nested too deeply to read) and a ``MemoryError``.
"""

from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 400  # "nothing over a few hundred characters": longer messages are cut in the middle

# C0 controls except tab/newline, DEL, C1 controls: what lets a file move the cursor or recolour a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class YfpoError(Exception):
    """Base class for user-facing errors: the message names the problem and the fix."""


class ModelUnavailableError(YfpoError):
    """A model cannot be loaded (unknown name, hub unreachable, missing package or cache)."""


class ProblemDataError(YfpoError):
    """A problem set cannot be loaded (missing file or column, empty file, unparseable answer)."""


def printable(text: str) -> str:
    """``text`` with control characters (escape sequences included) shown as ``\\x1b``-style escapes and lone
    surrogates replaced, so that printing user data can neither drive the terminal nor fail to encode."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, keeping its start and end (where the fix usually is)."""
    if len(text) <= limit:
        return text
    marker = f" [... {len(text) - limit + 20:,} characters cut ...] "
    keep = max(limit - len(marker), 20)
    head = keep * 2 // 3
    return text[:head] + marker + text[len(text) - (keep - head):]


def user_message(exc: BaseException) -> str | None:
    """The one-line, bounded, printable message for an error a user can fix, or ``None`` for a bug.

    Used by the CLI (``yfpo: error: <message>``, exit 2) and by the app (``st.error``), so both say the same.
    """
    if isinstance(exc, YfpoError):
        text = str(exc)
    elif isinstance(exc, RecursionError):
        text = ("an input is nested too deeply to read (JSON lists or objects inside each other thousands of "
                "levels deep); fix the file so it has the documented flat structure")
    elif isinstance(exc, MemoryError):
        text = "ran out of memory; use a smaller input (--limit) or a machine with more memory"
    elif isinstance(exc, OSError) and (exc.filename is not None or exc.strerror):
        what = exc.strerror or type(exc).__name__
        where = f" {exc.filename}" if exc.filename is not None else ""
        text = (f"cannot access{where}: {what}; check that the path exists, is a file where a file is expected "
                "(not a folder), that you may write there and that the disk has space")
    else:
        return None
    return clip(printable(" ".join(text.split())))
