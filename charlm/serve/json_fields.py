"""A JSON object's fields read by type: each reader takes a field's value or says, as an `APIError` (a 400)
naming the field, what type or range it must have. protocol.py reads OpenAI's requests with them."""

from __future__ import annotations

import json
import math
from typing import Any

from .api_error import APIError, shown


def integer(body: dict, name: str, default: int | None, low: int, high: int, limit: str = "") -> int | None:
    """`body[name]`: an integer, or a number that is one (`1.0`: an integer to JSON Schema, and to pydantic's
    lax int, which vLLM and OpenAI's SDK read it with; `max_tokens=n / 2` in Python sends one), never `1.5`."""
    value = body.get(name)
    if value is None:
        return default
    given = value
    if isinstance(value, float) and value.is_integer():  # not NaN nor infinity
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise APIError(400, f"{name} must be an integer, not {json_type(value)}", name, "invalid_type")
    if not low <= value <= high:
        where = f" ({limit})" if limit else ""
        raise APIError(
            400, f"{name} must be between {low} and {high}{where}, not {shown(given)}", name, "invalid_value"
        )
    return value


def number(
    body: dict, name: str, default: float | None, low: float, high: float, open_low: bool = False, within: str = ""
) -> float | None:
    """`body[name]`; `within` names the object that holds it (`logit_bias`), which is the error's param."""
    value = body.get(name)
    if value is None and not within:
        return default
    named, param = (f"{within}[{json.dumps(name)}]", within) if within else (name, name)
    finite = not isinstance(value, float) or math.isfinite(value)  # an int is (isfinite of 10**400 raises: a 500)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not finite:
        raise APIError(400, f"{named} must be a number, not {json_type(value)}", param, "invalid_type")
    if not (low < value if open_low else low <= value) or value > high:
        bounds = f"{'above' if open_low else 'at least'} {low} and at most {high}"
        raise APIError(400, f"{named} must be {bounds}, not {shown(value)}", param, "invalid_value")
    return float(value)


def boolean(body: dict, name: str, default: bool, within: str = "") -> bool:
    """`body[name]`; `within` names the object that holds it (`stream_options`) in an error."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        param = f"{within}.{name}" if within else name
        raise APIError(400, f"{param} must be true or false, not {json_type(value)}", param, "invalid_type")
    return value


def strings(body: dict, name: str, most: int, ids_hint: str = "") -> list[str] | None:
    """A string or a list of strings, or None; `ids_hint` is said of an item that is an integer or a list
    (token ids, where a client's API takes them in place of text)."""
    value = body.get(name)
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list):
        raise APIError(
            400, f"{name} must be a string or a list of strings, not {json_type(value)}", name, "invalid_type"
        )
    for i, v in enumerate(values):
        if not isinstance(v, str):  # name the item: "not a list" would not say what is wrong in the list
            hint = f" ({ids_hint})" if ids_hint and isinstance(v, (int, list)) else ""
            message = f"{name} must be a string or a list of strings; {name}[{i}] is {json_type(v)}{hint}"
            raise APIError(400, message, name, "invalid_type")
    if len(values) > most:
        raise APIError(400, f"{name} may hold at most {most} strings, not {len(values)}", name, "invalid_value")
    return values


def string(body: dict, name: str) -> str | None:
    """`body[name]`: a string or None."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise APIError(400, f"{name} must be a string, not {json_type(value)}", name, "invalid_type")
    return value


def json_object(body: dict, name: str) -> dict | None:
    """`body[name]`: an object or None; every object field (`stream_options`, `logit_bias`, `text`,
    `metadata`) is refused in this one wording, which names what came instead."""
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise APIError(400, f"{name} must be an object, not {json_type(value)}", name, "invalid_type")
    return value


def known_fields(value: dict, known: set[str] | tuple[str, ...], within: str) -> None:
    """`value`, an object within the body (`within`: `stream_options`, `messages[0]`), has only `known`
    fields: another is a 400 naming it, as OpenAI's is, where ignored a typo (`contnet`) would be dropped
    without a word."""
    for name in value:
        if name not in known:
            raise unrecognized(f"{within}.{shown(name)}")


def unrecognized(param: str) -> APIError:
    """A field charlm does not know, in OpenAI's words: one wording wherever it sits (the body, an object
    in it), so a client that matches OpenAI's message matches charlm's."""
    return APIError(400, f"unrecognized request argument supplied: {param}", param, "unknown_parameter")


def required(value: dict, name: str, within: str, what: str, nullable: bool = False) -> None:
    """`value`, an object within the body (`messages[0]`), has the field `name`, `what` it holds: left out
    (or null, the field left out, unless `nullable` as OpenAI's spec has a few), a 400 naming it, where read
    as empty a message that lost its text on the way would be answered as nothing."""
    if name not in value or (value[name] is None and not nullable):
        param = f"{within}.{name}"
        raise APIError(400, f"{param} is required: {what}", param, "missing_required_parameter")


def one_of(value: dict, name: str, choices: tuple[str, ...], within: str) -> None:
    """`value`'s field `name` (a message's `role`) is one of `choices`: another is a 400 naming it, as OpenAI
    refuses it, so that a misspelled one is told, not taken for a word that changes nothing."""
    given = value.get(name)
    if given not in choices:
        param = f"{within}.{name}"
        what = repr(shown(given)) if isinstance(given, str) else json_type(given)
        raise APIError(400, f"{param} must be one of {', '.join(choices)}, not {what}", param, "invalid_value")


def json_type(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    if isinstance(value, float) and not math.isfinite(value):  # 1e400 in JSON reads as infinity
        return "a number too large for a float" if math.isinf(value) else "NaN"
    return "null" if value is None else names.get(type(value), type(value).__name__)


def json_equal(value: Any, neutral: Any) -> bool:
    """`value == neutral` as JSON Schema's `enum` (which /openapi.json gives a neutral field) compares them:
    numbers by value (1.0 is 1, as `integer` takes it), a boolean only to a boolean (`false` is not 0),
    lists and objects item by item."""
    if isinstance(value, bool) or isinstance(neutral, bool):
        return value is neutral
    if isinstance(value, (int, float)) and isinstance(neutral, (int, float)):
        return value == neutral
    if isinstance(value, list) and isinstance(neutral, list):
        return len(value) == len(neutral) and all(map(json_equal, value, neutral))
    if isinstance(value, dict) and isinstance(neutral, dict):
        return value.keys() == neutral.keys() and all(json_equal(value[key], neutral[key]) for key in neutral)
    return type(value) is type(neutral) and value == neutral
