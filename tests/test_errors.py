"""Errors meant for a user (yfpo_core.errors): one bounded, printable line; bugs keep their traceback."""

from __future__ import annotations

from yfpo_core.errors import YfpoError


def test_user_messages_are_one_bounded_printable_line():
    from yfpo_core.errors import clip, printable, user_message

    message = user_message(YfpoError("bad\nthing \x1b[31m" + "x" * 10_000 + " fix: do y"))
    assert "\n" not in message and "\x1b" not in message and len(message) <= 400
    assert message.startswith("bad thing") and message.endswith("fix: do y")  # both ends survive
    assert user_message(ValueError("a bug")) is None  # bugs keep their traceback
    assert clip("short") == "short" and printable("a\ud800b") == "a\\ud800b"
