"""The HTTP layer: the app, its routes, request bodies and errors.

A request's body is read here and checked (`protocol.py`), run as a `Completion` (completion.py: its
prompts primed in a worker thread, one `Job` per prompt in its model's `Engine`, updates routed back to
its queue) on a model the `Server` loaded (server.py), and answered whole or streamed (answers.py). The
middleware around the routes is middleware.py's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from .. import forms
from ..errors import CharLMError
from ..model import CharLM
from . import answers, protocol, responses_api, schema
from .api_error import APIError, shown
from .completion import Completion
from .config import ServeConfig
from .middleware import EveryAnswer, HeadAsGet, OtherHosts, OtherOrigins, loopback
from .server import Served, Server
from .token_labels import known_characters, known_pieces, tokenized, unseen_hints

T = TypeVar("T")

SHUTDOWN_GRACE = 1.0  # seconds requests in flight get to finish once the server is asked to stop
MAX_BODY_OVERHEAD = 1 << 20  # bytes a request body may have beyond its prompts
MAX_BYTES_PER_CHAR = 12  # a character beyond U+FFFF as JSON escapes it: "\ud83d\ude00"
SMALL_BODY = 1 << 14  # bytes of a body parsed and checked on the event loop (at most 0.6 ms measured)


async def read_body(request: Request, limit: int) -> bytearray:
    """The body, at most `limit` bytes, as sent: one with a Content-Encoding (gzip) is refused unread (a
    decompressed body would need a bound of its own: a gzip bomb), and so is one whose Content-Length is over
    the limit (a client that waits for "100 Continue", as curl does, sends nothing). A client gone before
    sending all it announced is answered (to no one) as any error is: uncaught, it would be a traceback in
    the server's log, once for every such client."""
    encoding = request.headers.get("content-encoding", "identity").strip()
    if encoding.lower() != "identity":  # read as JSON, a compressed body is "not valid JSON (... utf-8 ...)"
        raise APIError(
            415, f"the request body is encoded (Content-Encoding: {shown(encoding)}); this server reads only "
            "an uncompressed body: send it without Content-Encoding", code="unsupported_content_encoding",
        )  # fmt: skip
    too_large = APIError(413, f"the request body is over {limit:,} bytes", code="request_too_large")
    announced = request.headers.get("content-length", "").lstrip("0")  # its first read says "100 Continue"
    readable = announced.isascii() and announced.isdigit()  # '²' is a digit int() cannot read: a 500
    if readable and (len(announced) > len(str(limit)) or int(announced) > limit):
        raise too_large
    body = bytearray()
    try:
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise too_large
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


class UvicornServer(uvicorn.Server):
    """uvicorn's HTTP server (`charlm_server` is charlm's `Server`, the models and their engines), whose
    shutdown (Ctrl-C, SIGTERM) ends the requests still in flight after `SHUTDOWN_GRACE`: uvicorn alone waits
    its graceful timeout for a long stream, which goes on generating, then cancels it with a CancelledError
    traceback on stderr and drops the client's connection mid-body. Stopped engines end each request with
    an error event, a whole body."""

    def __init__(self, config: uvicorn.Config, charlm_server: Server) -> None:
        super().__init__(config)
        self.charlm_server = charlm_server

    async def shutdown(self, sockets: list | None = None) -> None:
        ending = asyncio.get_running_loop().call_later(
            SHUTDOWN_GRACE, lambda: asyncio.ensure_future(self.charlm_server.stop())
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
        return PlainTextResponse(
            server.metrics.render(engines, server.busy, server.config.max_streams),
            media_type="text/plain; version=0.0.4",
        )


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
    `Completion` and answered whole or streamed (`answers.answer`)."""
    limit = body_limit(config)

    @app.post("/v1/completions", openapi_extra=schemas["/v1/completions"])
    async def completions(request: Request) -> Response:
        server.check_key(request)
        params = await checked(request, limit, lambda body: protocol.completion_params(body, config))
        run = Completion(server, server.model(params.model), params)
        return await answers.answer(
            request, run, partial(answers.stream_completion, run), partial(answers.completion_body, run)
        )

    @app.post("/v1/chat/completions", openapi_extra=schemas["/v1/chat/completions"])
    async def chat_completions(request: Request) -> Response:
        server.check_key(request)
        params, wants_logprobs = await checked(request, limit, lambda body: protocol.chat_params(body, config))
        run = Completion(server, server.model(params.model), params)
        return await answers.answer(
            request,
            run,
            partial(answers.stream_chat, run, wants_logprobs),
            partial(answers.chat_body, run, wants_logprobs),
        )


def add_response_routes(app: FastAPI, server: Server, config: ServeConfig, schemas: dict[str, dict]) -> None:
    """OpenAI's Responses API: a response created as a chat completion is, its input counted, and the
    routes of a stored response, which charlm keeps none of, answered with a 404 that says so."""
    limit = body_limit(config)

    @app.post("/v1/responses", openapi_extra=schemas["/v1/responses"])
    async def create_response(request: Request) -> Response:
        """OpenAI's Responses API (`client.responses.create`), read as chat is: one message written."""
        server.check_key(request)
        params, echoed = await checked(request, limit, lambda body: responses_api.response_params(body, config))
        run = Completion(server, server.model(params.model), params)
        reply = answers.ResponseReply(run, echoed)
        return await answers.answer(request, run, reply.events, reply.body)

    @app.post("/v1/responses/input_tokens", openapi_extra=schemas["/v1/responses/input_tokens"])
    async def count_input_tokens(request: Request) -> JSONResponse:
        """`client.responses.input_tokens.count`: the characters a response's `input` and `instructions`
        make as the model reads them (`usage.input_tokens`), read in the primer's thread as a prompt is."""
        server.check_key(request)
        name, prompt = await checked(request, limit, lambda body: responses_api.input_tokens_params(body, config))
        vocab = server.model(name).model.vocab

        def counted() -> JSONResponse:
            read = vocab.normalized(prompt)
            protocol.check_prompt_lengths([read], config, "input", vocab.normalize)
            return JSONResponse({"object": "response.input_tokens", "input_tokens": len(read)})

        return await server.in_primer(counted)

    @app.post("/v1/responses/compact")
    async def compact_response(request: Request) -> None:
        """OpenAI's compaction (`client.responses.compact`) shortens a stored conversation; charlm stores none."""
        server.check_key(request)
        raise APIError(
            404, f"POST /v1/responses/compact: {responses_api.KEEPS_NO_RESPONSE} and compacts no conversation (its "
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
            404, f"no response {shown(response_id)} is stored here: {responses_api.KEEPS_NO_RESPONSE}, so none can be "
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

        return await server.in_primer(tokens_body)


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
