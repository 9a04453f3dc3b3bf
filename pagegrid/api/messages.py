"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` (also under ``/v1/v1``)."""

from __future__ import annotations

from functools import partial

from flask import Response
from flask import current_app
from flask import g
from flask import json

from pagegrid import limits
from pagegrid.api import bp
from pagegrid.api import relay
from pagegrid.errors import InvalidRequest
from pagegrid.errors import UpstreamError
from pagegrid.translate.usage import usage_from_anthropic

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _serves_messages(provider: str) -> bool:
    return provider == "anthropic"


@bp.post("/messages")
@bp.post("/v1/messages")
@limits.model_calls
def messages() -> Response:
    """Create a message, streaming or not, and charge the wallet for its usage."""
    key = limits.current_key()
    body, raw = relay.read_json_body()
    relay.require(body, "model", str)
    relay.require(body, "max_tokens", int, positive=True)
    relay.require(body, "messages", list)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    model = relay.resolve_model(body["model"], key)
    if not _serves_messages(model.provider):
        raise InvalidRequest(f"{model.id} is served on /v1/chat/completions and /v1/responses.",
                             param="model")
    admitted = relay.admit(key, model, g.request_id, len(raw), body["max_tokens"])
    handed_off = False
    try:
        reply = relay.send(model, "/v1/messages", relay.upstream_body(body, raw, model), stream)
        if stream:
            generator = relay.relay_anthropic_stream(current_app._get_current_object(), admitted, reply)
            handed_off = True
            return Response(generator, mimetype="text/event-stream", headers=SSE_HEADERS)
        payload = reply.read()
        try:
            usage = usage_from_anthropic(json.loads(payload).get("usage"))
        except (ValueError, AttributeError):
            raise UpstreamError("The upstream provider answered with a malformed message.") from None
        response = Response(payload, mimetype="application/json")
        # Charged once the answer is on its way: the client does not wait for the ledger write.
        response.call_on_close(partial(relay.settle, current_app._get_current_object(), admitted,
                                       usage, "complete"))
        handed_off = True
        return response
    finally:
        if not handed_off:
            relay.release(admitted)


@bp.post("/messages/count_tokens")
@bp.post("/v1/messages/count_tokens")
@limits.token_counting
def count_tokens() -> Response:
    """Count a request's input tokens upstream; free, and outside the key's request budget."""
    key = limits.current_key()
    body, raw = relay.read_json_body()
    relay.require(body, "model", str)
    relay.require(body, "messages", list)
    model = relay.resolve_model(body["model"], key)
    if not _serves_messages(model.provider):
        raise InvalidRequest(f"Token counting is only available for Claude models, not {model.id}.",
                             param="model")
    reply = relay.send(model, "/v1/messages/count_tokens", relay.upstream_body(body, raw, model),
                       stream=False)
    return Response(reply.read(), mimetype="application/json")
