"""``POST /v1/chat/completions`` (also under ``/v1/v1``) for every model in the catalog.

GPT models pass through to OpenAI, with the final usage chunk always requested so every
stream is metered (and hidden again from a client that did not ask for it). Claude models are
translated to the Messages API and back.
"""

from __future__ import annotations

import json
import secrets
import time

from flask import Response
from flask import g

from pagegrid.api import bp
from pagegrid.api import relay
from pagegrid.api.streams import DONE
from pagegrid.api.streams import Passthrough
from pagegrid.api.streams import Translated
from pagegrid.api.streams import chat_error
from pagegrid.api.streams import frame_chat
from pagegrid.catalog import ModelEntry
from pagegrid.errors import InvalidRequest
from pagegrid.translate.chat_to_messages import anthropic_message_to_openai_chat
from pagegrid.translate.chat_to_messages import openai_chat_request_to_anthropic
from pagegrid.translate.messages_to_chat_stream import AnthropicToOpenAIChatStream
from pagegrid.translate.usage import AnthropicUsageMeter
from pagegrid.translate.usage import OpenAIChatUsageMeter
from pagegrid.translate.usage import Usage
from pagegrid.translate.usage import anthropic_message_usage
from pagegrid.translate.usage import usage_from_openai_chat


def _usage_only(chunk: dict) -> bool:
    return not chunk.get("choices") and isinstance(chunk.get("usage"), dict)


def _max_tokens(body: dict, model: ModelEntry) -> int:
    for field in ("max_completion_tokens", "max_tokens"):
        value = body.get(field)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"{field}: must be a positive integer", param=field)
            return value
    return model.max_output


@bp.post("/chat/completions")
@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    """Create a chat completion, streaming or not, and charge the wallet for its usage."""
    key, body, raw = relay.begin()
    relay.require(body, "model", str)
    relay.require(body, "messages", list)
    stream = relay.stream_flag(body)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("stream_options: must be an object", param="stream_options")
    include_usage = bool((options or {}).get("include_usage"))
    model = relay.resolve_model(body["model"], key)
    route = relay.route(model, key, body)
    if route.dialect == "openai":
        exchange = _passthrough(route, body, raw, model, stream, include_usage)
    else:
        exchange = _through_messages(route, body, model, stream, include_usage)
    return relay.run(key, model, g.request_id, len(raw), exchange)


def _passthrough(route: relay.Route, body: dict, raw: bytes, model: ModelEntry, stream: bool,
                 include_usage: bool) -> relay.Exchange:
    """A GPT model: the client's body, with the model id and (streaming) include_usage set."""
    _max_tokens(body, model)
    upstream, same = relay.passthrough(body, raw, model)
    if stream and not include_usage:
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        upstream = {**upstream, "stream_options": options}
        same = None
    if model.thinking and "max_tokens" in body and "max_completion_tokens" not in body:
        # OpenAI's reasoning models refuse max_tokens on Chat Completions and take this instead.
        upstream = {k: v for k, v in upstream.items() if k != "max_tokens"}
        upstream["max_completion_tokens"] = body["max_tokens"]
        same = None
    return relay.Exchange(
        route, "/v1/chat/completions", upstream, same, stream,
        meter=lambda: OpenAIChatUsageMeter(relay.estimated_tokens(raw)),
        plan=lambda: Passthrough(chat_error, hide=None if include_usage else _usage_only),
        convert=lambda data: (data, usage_from_openai_chat(json.loads(data).get("usage"))))


def _through_messages(route: relay.Route, body: dict, model: ModelEntry, stream: bool,
                      include_usage: bool) -> relay.Exchange:
    """A Claude model: translate to the Messages API and back."""
    request = openai_chat_request_to_anthropic(body, upstream_model=model.upstream_id,
                                               default_max_tokens=model.max_output)
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())

    def convert(data: bytes) -> tuple[bytes, Usage]:
        message = json.loads(data)
        completion = anthropic_message_to_openai_chat(message, model=model.id,
                                                      completion_id=completion_id, created=created)
        return relay.dumps(completion), anthropic_message_usage(message)

    return relay.Exchange(
        route, "/v1/messages", request, None, stream,
        meter=AnthropicUsageMeter,
        plan=lambda: Translated(AnthropicToOpenAIChatStream(model=model.id, completion_id=completion_id,
                                                            created=created, include_usage=include_usage),
                                frame_chat, chat_error, done=DONE),
        convert=convert)
