"""The shapes of the answers charlm writes to OpenAI's API: ids, usage, log-probabilities, the completion
and chat bodies and stream chunks, and the Responses API's response objects, each a plain dict (answers.py
fills them from a request's updates; protocol.py checks the requests)."""

from __future__ import annotations

import uuid

from .engine import Token
from .token_labels import label_bytes


def new_id(prefix: str, separator: str = "-") -> str:
    """An id as OpenAI's look: `chatcmpl-...`; the Responses API's `resp_...` and `msg_...`."""
    return f"{prefix}{separator}{uuid.uuid4().hex[:24]}"


def usage(prompt_chars: int, completion_chars: int) -> dict:
    return {
        "prompt_tokens": prompt_chars,
        "completion_tokens": completion_chars,
        "total_tokens": prompt_chars + completion_chars,
    }


def timings(prompt_chars: int, prompt_ms: float, predicted_chars: int, predicted_ms: float) -> dict:
    """llama.cpp's per-response timings, in characters."""

    def per(count: int, ms: float) -> tuple[float | None, float | None]:
        return (ms / count if count else None), (count / ms * 1000 if ms > 0 else None)

    prompt_per_char, prompt_rate = per(prompt_chars, prompt_ms)
    predicted_per_char, predicted_rate = per(predicted_chars, predicted_ms)
    return {
        "prompt_n": prompt_chars,
        "prompt_ms": round(prompt_ms, 3),
        "prompt_per_token_ms": prompt_per_char,
        "prompt_per_second": prompt_rate,
        "predicted_n": predicted_chars,
        "predicted_ms": round(predicted_ms, 3),
        "predicted_per_token_ms": predicted_per_char,
        "predicted_per_second": predicted_rate,
    }


def completion_logprobs(tokens: list[Token], offset: int) -> dict:
    """The legacy completions form: parallel lists, `text_offset` counted from the start of the
    choice's text (echoed prompt included)."""
    offsets, at = [], offset
    for token in tokens:
        offsets.append(at)
        at += len(token.text)
    return {
        "tokens": [t.text for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [top_entry(t) for t in tokens],
        "text_offset": offsets,
    }


def top_entry(token: Token) -> dict | None:
    """A token's `top_logprobs`: its alternatives and the token itself, as OpenAI's reference has it
    ("always ... the logprob of the sampled token, so there may be up to logprobs+1 elements"):
    `logprobs: 0` gives the token alone, not `{}`. None where nothing predicted the token."""
    if token.top is None:
        return None
    top = dict(token.top)
    if token.logprob is not None:  # a character the model never saw has no logprob to list
        # a piece a stop cut short is listed as drawn: its logprob is the whole piece's, not its part's
        top.setdefault(token.drawn or token.text, token.logprob)
    return top


def chat_logprobs(tokens: list[Token]) -> dict:
    """The chat form; `refusal` (the log-probabilities of a refusal, which charlm never writes) is
    null, as the reference requires it present."""
    return {"content": token_logprobs(tokens), "refusal": None}


def token_logprobs(tokens: list[Token]) -> list[dict]:
    """Each token as chat's `logprobs.content` and the Responses API's `output_text.logprobs` both
    list it: `{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`."""

    def entry(text: str, logprob: float) -> dict:
        return {"token": text, "logprob": logprob, "bytes": list(label_bytes(text))}

    return [{**entry(t.text, t.logprob), "top_logprobs": [entry(a, lp) for a, lp in t.top or []]} for t in tokens]


def response(
    kind: str,
    id_: str,
    created: int,
    model: str,
    fingerprint: str,
    choices: list[dict],
    use: dict | None,
    times: dict | None = None,
) -> dict:
    """A response of `kind` (its `object`: "text_completion", "chat.completion" or
    "chat.completion.chunk"); with `use` None a streamed chunk (which has no usage). `created` is the
    request's: every chunk of a stream has the same, as OpenAI's do; `fingerprint` is the model's
    `system_fingerprint` (server.py)."""
    body = {"id": id_, "object": kind, "created": created, "model": model, "system_fingerprint": fingerprint}
    body["choices"] = choices
    if use is not None:
        body["usage"] = use
    return body | ({"timings": times} if times else {})


def completion_choice(index: int, text: str, logprobs: dict | None, finish_reason: str | None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def chat_choice(
    index: int, text: str, logprobs: dict | None, finish_reason: str | None, delta: bool = False, role: bool = True
) -> dict:
    """A chat choice; a stream's deltas give the role in a choice's first only (`role`), as OpenAI's
    do: the official client's stream helper joins every string a delta repeats. `refusal` is null
    (charlm never refuses in words): the reference requires it in a message, and OpenAI's streams
    give it in the first delta."""
    message = {"role": "assistant", "content": text, "refusal": None} if role else {"content": text}
    return {
        "index": index,
        "delta" if delta else "message": message,
        "logprobs": logprobs,
        "finish_reason": finish_reason,
    }


def response_usage(prompt_chars: int, output_chars: int) -> dict:
    """The Responses API's usage, in characters; charlm caches no prompt and does not reason."""
    return {
        "input_tokens": prompt_chars,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_chars,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_chars + output_chars,
    }


def output_text(text: str, logprobs: list[dict] | list[str] | None = None) -> dict:
    """A message's text part; charlm writes no citations (`annotations`); `logprobs` its tokens'
    (`token_logprobs`) where `include` asked for them, else empty, as OpenAI's. A stream's closing events
    give a list of one placeholder string instead, which their JSON's entries replace (answers.py's `slot`)."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def output_message(id_: str, text: str | None, status: str, logprobs: list[dict] | list[str] | None = None) -> dict:
    """The one output item of a response: an assistant message, `text` None while it has no part yet;
    `logprobs` as `output_text`'s."""
    content = [] if text is None else [output_text(text, logprobs)]
    return {"type": "message", "id": id_, "status": status, "role": "assistant", "content": content}


def response_status(finish_reason: str | None) -> str:
    """`completed`, or `incomplete` for a text `max_output_tokens` cut (finish reason `length`)."""
    return "incomplete" if finish_reason == "length" else "completed"


def response_object(
    id_: str, created: int, model: str, status: str, output: list[dict], use: dict | None, settings: dict
) -> dict:
    """A Responses API `response`: `status` in_progress (a stream's first events: no output, no usage yet),
    completed or incomplete; `settings` are the request's as a response echoes them (`instructions`,
    `max_output_tokens`, `metadata`, `temperature`, `top_p`, `top_logprobs`, `tool_choice`,
    `parallel_tool_calls`, `user`, `safety_identifier`, `prompt_cache_key`)."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": id_,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "previous_response_id": None,
        "reasoning": None,
        "service_tier": "default",  # the tier that served it, whatever the request's (OpenAI's "auto" too)
        "store": False,
        "text": {"format": {"type": "text"}},
        "tools": [],
        "truncation": "disabled",
        "usage": use,
        **settings,
    }
