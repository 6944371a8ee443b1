"""The error an answer of charlm serve carries: `APIError`, OpenAI's error body with its HTTP status,
and a request's values as its message echoes them (`shown`: cut, `printable`: one line UTF-8 can carry).
Every part of the server raises it; app.py's handler, the middleware and connections.py answer it."""

from __future__ import annotations

import unicodedata
from typing import Any


class APIError(Exception):
    """An error response: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, kind: str = ""):
        message, param = printable(message), None if param is None else printable(param)
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        # OpenAI's types: its 401 is an invalid_request_error too (code invalid_api_key)
        self.kind = kind or {429: "rate_limit_error"}.get(
            status, "invalid_request_error" if status < 500 else "server_error"
        )

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


SHOWN_DIGITS = 20  # of a long integer an error message echoes (JSON gives Python up to 4,300)
SHOWN_CHARACTERS = 60  # of a long text an error message echoes (a model's id, a field's name, a header)


def shown(value: Any) -> str:
    """`value` as an error message echoes it: a long one cut, saying how long it was, so that an answer
    is never a request's 4,300 digits or megabytes of a name sent back."""
    text = str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        digits = len(text.lstrip("-"))
        if digits > SHOWN_DIGITS:
            return f"{text[: len(text) - digits + SHOWN_DIGITS]}... ({digits:,} digits)"
        return text
    if len(text) > SHOWN_CHARACTERS:
        return f"{text[:SHOWN_CHARACTERS]}... ({len(text):,} characters)"
    return text


def printable(text: str) -> str:
    """`text` as one line that UTF-8 can carry and that shows what it holds: a lone surrogate (JSON allows
    "\\ud800") echoed from a request is written as its escape, never an encoding error, and so is a control
    or format character (a newline, U+202E that shows what follows backwards, a zero-width space), never a
    message split in two or disguised. Spaces of other widths (U+3000) are shown as they are."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or unicodedata.category(c) == "Zs" else ascii(c)[1:-1] for c in text)
