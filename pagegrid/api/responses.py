"""``/v1/responses`` (also under ``/v1/v1``): the API Codex CLI speaks, and its stored responses.

GPT models pass through to OpenAI; Claude models are translated to the Messages API and back
(dialects.py). A WebSocket upgrade on ``GET`` answers 426 (see ``api.http_error``) so Codex
falls back to HTTP at once.

``GET``/``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` answer for the
user's own stored responses (responses_store.py): a Claude model's from the store, a GPT model's
from the OpenAI account that holds it. Anyone else's id, or one PageGrid does not know, is 404.
"""

from __future__ import annotations

from flask import Response
from flask import current_app
from flask import g
from flask import json
from flask import request

from pagegrid import keys
from pagegrid import pool
from pagegrid import responses_store
from pagegrid.api import bp
from pagegrid.api import pipeline
from pagegrid.errors import NotFound
from pagegrid.models import StoredResponse
from pagegrid.upstream.base import UpstreamReply
from pagegrid.upstream.errors import status_error
from pagegrid.upstream.openai import OpenAIAdapter


@bp.post("/responses")
@bp.post("/v1/responses")
def responses() -> Response:
    """Create a response, streaming or not, and charge the wallet for its usage."""
    return pipeline.handle(pipeline.RESPONSES)


@bp.get("/responses/<response_id>")
@bp.get("/v1/responses/<response_id>")
def retrieve_response(response_id: str) -> Response:
    """The stored Response object."""
    row = _own(response_id)
    if row.provider == "openai":
        return _at_openai(row, "GET", f"/v1/responses/{response_id}")
    return _json(row.response or {})


@bp.delete("/responses/<response_id>")
@bp.delete("/v1/responses/<response_id>")
def delete_response(response_id: str) -> Response:
    """Delete a stored response: ``{"id", "object": "response.deleted", "deleted": true}``."""
    row = _own(response_id)
    answer = _at_openai(row, "DELETE", f"/v1/responses/{response_id}") if row.provider == "openai" else None
    responses_store.forget(row)
    return answer if answer is not None else _json({"id": response_id, "object": "response.deleted",
                                                    "deleted": True})


@bp.get("/responses/<response_id>/input_items")
@bp.get("/v1/responses/<response_id>/input_items")
def list_input_items(response_id: str) -> Response:
    """A stored response's input items as a list object (``limit``, ``order``, ``after``, ``before``)."""
    row = _own(response_id)
    if row.provider == "openai":
        return _at_openai(row, "GET", f"/v1/responses/{response_id}/input_items")
    return _json(responses_store.input_items_page(row.input_items or [], request.args.to_dict()))


def _own(response_id: str) -> StoredResponse:
    """The key's user's stored response, or 404 in OpenAI's words."""
    key = keys.authenticate(request.headers)
    g.api_key = key  # for the request log (requestlog.py)
    row = responses_store.owned(response_id, key.user_id)
    if row is None:
        raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return row


def _at_openai(row: StoredResponse, method: str, path: str) -> Response:
    """Relay a GET or DELETE to the OpenAI account that holds the response (the first that
    serves its model if that account is gone); the provider's errors in the endpoint's dialect."""
    accounts, _, _ = pool.pool().plan("openai", (row.model,), lambda: None)
    account = next((a for a in accounts if a.name == row.upstream), accounts[0] if accounts else None)
    if account is None or account.provider != "openai":
        raise NotFound(f"Response with id '{row.id}' not found: no OpenAI account holds it any more.",
                       param="response_id")
    config = current_app.config
    adapter = OpenAIAdapter(account.target, config["PAGEGRID_UPSTREAM_CONNECT_TIMEOUT"],
                            config["PAGEGRID_UPSTREAM_READ_TIMEOUT"])
    status, body = adapter.fetch(method, path, request.args.to_dict())
    if status != 200:
        raise status_error(UpstreamReply(status, {}, iter([body])))
    return Response(body, mimetype="application/json")


def _json(value: dict) -> Response:
    return Response(json.dumps(value), mimetype="application/json")
