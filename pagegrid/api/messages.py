"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` (also under ``/v1/v1``).

Claude models pass through to Anthropic unchanged; GPT models are translated to Chat
Completions and back.
"""

from __future__ import annotations

import json
import secrets

from flask import Response
from flask import g

from pagegrid.api import bp
from pagegrid.api import relay
from pagegrid.api.streams import Passthrough
from pagegrid.api.streams import Translated
from pagegrid.api.streams import anthropic_error
from pagegrid.api.streams import frame_named
from pagegrid.catalog import ModelEntry
from pagegrid.errors import InvalidRequest
from pagegrid.translate.chat_to_messages_stream import OpenAIChatToAnthropicStream
from pagegrid.translate.messages_to_chat import anthropic_request_to_openai_chat
from pagegrid.translate.messages_to_chat import openai_chat_to_anthropic_message
from pagegrid.translate.usage import AnthropicUsageMeter
from pagegrid.translate.usage import OpenAIChatUsageMeter
from pagegrid.translate.usage import Usage
from pagegrid.translate.usage import anthropic_message_usage
from pagegrid.translate.usage import usage_from_openai_chat


@bp.post("/messages")
@bp.post("/v1/messages")
def messages() -> Response:
    """Create a message, streaming or not, and charge the wallet for its usage."""
    key, body, raw = relay.begin()
    relay.require(body, "model", str)
    relay.require(body, "max_tokens", int, positive=True)
    relay.require(body, "messages", list)
    stream = relay.stream_flag(body)
    model = relay.resolve_model(body["model"], key)
    route = relay.route(model, key, body)
    if route.dialect == "anthropic":
        exchange = relay.Exchange(
            route, "/v1/messages", *relay.passthrough(body, raw, model), stream,
            meter=AnthropicUsageMeter, plan=lambda: Passthrough(anthropic_error),
            convert=lambda data: (data, anthropic_message_usage(json.loads(data))))
    else:
        exchange = _through_chat(route, body, raw, model, stream)
    return relay.run(key, model, g.request_id, len(raw), exchange)


def _through_chat(route: relay.Route, body: dict, raw: bytes, model: ModelEntry,
                  stream: bool) -> relay.Exchange:
    """A GPT model on the Messages API: translate to Chat Completions and back."""
    chat = anthropic_request_to_openai_chat(body, upstream_model=model.upstream_id)
    message_id = "msg_" + secrets.token_hex(12)

    def convert(data: bytes) -> tuple[bytes, Usage]:
        completion = json.loads(data)
        message = openai_chat_to_anthropic_message(completion, model=model.id)
        return relay.dumps(message), usage_from_openai_chat(completion.get("usage"))

    return relay.Exchange(
        route, "/v1/chat/completions", chat, None, stream,
        meter=lambda: OpenAIChatUsageMeter(relay.estimated_tokens(raw)),
        plan=lambda: Translated(OpenAIChatToAnthropicStream(model=model.id, message_id=message_id),
                                frame_named, anthropic_error),
        convert=convert)


@bp.post("/messages/count_tokens")
@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    """Count a request's input tokens upstream; free, and outside the key's request budget."""
    key, body, raw = relay.begin("count-tokens")
    relay.require(body, "model", str)
    relay.require(body, "messages", list)
    model = relay.resolve_model(body["model"], key)
    route = relay.route(model, key, body)
    if route.dialect != "anthropic":
        raise InvalidRequest(f"Token counting is only available for Claude models, not {model.id}.",
                             param="model")
    reply = relay.send(route, "/v1/messages/count_tokens", relay.upstream_body(body, raw, model))
    return Response(reply.read(), mimetype="application/json")


