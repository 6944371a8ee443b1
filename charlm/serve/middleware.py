"""The ASGI middleware around the routes: what every answer gets (a count for /metrics, an `x-request-id`),
what no route should see (a POST of a web page of another origin, a request to a name DNS rebinding gave
this machine), and HEAD answered as GET is. `create_app` (app.py) stacks them.
"""

from __future__ import annotations

import ipaddress
import uuid
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_error import APIError, shown
from .metrics import Metrics


class EveryAnswer:
    """ASGI middleware that sees every answer start, errors and streams included: it counts the answer
    by endpoint and status, for /metrics, and gives it an `x-request-id` header, as OpenAI's API does
    (the openai client reads it as `response._request_id` and an error's `request_id`)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.request(endpoint(scope["path"]), message["status"])
                request_id = f"req_{uuid.uuid4().hex}".encode()
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        return await self.app(scope, receive, answering)


class OtherOrigins:
    """ASGI middleware: a POST that a web page of another origin sent (its `Origin` header names neither
    this server's host nor an origin of --allow-origin) is refused before it runs. A browser sends a
    text/plain or form POST to any address without asking first (no CORS preflight), and the server reads
    any body as JSON: any page a user opened could make a server on their machine generate, unasked (the
    answer unread, the rows taken). A client that is no browser sends no `Origin`."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            origin = headers.get(b"origin", b"").decode("latin-1")
            own = urlsplit(origin).netloc == headers.get(b"host", b"").decode("latin-1")
            if origin and not own and "*" not in self.allowed and origin not in self.allowed:
                error = APIError(
                    403, f"a web page of {shown(origin)} may not call this server; to let it, start charlm serve "
                    f"with --allow-origin {shown(origin)}", code="origin_not_allowed",
                )  # fmt: skip
                return await JSONResponse(error.body(), status_code=403)(scope, receive, send)
        return await self.app(scope, receive, send)


class OtherHosts:
    """ASGI middleware for a server bound to a loopback address: a request whose `Host` names neither this
    machine (localhost, a name under .localhost, a loopback address, any port) nor the host of an
    --allow-origin origin is refused. DNS rebinding: a page of an attacker's domain whose name then
    resolves to 127.0.0.1 calls this server as its own origin (`Origin` and `Host` both that domain), which
    no check of `Origin` tells from the served page; only the name the browser used gives it away."""

    def __init__(self, app: ASGIApp, listening_on: str, allowed: list[str]) -> None:
        self.app, self.listening_on = app, listening_on
        self.allowed = {urlsplit(origin).hostname for origin in allowed if origin != "*"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.arrived_on_loopback(scope):
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host and not self.named_here(host):  # no Host at all: no browser sent it (HTTP/1.0)
                error = APIError(
                    403, f"this server listens on {self.listening_on} and answers to localhost or 127.0.0.1, not "
                    f"to the name {shown(host)} (what a web page of another domain reaching it by DNS rebinding "
                    f"sends); to reach it by that name, start charlm serve with --allow-origin http://{shown(host)}",
                    code="host_not_allowed",
                )  # fmt: skip
                return await JSONResponse(error.body(), status_code=403)(scope, receive, send)
        return await self.app(scope, receive, send)

    @staticmethod
    def arrived_on_loopback(scope: Scope) -> bool:
        """Whether the request came to a loopback address of this machine, where a rebound page's requests
        come: not one of FastAPI's TestClient (whose Host is `testserver`), which comes over no network."""
        server = scope.get("server")
        return server is None or loopback(str(server[0]))

    def named_here(self, host: str) -> bool:
        try:
            name = urlsplit(f"//{host}").hostname or ""
        except ValueError:  # "[::1" and the like: no name at all
            return False
        return loopback(name) or name in self.allowed


def loopback(host: str) -> bool:
    """Whether `host`, a name or an address, can only be this machine: localhost, a name under .localhost
    (RFC 6761: browsers resolve those to loopback themselves), a loopback address."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HeadAsGet:
    """ASGI middleware: HEAD is answered as GET is, headers only (uptime checkers ask `HEAD /health`);
    FastAPI's GET routes alone answered it 405. A path without GET still answers HEAD 405."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        return await self.app({**scope, "method": "GET"}, receive, headers_only)


ENDPOINTS = {
    "/", "/health", "/metrics", "/openapi.json", "/v1/models", "/v1/completions", "/v1/chat/completions",
    "/v1/responses", "/v1/responses/input_tokens", "/tokenize",
}  # fmt: skip


def endpoint(path: str) -> str:
    """The metrics label of a request's path: a model's id is not a label of its own."""
    if path in ENDPOINTS:
        return path
    return "/v1/models/{name}" if path.startswith("/v1/models/") and path.count("/") == 3 else "other"
