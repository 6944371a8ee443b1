"""Bounds on what one HTTP connection may hold before its request is whole, which uvicorn leaves open.

uvicorn's own bounds are a keep-alive timeout between requests and, on h11 only, a header size; on
httptools (what `charlm[serve]` installs) a connection that sends nothing, or its headers a byte at a time
(slowloris), or a body shorter than its Content-Length, is held for good, and a header of 10 MB is
read whole. So `charlm serve` speaks HTTP with `BoundedHttp`: a request must arrive whole within
`REQUEST_SECONDS` of its connection or of its first byte, and its line and headers within `MAX_HEAD`
bytes. Once the request is whole, nothing here bounds its answer (a stream runs as long as it runs).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REQUEST_SECONDS = 60.0  # a request's line, headers and body, from its connection or its first byte
MAX_HEAD = 1 << 16  # bytes of a request's line and headers (gunicorn takes 8,190 a line, 100 lines)


class HeadTooLarge(Exception):
    """Raised in httptools' callback, which hands it to uvicorn as a parser error: a 400, then closed."""


class BoundedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request to arrive and a bound on its head."""

    deadline: asyncio.TimerHandle | None = None
    head = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head = 0
        if self.deadline is None:  # a request on a kept-alive connection: its own time
            self.arm()

    def on_url(self, url: bytes) -> None:
        self.count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count(len(name) + len(value))
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        self.disarm()
        super().on_message_complete()

    def count(self, size: int) -> None:
        self.head += size
        if self.head > MAX_HEAD:
            raise HeadTooLarge(f"request line and headers over {MAX_HEAD:,} bytes")

    def arm(self) -> None:
        self.disarm()
        self.deadline = self.loop.call_later(REQUEST_SECONDS, self.too_slow)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def too_slow(self) -> None:
        """The request did not arrive whole in time: the connection is closed (a request being read gets
        its disconnect, as when its client hangs up)."""
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.close()
