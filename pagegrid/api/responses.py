"""``POST /v1/responses`` (also under ``/v1/v1``): the API Codex CLI speaks.

GPT models pass through to OpenAI; Claude models are translated to the Messages API and back.
A WebSocket upgrade on ``GET`` answers 426 (see ``api.http_error``) so Codex falls back to
HTTP at once.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from flask import Response
from flask import g

from pagegrid.api import bp
from pagegrid.api import relay
from pagegrid.api.streams import Passthrough
from pagegrid.api.streams import Translated
from pagegrid.api.streams import frame_typed
from pagegrid.api.streams import responses_error
from pagegrid.catalog import ModelEntry
from pagegrid.errors import InvalidRequest
from pagegrid.translate.messages_to_responses_stream import AnthropicToOpenAIResponsesStream
from pagegrid.translate.responses_to_messages import anthropic_message_to_openai_response
from pagegrid.translate.responses_to_messages import openai_responses_request_to_anthropic
from pagegrid.translate.usage import AnthropicUsageMeter
from pagegrid.translate.usage import OpenAIResponsesUsageMeter
from pagegrid.translate.usage import Usage
from pagegrid.translate.usage import anthropic_message_usage
from pagegrid.translate.usage import openai_response_usage

log = logging.getLogger(__name__)


@bp.post("/responses")
@bp.post("/v1/responses")
def responses() -> Response:
    """Create a response, streaming or not, and charge the wallet for its usage."""
    key, body, raw = relay.begin()
    relay.require(body, "model", str)
    if not isinstance(body.get("input"), (str, list)):
        raise InvalidRequest("input: Field required (a string or a list of items)", param="input")
    stream = relay.stream_flag(body)
    model = relay.resolve_model(body["model"], key)
    route = relay.route(model, key, body)
    if route.dialect == "openai":
        limit = body.get("max_output_tokens")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise InvalidRequest("max_output_tokens: must be a positive integer", param="max_output_tokens")
        exchange = relay.Exchange(
            route, "/v1/responses", *relay.passthrough(body, raw, model), stream,
            meter=lambda: OpenAIResponsesUsageMeter(relay.estimated_tokens(raw)),
            plan=lambda: Passthrough(responses_error),
            convert=lambda data: (data, openai_response_usage(json.loads(data))))
    else:
        exchange = _through_messages(route, body, model, stream)
    return relay.run(key, model, g.request_id, len(raw), exchange)


def _through_messages(route: relay.Route, body: dict, model: ModelEntry,
                      stream: bool) -> relay.Exchange:
    """A Claude model: translate to the Messages API and back."""
    request_body, notes = openai_responses_request_to_anthropic(
        body, upstream_model=model.upstream_id, default_max_tokens=model.max_output)
    for note in notes:
        log.info("request %s: %s", g.request_id, note)
    response_id = "resp_" + secrets.token_hex(12)
    created_at = int(time.time())

    def convert(data: bytes) -> tuple[bytes, Usage]:
        message = json.loads(data)
        response = anthropic_message_to_openai_response(message, model=model.id, response_id=response_id,
                                                        created_at=created_at)
        return relay.dumps(response), anthropic_message_usage(message)

    return relay.Exchange(
        route, "/v1/messages", request_body, None, stream,
        meter=AnthropicUsageMeter,
        plan=lambda: Translated(AnthropicToOpenAIResponsesStream(model=model.id, response_id=response_id,
                                                                 created_at=created_at),
                                frame_typed, responses_error),
        convert=convert)
