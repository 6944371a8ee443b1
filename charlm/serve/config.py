"""`ServeConfig`: the server's options and limits. The CLI's `serve` options are generated from it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import MAX_SAMPLES
from ..device_names import DEVICE_FORMS, STEP_DEVICE
from ..errors import CharLMError
from ..fields import SHOWN, check_types, option, said


@dataclass
class ServeConfig:
    """The server's options and limits: what `charlm serve` takes, for `charlm.serve.serve` and
    `create_app` alike. api_key None takes $CHARLM_API_KEY where it is set.

    Raises CharLMError for a value of the wrong type or out of range, naming it as its caller wrote it:
    `port=` in Python, `--port` on the command line (`fields.said`).
    """

    host: str = option("127.0.0.1", "address to listen on (0.0.0.0: every interface; then set --api-key)")
    port: int = option(8080, "TCP port")
    api_key: str | None = option(
        None, "require `Authorization: Bearer KEY` on the generation endpoints (default: $CHARLM_API_KEY)"
    )
    max_streams: int = option(64, "samples generated at once, all models together; more are refused with 429")
    max_tokens: int = option(4096, "the most characters one sample may ask for")
    max_prompt: int = option(16384, "the most characters a prompt may have")
    chunk_ms: float = option(50.0, "a stream's new characters are sent together, this often (ms); 0: every character")
    threads: int = option(
        1, "torch threads for the batched step (1 leaves a core for HTTP on a small machine); prompts are read on one"
    )
    device: str = option(
        STEP_DEVICE,
        f"where the models run: {DEVICE_FORMS} (a step is one character: small models are fastest on the CPU)",
    )
    allow_origin: str | None = option(
        None,
        "let web pages from these origins call the API from a browser (CORS): comma-separated, e.g. "
        "http://localhost:3000, or * for any; a loopback server also answers to their hosts' names  "
        "[default: none: the served page only]",
    )

    def __post_init__(self) -> None:
        check_types(self)
        for name, low in (("port", 0), ("max_streams", 1), ("max_tokens", 1), ("max_prompt", 1), ("threads", 1)):
            if getattr(self, name) < low:
                raise CharLMError(f"{said(name)} must be at least {low}, not {getattr(self, name)}")
        if self.port > 65535:
            raise CharLMError(f"{said('port')} must be at most 65535, not {self.port}")
        if self.max_streams > MAX_SAMPLES:  # each model's engine holds a row for each, made at start-up
            raise CharLMError(f"{said('max_streams')} must be at most {MAX_SAMPLES}, not {self.max_streams}")
        if not 0 <= self.chunk_ms <= 1000:
            raise CharLMError(f"{said('chunk_ms')} must be between 0 and 1000, not {self.chunk_ms}")
        if self.api_key is not None:
            check_api_key(self.api_key, said("api_key"))
        self.check_host()
        self.origins()

    def check_host(self) -> None:
        """An empty --host (`--host "$HOST"`, HOST unset) would listen on every network, as 0.0.0.0 does;
        a byte of argv that is not UTF-8 (U+DCFF) names no host, and the socket refused it in a TypeError."""
        if not self.host.strip():
            raise CharLMError(
                f"{said('host')} is empty (a shell variable left unset gives an empty one): give the address to "
                "listen on, 127.0.0.1 (this machine only) or 0.0.0.0 (every network; then set an API key)"
            )
        try:
            self.host.encode("utf-8")
        except UnicodeEncodeError:
            raise CharLMError(
                f"{said('host')} {self.host!r} is no address nor host name: give an address such as 127.0.0.1"
            ) from None

    def origins(self) -> list[str]:
        """--allow-origin's origins, each `*` or a scheme and host with no path (what a browser sends
        as `Origin`, which must match exactly)."""
        origins = [origin.strip() for origin in (self.allow_origin or "").split(",") if origin.strip()]
        for origin in origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
                raise CharLMError(
                    f"{said('allow_origin')}: {SHOWN.repr(origin)} is not an origin: give scheme and host (and port), "
                    "e.g. http://localhost:3000, with no path, or *"
                )
        if self.allow_origin is not None and not origins:
            raise CharLMError(f"{said('allow_origin')} is empty: give origins such as http://localhost:3000, or *")
        return origins


def check_api_key(key: str, source: str) -> str:
    """A key a client can send: an HTTP header carries printable ASCII (a server decodes it as Latin-1,
    so a non-ASCII key could never be matched)."""
    if not key:
        raise CharLMError(  # `--api-key "$KEY"` with KEY unset
            f"{source} must not be empty (a shell variable left unset gives an empty one): give the key clients "
            f"will send, or leave {source} out to serve without one"
        )
    if not (key.isascii() and key.isprintable()) or key != key.strip():
        raise CharLMError(
            f"{source} must be printable ASCII without spaces at its ends (an HTTP header carries only that)"
        )
    return key
