"""`charlm serve` as the widely used OpenAI clients other than the `openai` package call it: LangChain,
LiteLLM, LlamaIndex, OpenAI's JavaScript client and the Vercel AI SDK.

The request bodies and headers below were recorded from each client driving a served run (a logging proxy
between them), and are sent here through httpx: the answers must have what each client reads, so that a
change to the server that would break a client fails here without the client installed.
"""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from .test_serve import KEY, server, tiny_model  # noqa: F401


@pytest.mark.parametrize(
    ("method", "path", "meant"),
    [
        ("POST", "/chat/completions", "/v1/chat/completions"),
        ("POST", "/completions", "/v1/completions"),
        ("POST", "/responses", "/v1/responses"),
        ("GET", "/models", "/v1/models"),
        ("GET", "/models/tiny", "/v1/models/tiny"),
        ("POST", "/v1/v1/chat/completions", "/v1/chat/completions"),
    ],
)
def test_a_path_outside_v1_is_told_the_path_under_it(server, method, path, meant):  # noqa: F811
    """LangChain, LiteLLM and LlamaIndex given a base URL without /v1 (`http://127.0.0.1:8080`, as a local
    server's address reads) POST /chat/completions, and were told only "no such endpoint; GET /openapi.json
    lists this server's" (LangChain raised it as OpenAIModelNotFoundError). The 404 now names the route
    under /v1 and the base URL to give; a client that adds /v1 to a base URL ending in it, too."""
    url = server[0]
    answer = httpx.request(method, url + path, headers={"Authorization": f"Bearer {KEY}"}, json={})
    assert answer.status_code == 404
    base = f"base URL {url}/v1" + (f" (or {url}, for a client that adds /v1 itself)" if path.startswith("/v1/") else "")
    expected = f"{method} {path}: no such endpoint; did you mean {method} {meant}? An OpenAI client's {base}"
    assert answer.json()["error"]["message"] == expected


def test_the_openai_client_given_a_base_url_without_v1_is_told_the_one_to_give(server):  # noqa: F811
    """What a user of an OpenAI client sees (`client.chat.completions.create` raises it), and a path that is
    no route under /v1 either is told where the routes are listed, as before."""
    client = OpenAI(base_url=server[0], api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}], max_tokens=3)
    assert f"did you mean POST /v1/chat/completions? An OpenAI client's base URL {server[0]}/v1" in str(caught.value)
    unknown = httpx.get(f"{server[0]}/favicon.ico").json()["error"]["message"]
    assert unknown == "GET /favicon.ico: no such endpoint; GET /openapi.json lists this server's"
