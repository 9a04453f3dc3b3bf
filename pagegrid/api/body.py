"""The request body of a model call: read once, within a deadline, parsed and validated once,
before any database work. One validator per endpoint names what its dialect requires."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from flask import current_app
from flask import request
from gevent import Timeout
from gevent import monkey

from pagegrid.errors import GatewayError
from pagegrid.errors import InvalidRequest
from pagegrid.json_types import JSON


def read_body() -> bytes:
    """The request body, or 408 if the client takes longer than PAGEGRID_BODY_TIMEOUT to send it.

    A slow upload holds nothing but its own greenlet: no database connection is taken before
    the body is here (and Werkzeug refuses bodies above MAX_CONTENT_LENGTH with 413).
    """
    seconds = current_app.config["PAGEGRID_BODY_TIMEOUT"]
    if not monkey.is_module_patched("socket"):  # no gevent (tests, the dev server): no deadline
        return request.get_data(cache=False)
    try:
        with Timeout(seconds):
            return request.get_data(cache=False)
    except Timeout:
        # The rest of the body is still on its way: close the connection rather than drain it.
        raise GatewayError(f"The request body did not arrive within {seconds:g} seconds.", status=408,
                           error_type="invalid_request_error", headers={"connection": "close"}) from None


# A JSON escape of a UTF-16 surrogate: only a body with one can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes) -> JSON:
    """The body as a JSON object; 400 for anything else (bad syntax, invalid UTF-8, lone
    surrogates, nesting too deep to parse)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.") from None
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise InvalidRequest("The request body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff).")
    return body


def _has_lone_surrogate(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def require(body: dict, field: str, kind: type, *, positive: bool = False) -> None:
    """Raise InvalidRequest unless ``body[field]`` is present and of ``kind``."""
    value = body.get(field)
    if value is None:
        raise InvalidRequest(f"{field}: Field required", param=field)
    if not isinstance(value, kind) or isinstance(value, bool) or (
            positive and isinstance(value, int) and value < 1):
        article = "a positive integer" if positive else f"a {kind.__name__}"
        raise InvalidRequest(f"{field}: must be {article}", param=field)


def positive_int(body: dict, field: str) -> None:
    """Raise InvalidRequest unless ``body[field]`` is absent or a positive integer."""
    if body.get(field) is not None:
        require(body, field, int, positive=True)


def stream_flag(body: dict) -> bool:
    """The body's ``stream`` flag (400 unless it is a boolean)."""
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    return stream


def messages_body(body: dict) -> None:
    """``POST /v1/messages``: model, max_tokens and messages."""
    require(body, "model", str)
    require(body, "max_tokens", int, positive=True)
    require(body, "messages", list)


def count_tokens_body(body: dict) -> None:
    """``POST /v1/messages/count_tokens``: model and messages."""
    require(body, "model", str)
    require(body, "messages", list)


def chat_body(body: dict) -> None:
    """``POST /v1/chat/completions``: model and messages; an optional token limit and
    ``stream_options`` object."""
    require(body, "model", str)
    require(body, "messages", list)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("stream_options: must be an object", param="stream_options")
    for field in ("max_completion_tokens", "max_tokens"):
        positive_int(body, field)


def responses_body(body: dict) -> None:
    """``POST /v1/responses``: model and input (a string or a list of items)."""
    require(body, "model", str)
    if not isinstance(body.get("input"), (str, list)):
        raise InvalidRequest("input: Field required (a string or a list of items)", param="input")
    positive_int(body, "max_output_tokens")


Validator = Callable[[dict], None]
