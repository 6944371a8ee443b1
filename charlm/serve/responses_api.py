"""OpenAI's Responses API as charlm speaks it: the bodies of POST /v1/responses and of
/v1/responses/input_tokens checked into protocol.py's `Params`: their `input` (a text or messages) and
`instructions` made one prompt, `include`, `text` and `metadata` read, and the fields that would need a
response kept refused saying why. The fields they share with chat (`common`) are protocol.py's.
"""

from __future__ import annotations

import json
from typing import Any

from ..config import COUNT_PENALTIES, SampleConfig
from .api_error import APIError, shown
from .config import ServeConfig
from .json_fields import integer, json_object, json_type, known_fields, one_of, required, string, unrecognized
from .protocol import (
    COMMON,
    MAX_LOGPROBS,
    MAX_METADATA_VALUE,
    NEUTRAL,
    NULL_ONLY,
    USER_FIELDS,
    Params,
    check_encodable,
    check_field_names,
    check_prompts,
    common,
    joined,
    user_string,
)

# OpenAI's Responses API (POST /v1/responses): one message written, so no `n`; its length is
# `max_output_tokens`. charlm's extras (`top_k`, `seed`, `stop`, `logit_bias`, `form`...) as elsewhere.
RESPONSE_FIELDS = (COMMON - {"n", "max_tokens"}) | {
    "input", "instructions", "max_output_tokens", "metadata", "text", "include", "top_logprobs", *USER_FIELDS,
}  # fmt: skip
# what `include` can ask a response for: its text's log-probabilities (a message of text is all charlm writes)
INCLUDE_LOGPROBS = "message.output_text.logprobs"
# Its fields that change nothing at these values: no tools to call, a reply that is never cut to fit
# (`truncation` "disabled": a prompt over --max-prompt is a 400), nothing run in the background; OpenAI's
# Responses API has no presence or frequency penalty, so a client that sends chat's at 0 is not refused
RESPONSE_NEUTRAL = NEUTRAL | {
    "frequency_penalty": (0,), "presence_penalty": (0,),
    "tool_choice": ("none", "auto"), "parallel_tool_calls": (True, False), "truncation": ("disabled",),
    "background": (False,),
}  # fmt: skip
ECHOED_TOOL_SETTINGS = {"tool_choice": "none", "parallel_tool_calls": False}  # as a response says them, unless given
# Its fields for what charlm does not do (stored responses and conversations, reasoning, tools, prompt
# templates), taken as null only
RESPONSE_NULL_ONLY = NULL_ONLY | {
    "previous_response_id", "conversation", "reasoning", "prompt", "max_tool_calls",
    "context_management", "background_options", "access_programs", "image",
}  # fmt: skip
# Why charlm serve answers no request that needs a response kept: one wording, for the fields that ask it
# and the routes of a stored response (app.py)
KEEPS_NO_RESPONSE = "charlm serve keeps no response (each is `store: false`)"
# The Responses API's fields that would need a response kept or an input cut, and chat's penalties, which it
# lacks: why each is refused, what to do
RESPONSE_REFUSALS = {
    "store": f"{KEEPS_NO_RESPONSE}: leave store out (or false), and keep what responses.create returns",
    "previous_response_id": f"{KEEPS_NO_RESPONSE} to continue: send the whole conversation in `input`",
    "conversation": f"{KEEPS_NO_RESPONSE} nor conversation: send the whole conversation in `input`",
    "background": f"{KEEPS_NO_RESPONSE} to fetch later, so none runs in the background: leave background out "
    "(or false), and stream a long response (stream: true)",
    **{
        name: f"OpenAI's Responses API has no {name}: leave it out (or 0), or send the request to "
        "/v1/chat/completions, which takes it"
        for name in COUNT_PENALTIES
    },
    "truncation": "charlm serve never cuts an input to fit (one over --max-prompt is a 400): leave truncation out "
    '(or "disabled"), and send a shorter input',
}
# POST /v1/responses/input_tokens (`client.responses.input_tokens.count`): a response's prompt, counted;
# `personality` is its own field (a style preset, which charlm has none of), taken as null only
INPUT_TOKENS_FIELDS = {"model", "input", "instructions", "text"}
INPUT_TOKENS_NULL_ONLY = {"personality"}
# OpenAI's bounds on `metadata`: pairs, a key's characters (a value's, MAX_METADATA_VALUE, bounds the user
# fields too)
MAX_METADATA, MAX_METADATA_KEY = 16, 64
# the roles of the Responses API's input messages
INPUT_ROLES = ("user", "assistant", "system", "developer")
# an input message's text parts: its own, and an assistant's earlier output as a client sends it back
INPUT_TEXT_PARTS = ("input_text", "output_text")
# an input message's fields: those of OpenAI's input message, and of an earlier response's output message
INPUT_MESSAGE_FIELDS = ("type", "role", "content", "id", "status")


def response_params(body: Any, config: ServeConfig) -> tuple[Params, dict]:
    """The Responses API, read as chat is (`protocol.chat_params`), its prompt `response_prompt`'s; `params.logprobs`
    is not None where `include` asks for log-probabilities. Returns the params and what a response echoes
    as given: `instructions`, `max_output_tokens`, `metadata`, `top_logprobs` and the user's strings."""
    body = check_field_names(body, RESPONSE_FIELDS, RESPONSE_NEUTRAL, RESPONSE_NULL_ONLY, RESPONSE_REFUSALS)
    instructions, prompt = response_prompt(body)
    options = body.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:  # a response's last event always has usage
        raise unrecognized("stream_options.include_usage")
    limit = "charlm serve --max-tokens"
    given = integer(body, "max_output_tokens", None, 1, config.max_tokens, limit)
    params = common(body, config, [prompt], given, min(SampleConfig.length, config.max_tokens), "input")
    echoed_user = {"user": echoable(params.user, "user")}  # read by `common`, which every endpoint's request has
    echoed_user |= {name: echoable(user_string(body, name), name) for name in USER_FIELDS}
    text_format(body)
    params.logprobs = response_logprobs(body)
    echoed = {"instructions": instructions, "max_output_tokens": given, "metadata": metadata_of(body)}
    echoed |= {"top_logprobs": integer(body, "top_logprobs", None, 0, MAX_LOGPROBS) or 0, **echoed_user}
    echoed |= {
        name: body[name] if body.get(name) is not None else value for name, value in ECHOED_TOOL_SETTINGS.items()
    }
    return params, echoed


def input_tokens_params(body: Any, config: ServeConfig) -> tuple[str | None, str]:
    """The model and the prompt whose characters `input_tokens.count` counts: what `response_params`
    reads from the same `input` and `instructions`, refused where a response would be."""
    null_only = RESPONSE_NULL_ONLY | INPUT_TOKENS_NULL_ONLY
    body = check_field_names(body, INPUT_TOKENS_FIELDS, RESPONSE_NEUTRAL, null_only, RESPONSE_REFUSALS)
    _, prompt = response_prompt(body)
    check_prompts([prompt], config, "input")
    text_format(body)
    return string(body, "model"), prompt


def response_prompt(body: dict) -> tuple[str | None, str]:
    """A response's `instructions` and the prompt they make with its `input`: `instructions` a system
    message before the input's, a blank line between texts and after the last (`joined`)."""
    if body.get("input") is None:
        raise APIError(400, "input is required: a text, or a list of messages", "input", "missing_required_parameter")
    instructions = echoable(string(body, "instructions"), "instructions")
    return instructions, joined([instructions or "", *input_texts(body["input"])])


def echoable(value: str | None, name: str) -> str | None:
    """A string field a response echoes (`user`, `instructions`) as read: a lone surrogate in it, which JSON
    allows ("\\ud800") and no answer can carry, is a 400 naming it, never a 500 as the answer is written."""
    if value is not None:
        check_encodable(value, name)
    return value


def response_logprobs(body: dict) -> int | None:
    """`include` and `top_logprobs`: the alternatives per token a response's text reports (as chat's
    `logprobs: true` and `top_logprobs`), None where `include` does not ask for log-probabilities.
    `top_logprobs` alone is refused: OpenAI's answers it with no log-probabilities, and no word why."""
    include = body.get("include")
    if include is not None and not isinstance(include, list):
        raise APIError(400, f"include must be a list, not {json_type(include)}", "include", "invalid_type")
    for i, item in enumerate(include or []):
        if item != INCLUDE_LOGPROBS:
            param = f"include[{i}]"
            what = json.dumps(shown(item), ensure_ascii=False) if isinstance(item, str) else json_type(item)
            raise APIError(
                400, f"{param} is {what}; a charlm response is one message of text, whose log-probabilities "
                f"(\"{INCLUDE_LOGPROBS}\") are all it can include: leave the others out", param, "unsupported_value",
            )  # fmt: skip
    wants = bool(include)
    top = integer(body, "top_logprobs", None, 0, MAX_LOGPROBS)
    if top is not None and not wants:
        raise APIError(400, f'top_logprobs needs include: ["{INCLUDE_LOGPROBS}"]', "top_logprobs", "invalid_value")
    return (top or 0) if wants else None


def input_texts(given: Any) -> list[str]:
    """The texts of the Responses API's `input`: a string (the user's), or messages, each a role and a
    content that is a string or text parts (`input_text`; an assistant's earlier `output_text` too, as a
    client sends a response's output back). Anything else (images, files, tool calls) is a 400 naming it."""
    if isinstance(given, str):
        return [given]
    if not isinstance(given, list):
        raise APIError(
            400, f"input must be a string or a list of messages, not {json_type(given)}", "input", "invalid_type"
        )
    if not given:  # as chat refuses `messages: []`: no prompt but a blank line
        raise APIError(400, "input must be a string or a non-empty list of messages", "input", "invalid_value")
    texts = []
    for i, item in enumerate(given):
        param = f"input[{i}]"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind != "message":
            what = f"a {shown(kind)} item" if isinstance(kind, str) else json_type(item)
            raise APIError(
                400, f"{param} is {what}; charlm takes messages of text: {{role, content: a string or "
                "input_text parts}", param, "unsupported_value",
            )  # fmt: skip
        known_fields(item, INPUT_MESSAGE_FIELDS, param)
        required(item, "role", param, f"who says it, one of {', '.join(INPUT_ROLES)}")
        one_of(item, "role", INPUT_ROLES, param)
        required(item, "content", param, "its text, a string or input_text parts")
        content = item.get("content")
        parts = [content] if isinstance(content, str) else content if isinstance(content, list) else [None]
        if not all(
            isinstance(p, str)
            or (isinstance(p, dict) and p.get("type") in INPUT_TEXT_PARTS and isinstance(p.get("text"), str))
            for p in parts
        ):
            raise APIError(
                400, f"{param}.content must be text (a string or input_text parts)", f"{param}.content", "invalid_type"
            )
        texts.append("".join(p if isinstance(p, str) else p["text"] for p in parts))
    return texts


def text_format(body: dict) -> None:
    """The Responses API's `text`: plain text only (`{"format": {"type": "text"}}`), which is what a
    charlm model writes; a JSON schema or JSON object format is refused naming `text.format`."""
    for name, value in (json_object(body, "text") or {}).items():
        if value is None or (name == "format" and value == {"type": "text"}):
            continue
        param = f"text.{shown(name)}"
        if name in ("format", "verbosity"):
            what = "plain text only" if name == "format" else "no verbosity"
            raise APIError(
                400, f"{param} is not supported by charlm ({what}); leave it out", param, "unsupported_parameter"
            )
        raise unrecognized(param)


def metadata_of(body: dict) -> dict[str, str]:
    """`metadata`, echoed in the response: at most 16 pairs of strings, as OpenAI bounds it."""
    value = json_object(body, "metadata")
    if value is None:
        return {}
    if len(value) > MAX_METADATA:
        raise APIError(
            400, f"metadata may hold at most {MAX_METADATA} pairs, not {len(value)}", "metadata", "invalid_value"
        )
    for key, text in value.items():
        for part in (key, text if isinstance(text, str) else ""):  # echoed: a lone surrogate could not be
            check_encodable(part, "metadata")
        if not isinstance(text, str) or len(key) > MAX_METADATA_KEY or len(text) > MAX_METADATA_VALUE:
            raise APIError(
                400, f"metadata[{json.dumps(shown(key), ensure_ascii=False)}]: a key of at most {MAX_METADATA_KEY} "
                f"characters to a string of at most {MAX_METADATA_VALUE}", "metadata", "invalid_value",
            )  # fmt: skip
    return value
