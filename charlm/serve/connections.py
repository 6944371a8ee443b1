"""Bounds on what one HTTP connection may hold before its request is whole, which uvicorn leaves open.

uvicorn's own bounds are a keep-alive timeout between requests and, on h11 only, a header size; on
httptools (what `charlm[serve]` installs) a connection that sends nothing, or its headers a byte at a time
(slowloris), or a body shorter than its Content-Length, is held for good, and a header of 10 MB is
read whole. So `charlm serve` speaks HTTP with `BoundedHttp`: a request must arrive whole within
`REQUEST_SECONDS` of its connection or of its first byte, and its line and headers within `MAX_HEAD`
bytes. Once the request is whole, nothing here bounds its answer (a stream runs as long as it runs).
A request the parser refuses (a control byte in its line, a head over the bound) is answered in the
API's error shape, not uvicorn's plain text: no option of uvicorn's sets that body. It is answered in its
turn: the requests pipelined before it on its connection are answered whole first (uvicorn writes its
400 at once and closes the connection, and their answers are lost).

This reaches into `HttpToolsProtocol`'s internals: `cycle` (the request being read), `pipeline` (the
requests waiting their turn, `(cycle, app)` pairs), a cycle's `more_body` and `response_complete`, and the
parser callbacks and `send_400_response` it overrides. Each is the same in uvicorn 0.29, setup.cfg's
lower bound, and 0.55.
"""

from __future__ import annotations

import asyncio
import collections
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .api_error import APIError

REQUEST_SECONDS = 60.0  # a request's line, headers and body, from its connection or its first byte
MAX_HEAD = 1 << 16  # bytes of a request's line and headers (gunicorn takes 8,190 a line, 100 lines)


class HeadTooLarge(Exception):
    """Raised in httptools' callback, which hands it to uvicorn as a parser error: a 400, then closed."""


class BoundedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request to arrive and a bound on its head."""

    deadline: asyncio.TimerHandle | None = None
    head = 0
    refusal = ""  # why the request was refused, where this class refused it (the parser says nothing)
    held: bytes | None = None  # the 400 of a refused request, written once the requests before it are answered

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.owed: list[RequestResponseCycle] = []  # the requests read on this connection, not yet answered
        self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.held is None:  # after a refused request nothing more is read: its 400 ends the connection
            super().data_received(data)

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
            self.refusal = (
                f"the request line and headers are over {MAX_HEAD:,} bytes; send a shorter URL or fewer headers"
            )
            raise HeadTooLarge(self.refusal)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.owed = [cycle for cycle in self.owed if not cycle.response_complete] + [self.cycle]

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request its parser refused ("Invalid HTTP request received.", plain
        text), as every other error is: OpenAI's JSON error body, written once the requests pipelined
        before it are answered (`answer_refusal`). The connection is closed after it."""
        message = self.refusal or "the request is not valid HTTP/1.1 (its line or headers cannot be read)"
        body = json.dumps(APIError(400, message, code="invalid_http_request").body()).encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body)]
        self.held = b"".join([*head, b"connection: close\r\n\r\n", body])
        self.disarm()  # the refused request never arrives whole: its deadline would cut the answers before it
        if self.owed and self.owed[-1].more_body and not self.owed[-1].response_complete:  # refused in its body
            refused = self.owed.pop()  # not owed an answer, and not run if it waits in the pipeline
            self.pipeline = collections.deque(entry for entry in self.pipeline if entry[0] is not refused)
        self.answer_refusal()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.answer_refusal()

    def answer_refusal(self) -> None:
        """The held 400 written and the connection closed, once every request before it is answered."""
        answered = all(cycle.response_complete for cycle in self.owed)
        if self.held is not None and answered and not self.transport.is_closing():
            self.transport.write(self.held)
            self.transport.close()

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
