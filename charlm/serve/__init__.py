"""`charlm serve`: an OpenAI-compatible HTTP server with continuous batching, and a page to write with.

    config.py         ServeConfig: options and limits
    engine.py         the scheduling of one model's rows (generation.Batch), in its own thread: requests
                      join and leave it, what they made is published
    token_labels.py   what the API calls a token: a piece's text, its name in `top_logprobs` (`bytes:\\xe4`
                      for a byte piece) and the bytes that name stands for; a model's tokens as /v1/models
                      and /tokenize list them
    api_error.py      APIError: an error answer (OpenAI's body, an HTTP status), the request's values it
                      echoes cut short and on one line
    protocol.py       the OpenAI API's request fields: a request checked into `Params`, the checks every
                      endpoint shares
    responses_api.py  the Responses API's requests (`input`, `include`, `text`, `metadata`) read on those
    json_fields.py    a JSON object's fields read by type (integer, number, string...), a 400 naming a bad one
    schema.py         the request bodies as JSON Schema, for /openapi.json
    shapes.py         the JSON shapes of the answers (completions, chat, the Responses API, log-probabilities,
                      usage), which answers.py fills
    server.py         the loaded models (by id or their run's corpus) and their compiled templates, the API
                      key, the rows of --max-streams taken, the engines started and stopped, the hand-off
                      of updates from the engines' threads to asyncio
    completion.py     a request in flight: its rows taken, its prompts primed, its updates read
    app.py            the app and its routes (FastAPI): request bodies read and checked, errors answered
    answers.py        a request's answer from its updates: one JSON body, or server-sent events
    middleware.py     around the routes: metrics and request ids, other origins' and other hosts' requests
                      refused, HEAD as GET
    connections.py    bounds on a connection's request as it arrives (time, header size), under uvicorn
    metrics.py        /metrics in Prometheus's text format
    page.html         the page served at /: self-contained, works offline
    page.css, page.js  its look and what it does as the exported page does (both pages inline them)

Needs `pip install 'charlm[serve]'` (FastAPI, uvicorn with httptools and uvloop).
"""

from __future__ import annotations

import concurrent.futures
import errno
import ipaddress
import socket
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import runs
from ..device_names import STEP_DEVICE
from ..errors import CharLMError, callers_stacklevel
from ..fields import said, together
from ..files import utf8
from ..stopping import leaving_at_once
from .config import ServeConfig

if TYPE_CHECKING:
    from ..model import CharLM
# checkpoint and threads (torch) are imported where they are used: `charlm serve --help` builds its
# options from ServeConfig, and importing this package for it must not load torch (seconds).

__all__ = ["ServeConfig", "model_loaders", "serve"]


def model_loaders(
    targets: list[str], device: str = STEP_DEVICE
) -> tuple[dict[str, Callable[[], CharLM]], dict[str, str]]:
    """What `create_app` takes for `targets`, as `charlm serve RUN ...` reads them: run folders, run or
    corpus names, .pt files or exported model folders (none: the latest run).

    Returns (loaders, corpora): model id -> a function loading that model onto `device`, and model id
    -> the corpus its run trained on, where known (a request may name a model by it).

    Raises CharLMError for a device this machine has not, a target not found, or two that would have the same id. The paths are
    resolved here (anything `runs.resolve` takes), so a missing run is an error before the server starts.
    """
    from .. import checkpoint
    from ..device import resolve_device

    resolve_device(device)  # a bad --device is named before any run is looked for, as `checkpoint.load` does
    loaders, corpora = {}, {}
    for target in targets or [None]:
        path = runs.resolve(target)
        # a byte of a folder's name that is not UTF-8 (U+DCFF) as its escape, `\\udcff`: JSON has no form of
        # it, and each answer names the model (a 500 each, as one was written)
        name = utf8(runs.run_name_of(path)).decode()
        if name in loaders:
            raise CharLMError(f"{target}: two models would both be called {name!r}; serve one of them")
        loaders[name] = lambda path=path: checkpoint.load(path, device)
        corpus = runs.corpus_of_run(path.parent) if runs.is_checkpoint_name(path) else None
        if corpus:
            corpora[name] = utf8(corpus).decode()
    return loaders, corpora


def warn_if_no_core_left(count: int) -> None:
    """`--threads` on every core the server gets leaves none for the thread serving HTTP and the one
    reading prompts: the step's second OpenMP thread then waits on them at every operation (measured
    in docs/benchmarks.md, "The server's threads"). Over the cores, `threads.warn_if_too_many` says so.
    Named as its caller wrote it: `threads=2` in Python, `--threads 2` on the command line."""
    from .. import threads

    cores = threads.share_of_cores()
    if 1 < count == cores:
        warnings.warn(
            f"{said('threads', count)} takes all {cores} cores, leaving none for serving HTTP: from 16 streams on, "
            f"each step waits for it, several times slower than {said('threads', 1)}; give at most {cores - 1}",
            stacklevel=callers_stacklevel(),
        )


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CharLMError(
            f"{together(said('host', host), said('port', port))}: cannot listen there ({e.strerror}); "
            f"{bind_remedy(e, port)}"
        ) from None
    sock.listen(2048)
    return sock


def bind_remedy(error: OSError, port: int) -> str:
    """What to do about an address the server cannot listen on: a host that is no address of this
    machine (or no name at all) is mended by --host; another --port would fail the same way."""
    if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
        return f"give {said('host')} an address of this machine: 127.0.0.1, or 0.0.0.0 for every network"
    if error.errno == errno.EACCES and 0 < port < 1024:
        return f"pick a {said('port')} of 1024 or more (lower ones need root)"
    return f"pick another {said('port')}"


def warn_if_open_to_anyone(host: str, listening_on: str, api_key: str | None) -> None:
    """A server on an address other machines reach (`host` as given, bound to `listening_on`) with no
    key lets anyone use the models: said once it listens, as its caller wrote the options."""
    if not ipaddress.ip_address(listening_on).is_loopback and not api_key:
        warnings.warn(
            f"{said('host', host)} without {said('api_key')}: anyone who reaches this port can use the models",
            stacklevel=callers_stacklevel(),
        )


def serve(targets: list[str], config: ServeConfig) -> None:
    """Serve the models of `targets` (as `model_loaders` reads them) over HTTP, as `charlm serve` does:
    the OpenAI-compatible API and the page to write with (docs/serve.md).

    The models are loaded first; then it prints the address and serves until Ctrl-C or SIGTERM.

    Returns None once stopped.

    Raises CharLMError for a run not found or damaged, the serve extra not installed
    (pip install 'charlm[serve]'), or an address it cannot listen on.
    """
    with leaving_at_once():  # seconds of torch and FastAPI: Ctrl-C meanwhile leaves at once
        try:
            import uvicorn

            from .app import UvicornServer, create_app
            from .connections import BoundedHttp
        except ImportError as e:
            raise CharLMError(f"charlm serve needs {e.name}: pip install 'charlm[serve]'") from None
        from .. import threads

    loaders, corpora = model_loaders(targets, config.device)
    threads.warn_if_too_many(config.threads)  # the engines' threads take --threads, each its own
    warn_if_no_core_left(config.threads)
    # Loaded before the address is printed: a damaged checkpoint is a one-line error, not a server that
    # announces itself and then stops. Loaded in a thread that then ends: this one serves HTTP, and
    # parallel torch work here would keep an OpenMP team alive beside the engines' for good, which made
    # every parallel step wait on sleeping threads (`threads.pin_this_thread`).
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="charlm-load") as loading:
        loaded = loading.submit(lambda: {name: load() for name, load in loaders.items()}).result()
    sock = listening_socket(config.host, config.port)
    app = create_app({name: lambda model=model: model for name, model in loaded.items()}, config, corpora)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    warn_if_open_to_anyone(config.host, host, app.state.server.api_key)
    # Printed once the engines run (the app starts them as it starts): a client sent on this line, as scripts
    # and bench/ send one, was told 503 "the model is still loading"
    address = f"charlm serve: http://{shown}:{port}/  models: {', '.join(loaders)}"
    app.state.server.on_ready = lambda: print(address, flush=True)
    http_server = UvicornServer(
        uvicorn.Config(
            app, http=BoundedHttp, log_level="warning", access_log=False, timeout_graceful_shutdown=3, lifespan="on"
        ),
        app.state.server,
    )
    app.state.server.on_failure = lambda: setattr(http_server, "should_exit", True)
    http_server.run(sockets=[sock])
    if app.state.server.failure:
        raise CharLMError(app.state.server.failure)
