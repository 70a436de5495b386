"""Errors meant to be read by a user.

Every :class:`YfpoError` message says what is wrong and how to fix it, in one or two sentences. The CLI
prints it without a traceback and the app shows it with ``st.error``; anything that is *not* a
``YfpoError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class YfpoError(Exception):
    """Base class for user-facing errors: the message names the problem and the fix."""


class ModelUnavailableError(YfpoError):
    """A model cannot be loaded (unknown name, hub unreachable, missing package or cache)."""


class ProblemDataError(YfpoError):
    """A problem set cannot be loaded (missing file or column, empty file, unparseable answer)."""
