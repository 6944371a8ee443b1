"""The HTTP layer: routes, request bodies, streaming (server-sent events), disconnects and errors.

A request is checked (`protocol.py`) and run as a `Completion` (completion.py: its prompts primed in a
worker thread, one `Job` per prompt in its model's `Engine`, updates routed back to its queue); this
module turns the updates into JSON bodies or server-sent events. A request whose client goes away
cancels its jobs: their rows leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import forms
from ..errors import CharLMError
from ..model import CharLM
from . import protocol, responses, schema
from .completion import Completion, Served, Server, known_characters, known_pieces, tokenized, unseen_hints
from .config import ServeConfig
from .engine import Token, Update
from .metrics import Metrics
from .protocol import APIError, shown

T = TypeVar("T")

SHUTDOWN_GRACE = 1.0  # seconds requests in flight get to finish once the server is asked to stop
MAX_BODY_OVERHEAD = 1 << 20  # bytes a request body may have beyond its prompts
MAX_BYTES_PER_CHAR = 12  # a character beyond U+FFFF as JSON escapes it: "\ud83d\ude00"
SMALL_BODY = 1 << 14  # bytes of a body parsed and checked on the event loop (at most 0.6 ms measured)
SMALL_ANSWER = 1 << 14  # characters and logprobs of a whole answer built and written on the event loop


async def read_body(request: Request, limit: int) -> bytearray:
    """The body, at most `limit` bytes, as sent: one with a Content-Encoding (gzip) is refused unread (a
    decompressed body would need a bound of its own: a gzip bomb). A client gone before sending all it
    announced is answered (to no one) as any error is: uncaught, it would be a traceback in the server's
    log, once for every such client."""
    encoding = request.headers.get("content-encoding", "identity").strip()
    if encoding.lower() != "identity":  # read as JSON, a compressed body is "not valid JSON (... utf-8 ...)"
        raise APIError(
            415, f"the request body is encoded (Content-Encoding: {shown(encoding)}); this server reads only "
            "an uncompressed body: send it without Content-Encoding", code="unsupported_content_encoding",
        )  # fmt: skip
    body = bytearray()
    try:
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise APIError(413, f"the request body is over {limit:,} bytes", code="request_too_large")
    except ClientDisconnect:
        raise APIError(499, "the client went away before sending its whole body", code="client_disconnected") from None
    return body


async def checked(request: Request, limit: int, check: Callable[[Any], T]) -> T:
    """The request's JSON body, parsed and checked by `check` (`protocol.completion_params`, ...), in a
    worker thread for a large body: checked on the event loop, 8 requests of 65,536 logit_bias ids
    held every stream and /health 0.3 to 0.4 s. (Parsing in C holds the GIL wherever it runs, which
    `protocol.MAX_JSON_ITEMS` bounds; checking in Python lets the loop run between its steps.)"""
    body = await read_body(request, limit)
    if len(body) <= SMALL_BODY:
        return check(protocol.parsed_body(body))
    return await asyncio.to_thread(lambda: check(protocol.parsed_body(body)))


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """Runs `work` (a coroutine); None if the client went away first (the work is then cancelled)."""
    task, gone = asyncio.ensure_future(work), asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


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


def create_app(
    loaders: dict[str, Callable[[], CharLM]], config: ServeConfig, corpora: dict[str, str] | None = None
) -> FastAPI:
    """The server as an ASGI app, to run with your own uvicorn (or any ASGI server): it serves the
    models that `loaders` return, under their ids, a model in memory too (`{"mine": lambda: model}`).

    `corpora` (id -> corpus) lets a request name a model by its run's corpus (`model_loaders` gives
    both). The models load in a thread once the app starts (/health says `loading` meanwhile; a
    loader's error is /health's answer).

    Returns a FastAPI app.

    Raises CharLMError when `loaders` is empty.
    """
    if not loaders:
        raise CharLMError("no model to serve")
    server = Server(loaders, config, corpora)
    app = FastAPI(
        title="charlm", lifespan=partial(serving, server), docs_url=None, redoc_url=None, openapi_url="/openapi.json"
    )
    app.state.server = server
    app.add_middleware(HeadAsGet)
    app.add_middleware(OtherOrigins, allowed=config.origins())  # within EveryAnswer: its refusals counted too
    if loopback(config.host):  # on another address the machine is reached by any of its names: --api-key guards it
        app.add_middleware(OtherHosts, listening_on=config.host, allowed=config.origins())
    app.add_middleware(EveryAnswer, metrics=server.metrics)
    if config.allow_origin:  # pages of other origins may call the API; a preflight needs no API key
        methods, headers = ["GET", "POST"], ["Authorization", "Content-Type"]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.origins(),
            allow_methods=methods,
            allow_headers=headers,
            expose_headers=["x-request-id"],  # else that origin's page cannot read it
        )
    add_error_handlers(app)
    add_status_routes(app, server)
    add_generation_routes(app, server, config)
    return app


@asynccontextmanager
async def serving(server: Server, app: FastAPI) -> AsyncIterator[None]:
    """The app's lifespan: the models load in a thread once the loop runs, so the server answers (/health
    says `loading`) while they do; at shutdown the engines stop."""
    server.loop = asyncio.get_running_loop()
    threading.Thread(target=server.load, name="charlm-load", daemon=True).start()
    yield
    await server.stop()


class StoppingServer(uvicorn.Server):
    """uvicorn's server, whose shutdown (Ctrl-C, SIGTERM) ends the requests still in flight after
    `SHUTDOWN_GRACE`: uvicorn alone waits its graceful timeout for a long stream, which goes on generating,
    then cancels it with a CancelledError traceback on stderr and drops the client's connection mid-body.
    Stopped engines end each request with an error event, a whole body."""

    def __init__(self, config: uvicorn.Config, server: Server) -> None:
        super().__init__(config)
        self.charlm = server

    async def shutdown(self, sockets: list | None = None) -> None:
        ending = asyncio.get_running_loop().call_later(
            SHUTDOWN_GRACE, lambda: asyncio.ensure_future(self.charlm.stop())
        )
        try:
            await super().shutdown(sockets)
        finally:
            ending.cancel()


def add_error_handlers(app: FastAPI) -> None:
    """Every error as OpenAI's JSON error body; a busy server (429) or one still loading (503) says when
    to retry."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        headers = {"Retry-After": "1"} if error.status in (429, 503) else None
        if error.status == 415:  # the encodings it takes (RFC 7694)
            headers = {"Accept-Encoding": "identity"}
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        """FastAPI's own errors (an unknown path, a method a path does not take) in OpenAI's shape, saying
        what was asked and where the endpoints are listed; a 405 keeps its `Allow` header."""
        message = str(error.detail)
        asked = f"{request.method} {shown(request.url.path)}"
        if error.status_code == 404 and message == "Not Found":
            message = f"{asked}: no such endpoint; {where_the_routes_are(app, request)}"
        elif error.status_code == 405 and message == "Method Not Allowed":
            allowed = (error.headers or {}).get("Allow", "")
            message = f"{asked}: this endpoint takes {allowed or 'another method'}"
        body = APIError(error.status_code, message).body()
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def where_the_routes_are(app: FastAPI, request: Request) -> str:
    """What a 404 tells the client: the route under /v1 that a base URL without /v1 (`http://127.0.0.1:8080`,
    as a local server's address reads) missed, or that one ending in it doubled (`/v1/v1/...`: a client
    that adds /v1 itself); else where the routes are listed."""
    path = request.url.path
    meant = path.removeprefix("/v1") if path.startswith("/v1/v1/") else "/v1" + path
    scope = {"type": "http", "path": meant, "method": request.method}
    if not any(route.matches(scope)[0] == Match.FULL for route in app.routes):
        return "GET /openapi.json lists this server's"
    base = shown(str(request.base_url).rstrip("/"))
    itself = f" (or {base}, for a client that adds /v1 itself)" if path.startswith("/v1/") else ""
    return f"did you mean {request.method} {meant}? Give an OpenAI client the base URL {base}/v1{itself}"


def page_html() -> str:
    """The page at /, with the style and script it shares with the exported page put in its place, the
    server's limit on a ban, and the forms charlm knows in its menu (by their full names, as charlm.forms has them)."""
    files = resources.files(__package__)
    page = files.joinpath("page.html").read_text(encoding="utf-8")
    for shared in ("page.css", "page.js"):
        page = page.replace(f"/* {shared} */", files.joinpath(shared).read_text(encoding="utf-8"), 1)
    menu = "\n".join(f'        <option value="{name}">{name}</option>' for name in forms.FORMS)
    page = page.replace("        <!-- FORMS -->", menu, 1)
    return page.replace("/* MAX_BIASED */", str(protocol.MAX_BIASED), 1)


def add_status_routes(app: FastAPI, server: Server) -> None:
    """The page, /health, the models and /metrics: everything but the completions."""
    page = page_html()

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> JSONResponse:
        if server.failure:
            return JSONResponse({"status": "error", "message": server.failure}, status_code=500)
        if not server.ready.is_set():
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card(s) for s in server.models.values()]})

    @app.get("/v1/models/{name}")
    async def retrieve_model(name: str) -> JSONResponse:
        """OpenAI's retrieve (`client.models.retrieve`): one model, named as a request names it."""
        return JSONResponse(model_card(server.model(name)))

    @app.get("/metrics")
    async def metrics(request: Request) -> PlainTextResponse:
        server.check_key(request)
        engines = {name: s.engine for name, s in server.models.items()}
        return PlainTextResponse(server.metrics.render(engines), media_type="text/plain; version=0.0.4")


def add_generation_routes(app: FastAPI, server: Server, config: ServeConfig) -> None:
    """The routes that read a JSON body of prompts, in the order /openapi.json lists them: OpenAI's
    completions and chat completions, its Responses API, and /tokenize. Each body is checked
    (`protocol`) within `body_limit`, and described in the document as `schema` writes it."""
    schemas = schema.request_schemas(config, server.model_names())
    document = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's OpenAPI document with the request bodies as `schema` writes them: FastAPI's model of
        a schema holds a bound as a float, and seed's 2**63 - 1 becomes 2**63, which the server refuses."""
        made = document()
        for path, extra in schemas.items():
            made["paths"][path]["post"]["requestBody"] = extra["requestBody"]
        return made

    app.openapi = openapi  # type: ignore[method-assign]
    add_completion_routes(app, server, config, schemas)
    add_response_routes(app, server, config, schemas)
    add_tokenize_route(app, server, config, schemas)


def body_limit(config: ServeConfig) -> int:
    """The most bytes a request body may have: its prompts at their longest, as JSON escapes them, for
    every stream at once, and room for the other fields."""
    return MAX_BODY_OVERHEAD + MAX_BYTES_PER_CHAR * config.max_prompt * config.max_streams


def add_completion_routes(app: FastAPI, server: Server, config: ServeConfig, schemas: dict[str, dict]) -> None:
    """OpenAI's completions and chat completions: the request is checked (`protocol`), run as a
    `Completion` and answered whole or streamed (`answer`)."""
    limit = body_limit(config)

    @app.post("/v1/completions", openapi_extra=schemas["/v1/completions"])
    async def completions(request: Request) -> Response:
        server.check_key(request)
        params = await checked(request, limit, lambda body: protocol.completion_params(body, config))
        run = Completion(server, server.model(params.model), params)
        return await answer(request, run, partial(stream_completion, run), partial(completion_body, run))

    @app.post("/v1/chat/completions", openapi_extra=schemas["/v1/chat/completions"])
    async def chat_completions(request: Request) -> Response:
        server.check_key(request)
        params, wants_logprobs = await checked(request, limit, lambda body: protocol.chat_params(body, config))
        run = Completion(server, server.model(params.model), params)
        return await answer(
            request, run, partial(stream_chat, run, wants_logprobs), partial(chat_body, run, wants_logprobs)
        )


def add_response_routes(app: FastAPI, server: Server, config: ServeConfig, schemas: dict[str, dict]) -> None:
    """OpenAI's Responses API: a response created as a chat completion is, its input counted, and the
    routes of a stored response, which charlm keeps none of, answered with a 404 that says so."""
    limit = body_limit(config)

    @app.post("/v1/responses", openapi_extra=schemas["/v1/responses"])
    async def create_response(request: Request) -> Response:
        """OpenAI's Responses API (`client.responses.create`), read as chat is: one message written."""
        server.check_key(request)
        params, echoed = await checked(request, limit, lambda body: protocol.response_params(body, config))
        run = Completion(server, server.model(params.model), params)
        reply = ResponseReply(run, echoed)
        return await answer(request, run, reply.events, reply.body)

    @app.post("/v1/responses/input_tokens", openapi_extra=schemas["/v1/responses/input_tokens"])
    async def count_input_tokens(request: Request) -> JSONResponse:
        """`client.responses.input_tokens.count`: the characters a response's `input` and `instructions`
        make as the model reads them (`usage.input_tokens`), read in the primer's thread as a prompt is."""
        server.check_key(request)
        name, prompt = await checked(request, limit, lambda body: protocol.input_tokens_params(body, config))
        vocab = server.model(name).model.vocab

        def counted() -> JSONResponse:
            read = vocab.normalized(prompt)
            protocol.check_prompt_lengths([read], config, "input", vocab.normalize)
            return JSONResponse({"object": "response.input_tokens", "input_tokens": len(read)})

        return await asyncio.get_running_loop().run_in_executor(server.primer, counted)

    @app.post("/v1/responses/compact")
    async def compact_response(request: Request) -> None:
        """OpenAI's compaction (`client.responses.compact`) shortens a stored conversation; charlm stores none."""
        server.check_key(request)
        raise APIError(
            404, f"POST /v1/responses/compact: {protocol.KEEPS_NO_RESPONSE} and compacts no conversation (its "
            "model reads the whole input each time); send the conversation whole in `input` to /v1/responses",
            code="unsupported_endpoint",
        )  # fmt: skip

    # Not in /openapi.json: FastAPI gives a route one operation id for all its methods, so a route of
    # several is an invalid document (ids must be unique), and these answer nothing but a 404
    @app.api_route("/v1/responses/{response_id}", methods=["GET", "DELETE"], include_in_schema=False)
    @app.api_route(
        "/v1/responses/{response_id}/{action:path}", methods=["GET", "POST", "DELETE"], include_in_schema=False
    )
    async def stored_response(request: Request, response_id: str) -> None:
        """OpenAI's routes of a stored response (retrieve, delete, cancel, input_items): charlm stores
        none, which the 404 says, in OpenAI's shape, rather than FastAPI's bare "Not Found". input_tokens
        and compact are no response's id but routes of their own, asked with a method they do not take."""
        server.check_key(request)
        if response_id in ("input_tokens", "compact") and "action" in request.path_params:
            raise HTTPException(404)
        if response_id in ("input_tokens", "compact"):
            raise HTTPException(405, headers={"Allow": "POST"})
        raise APIError(
            404, f"no response {shown(response_id)} is stored here: {protocol.KEEPS_NO_RESPONSE}, so none can be "
            "retrieved, deleted, cancelled or listed; keep what responses.create returned, send a conversation "
            "whole in `input`, and stop a stream by closing it",
            "response_id", "response_not_found",
        )  # fmt: skip


def add_tokenize_route(app: FastAPI, server: Server, config: ServeConfig, schemas: dict[str, dict]) -> None:
    """llama.cpp's /tokenize, which says the token ids `logit_bias` takes."""
    limit = body_limit(config)

    @app.post("/tokenize", openapi_extra=schemas["/tokenize"])
    async def tokenize(request: Request) -> JSONResponse:
        """llama.cpp's /tokenize: the token ids of a text, for `logit_bias`. Read and written out in the
        thread that reads prompts, not on the event loop: 50 requests of --max-prompt characters at once
        (18 MB of JSON with `with_pieces`) held every stream's next chunk for 1.4 s."""
        server.check_key(request)
        name, field, text, with_pieces = await checked(
            request, limit, lambda body: protocol.tokenize_params(body, config)
        )
        model = server.model(name).model

        def tokens_body() -> JSONResponse:
            return JSONResponse({"tokens": tokenized(model, text, with_pieces, field, config)})

        return await asyncio.get_running_loop().run_in_executor(server.primer, tokens_body)


def model_card(served: Served) -> dict:
    """A loaded model as `/v1/models` lists it: OpenAI's fields and charlm's `meta`."""
    model = served.model
    meta = {
        **model.config.to_dict(),
        "parameters": model.num_parameters(),
        "normalize": model.vocab.normalize,
        "characters": known_characters(model),
        "pieces": known_pieces(model),
        "unseen": unseen_hints(model),
    }
    return {"id": served.name, "object": "model", "created": served.created, "owned_by": "charlm", "meta": meta}


async def answer(
    request: Request, run: Completion, streamed: Callable[[], AsyncIterator[str]], body: Callable[..., dict]
) -> Response:
    """A completion's response, either kind: its events as they are made, or one JSON body once whole."""
    await run.start()
    if run.params.stream:
        return event_stream(streamed(), run)
    try:
        made = await unless_disconnected(request, collect(run))
    finally:  # an engine error too: its rows must not stay taken (every later request a 429)
        run.cancel()
    if made is None:
        return Response(status_code=499)
    params = run.params
    if params.choices * params.max_tokens * (1 + (params.logprobs or 0)) <= SMALL_ANSWER:
        return JSONResponse(body(*made))
    return Response(await asyncio.to_thread(lambda: rendered(body(*made))), media_type="application/json")


def rendered(body: dict) -> bytes:
    """`body` as JSONResponse writes it, for a worker thread, each choice written apart: json.dumps, in C,
    holds the GIL throughout, and the whole answer of n=64, max_tokens 4096 and logprobs 20 (over 100 MB)
    built and written on the event loop held every stream and /health for seconds. A Responses API body
    (one message, as large as one such choice: `ResponseReply`) has no choices, and is written whole."""

    def dumped(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    if "choices" not in body:
        return dumped(body).encode()
    choices = ",".join(map(dumped, body["choices"]))  # a string holds no bare quote: "choices" is the field
    return dumped({**body, "choices": []}).replace('"choices":[]', f'"choices":[{choices}]', 1).encode()


def event_stream(events: AsyncIterator[str], run: Completion) -> StreamingResponse:
    """Server-sent events with Starlette's own streaming response, which cancels the generator the
    moment the client disconnects (measured: half the CPU per event of sse-starlette's)."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

    async def cancel() -> None:
        """On the event loop, where requests take rows: Starlette runs a plain function in a worker
        thread, and a count changed in two threads at once can lose a change for good."""
        run.cancel()

    return StreamingResponse(events, media_type="text/event-stream", headers=headers, background=BackgroundTask(cancel))


async def collect(run: Completion) -> tuple[list[str], list[list[Token]], list[str | None]]:
    """A whole response: each choice's text, tokens and finish reason."""
    count = run.params.choices
    texts, tokens, reasons = [[] for _ in range(count)], [[] for _ in range(count)], [None] * count
    async for update in run.updates():
        i = run.index(update)
        texts[i].append(update.text)
        tokens[i] += update.tokens or []
        reasons[i] = update.finish_reason or reasons[i]
    return ["".join(t) for t in texts], tokens, reasons


def reply(
    run: Completion, kind: str, id_: str, choices: list[dict], use: dict | None, times: dict | None = None
) -> dict:
    """A response body or stream chunk of `run` (`responses.response`)."""
    return responses.response(kind, id_, run.created, run.served.name, run.served.fingerprint, choices, use, times)


def completion_body(run: Completion, texts: list[str], tokens: list[list[Token]], reasons: list) -> dict:
    params, choices = run.params, []
    for i, (text, reason) in enumerate(zip(texts, reasons)):
        prompt = run.read[i // params.n] if params.echo else ""
        echoed = (run.echoed[i // params.n] or []) if params.echo else []
        logprobs = None
        if params.logprobs is not None:
            logprobs = responses.completion_logprobs(echoed + tokens[i], 0)
        choices.append(responses.completion_choice(i, prompt + text, logprobs, reason))
    use = responses.usage(run.prompt_chars, run.made())
    return reply(run, "text_completion", responses.new_id("cmpl"), choices, use, run.timings())


def chat_body(
    run: Completion, wants_logprobs: bool, texts: list[str], tokens: list[list[Token]], reasons: list
) -> dict:
    choices = [
        responses.chat_choice(i, text, responses.chat_logprobs(tokens[i]) if wants_logprobs else None, reason)
        for i, (text, reason) in enumerate(zip(texts, reasons))
    ]
    use = responses.usage(run.prompt_chars, run.made())
    return reply(run, "chat.completion", responses.new_id("chatcmpl"), choices, use, run.timings())


async def events(
    run: Completion,
    first: Callable[[], list[dict]],
    chunk: Callable[[Update, int], dict],
    usage_chunk: Callable[[dict], dict],
) -> AsyncIterator[str]:
    """The server-sent events of a streamed response: `first`'s chunks, one chunk per update (the
    chunk that ends the request carries `timings`), the usage chunk if asked for, then [DONE]. With
    the usage chunk every other chunk has `usage: null`, as OpenAI's do. A client that goes away
    cancels this generator, and with it the request's rows."""
    usage = {"usage": None} if run.params.include_usage else {}
    try:
        for body in first():
            yield event(body | usage)
        async for update in run.updates():
            body = chunk(update, run.index(update)) | usage
            if run.open == 0:
                body["timings"] = run.timings()
            yield event(body)
        if run.params.include_usage:
            yield event(usage_chunk(responses.usage(run.prompt_chars, run.made())))
        yield "data: [DONE]\n\n"
    except APIError as e:
        yield event(e.body())
    finally:
        run.cancel()


# Characters JSON leaves unescaped that Python's str.splitlines ends a line at (httpx's iter_lines, the
# usual way to read events with httpx): escaped, so that no echoed prompt or text splits an event's JSON in two
LINE_ENDS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def one_line(value: Any) -> str:
    """`value` as JSON on one line for any reader's notion of a line."""
    data = json.dumps(value, ensure_ascii=False)
    for character, escaped in LINE_ENDS.items():
        data = data.replace(character, escaped)
    return data


def event(body: dict) -> str:
    """A server-sent event of `body`."""
    return f"data: {one_line(body)}\n\n"


def stream_completion(run: Completion) -> AsyncIterator[str]:
    params, id_, offsets = run.params, responses.new_id("cmpl"), {}

    def body(choices: list[dict], use: dict | None = None) -> dict:
        return reply(run, "text_completion", id_, choices, use)

    def first() -> list[dict]:
        if not params.echo:
            return []
        chunks = []
        for i in range(params.choices):
            prompt, echoed = run.read[i // params.n], run.echoed[i // params.n] or []
            logprobs = responses.completion_logprobs(echoed, 0) if params.logprobs is not None else None
            offsets[i] = len(prompt)
            chunks.append(body([responses.completion_choice(i, prompt, logprobs, None)]))
        return chunks

    def chunk(update: Update, i: int) -> dict:
        logprobs = None
        if params.logprobs is not None:
            logprobs = responses.completion_logprobs(update.tokens or [], offsets.get(i, 0))
        offsets[i] = offsets.get(i, 0) + len(update.text)
        return body([responses.completion_choice(i, update.text, logprobs, update.finish_reason)])

    return events(run, first, chunk, lambda use: body([], use))


def stream_chat(run: Completion, wants_logprobs: bool) -> AsyncIterator[str]:
    id_, started = responses.new_id("chatcmpl"), set()

    def body(choices: list[dict], use: dict | None = None) -> dict:
        return reply(run, "chat.completion.chunk", id_, choices, use)

    def chunk(update: Update, i: int) -> dict:
        logprobs = responses.chat_logprobs(update.tokens or []) if wants_logprobs else None
        choice = responses.chat_choice(i, update.text, logprobs, update.finish_reason, True, i not in started)
        started.add(i)
        return body([choice])

    return events(run, list, chunk, lambda use: body([], use))


class ResponseReply:
    """The Responses API's answer to `run`, whole (`body`) or as its stream of typed events (`events`),
    with the ids and settings that every one of its events repeats; its text's log-probabilities (chat's
    entries, `responses.token_logprobs`) where `include` asked for them (`params.logprobs` not None)."""

    def __init__(self, run: Completion, echoed: dict) -> None:
        self.run, self.wants_logprobs = run, run.params.logprobs is not None
        self.id, self.message_id = responses.new_id("resp", "_"), responses.new_id("msg", "_")
        params = run.params
        self.settings = {**echoed, "temperature": params.temperature, "top_p": params.top_p or 1.0}

    def logprobs(self, tokens: list[Token]) -> list[dict]:
        return responses.token_logprobs(tokens) if self.wants_logprobs else []

    def response(self, status: str, text: str | None = None, logprobs: list[dict] | list[str] | None = None) -> dict:
        """The response object: in progress (no output or usage yet), or finished with `text`; `logprobs`
        as `responses.output_text` takes them."""
        run = self.run
        output = [] if text is None else [responses.output_message(self.message_id, text, status, logprobs)]
        use = None if text is None else responses.response_usage(run.prompt_chars, run.made())
        return responses.response_object(self.id, run.created, run.served.name, status, output, use, self.settings)

    def body(self, texts: list[str], tokens: list[list[Token]], reasons: list) -> dict:
        return self.response(responses.response_status(reasons[0]), texts[0], self.logprobs(tokens[0]))

    async def events(self) -> AsyncIterator[str]:
        """The events OpenAI's stream has, each with its `type` (also as the SSE event name) and
        `sequence_number`: the response created and in progress, the message and its text part added, a
        delta per update, then each done, and the response `completed` (or `incomplete`, cut by
        `max_output_tokens`). An error ends it as an `error` event; a client gone cancels the rows."""
        numbers, run = itertools.count(), self.run
        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        # The closing events each repeat the whole text's logprobs. Each entry is written to JSON once, in its
        # delta, and an event holds `slot` where entries go: `sent` puts their JSON there (the slot's mark is no
        # string a request can hold). Dumped anew in each, on the event loop, 64 streams of top_logprobs 20
        # ending together held every stream and /health for seconds.
        mark = f"logprobs-{uuid.uuid4().hex}"
        slot = [mark] if self.wants_logprobs else []

        def sent(kind: str, entries_json: str = "", **fields: Any) -> str:
            """The event of `kind`, `entries_json` (logprobs entries, without the list's brackets) in `slot`."""
            data = event({"type": kind, "sequence_number": next(numbers), **fields})
            return f"event: {kind}\n" + data.replace(f'"{mark}"', entries_json)

        try:
            yield sent("response.created", response=self.response("in_progress"))
            yield sent("response.in_progress", response=self.response("in_progress"))
            item = responses.output_message(self.message_id, None, "in_progress")
            yield sent("response.output_item.added", output_index=0, item=item)
            yield sent("response.content_part.added", **where, part=responses.output_text(""))
            texts, deltas_json, reason = [], [], None
            async for update in run.updates():
                reason = update.finish_reason or reason
                delta = self.logprobs(update.tokens or [])  # a healed seed's piece may have no text of its own
                if update.text or delta:
                    texts.append(update.text)
                    delta_json = one_line(delta)[1:-1]
                    deltas_json += [delta_json] if delta_json else []
                    yield sent("response.output_text.delta", delta_json, **where, delta=update.text, logprobs=slot)
            text, status, all_json = "".join(texts), responses.response_status(reason), ",".join(deltas_json)
            yield sent("response.output_text.done", all_json, **where, text=text, logprobs=slot)
            yield sent("response.content_part.done", all_json, **where, part=responses.output_text(text, slot))
            item = responses.output_message(self.message_id, text, status, slot)
            yield sent("response.output_item.done", all_json, output_index=0, item=item)
            yield sent(f"response.{status}", all_json, response=self.response(status, text, slot))
        except APIError as e:
            yield sent("error", code=e.code, message=e.message, param=e.param)
        finally:
            run.cancel()
