"""Blueprint ``api``: the ``/v1`` routes, CSRF-exempt, errors in the dialect of the path."""

from __future__ import annotations

import logging
import re

from flask import Blueprint
from flask import Response
from flask import g
from flask import json
from flask import request
from werkzeug.exceptions import HTTPException

from pagegrid import limits
from pagegrid.billing import new_request_id
from pagegrid.errors import GatewayError
from pagegrid.errors import InternalError
from pagegrid.errors import InvalidRequest
from pagegrid.errors import NotFound
from pagegrid.errors import RequestTooLarge

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/v1")

_ANTHROPIC_PATH = re.compile(r"^/v1(/v1)?/messages(/|$)")


def is_api_path(path: str) -> bool:
    """True for the paths this blueprint answers (``/v1`` and below)."""
    return path == "/v1" or path.startswith("/v1/")


def dialect(path: str) -> str:
    """``anthropic`` for the Messages API paths, ``openai`` for everything else."""
    return "anthropic" if _ANTHROPIC_PATH.match(path) else "openai"


def error_response(err: GatewayError) -> Response:
    """Render ``err`` for the current request's dialect."""
    body = err.to_anthropic() if dialect(request.path) == "anthropic" else err.to_openai()
    response = Response(json.dumps(body), status=err.status, mimetype="application/json")
    response.headers.update(err.headers)
    return response


def http_error(exc: HTTPException) -> GatewayError:
    """The gateway error for a werkzeug HTTP exception (404, 405, 413, ...)."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        # Codex tries a WebSocket on /v1/responses first: 426 makes it fall back to HTTP at
        # once (a 404 costs it seconds and a 400 ends the session).
        return GatewayError("WebSocket is not supported here; send the request over HTTP.",
                            status=426, error_type="invalid_request_error")
    if exc.code == 404:
        return NotFound(f"Not found: {request.method} {request.path}")
    if exc.code == 413:
        return RequestTooLarge("The request body is larger than this gateway accepts.")
    if exc.code == 405:
        return InvalidRequest(f"Method {request.method} is not allowed on {request.path}.",
                              status=405)
    return GatewayError(exc.description or exc.name, status=exc.code or 500,
                        error_type="invalid_request_error" if (exc.code or 500) < 500 else "api_error")


@bp.app_errorhandler(GatewayError)
def handle_gateway_error(err: GatewayError) -> Response:
    """Gateway errors are only raised on API paths."""
    return error_response(err)


def handle_unexpected(exc: Exception) -> Response:
    """Log an unhandled exception with the request id; answer 500 without a traceback."""
    log.exception("unhandled error in %s (request %s)", request.path, g.get("request_id"))
    return error_response(InternalError(
        f"Internal error; quote request id {g.get('request_id', 'unknown')} when asking for help."))


@bp.before_app_request
def _stamp_request() -> None:
    if is_api_path(request.path):
        g.request_id = new_request_id()


@bp.after_app_request
def _request_id_header(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers["request-id"] = request_id
        response.headers["x-request-id"] = request_id  # where the OpenAI SDK reads it
    return response


@bp.after_request
def _rate_limit_headers(response: Response) -> Response:
    response.headers.update(limits.rate_headers(dialect(request.path)))
    return response


# Views register themselves on ``bp``.
from pagegrid.api import catalog  # noqa: E402,F401
from pagegrid.api import chat  # noqa: E402,F401
from pagegrid.api import messages  # noqa: E402,F401
from pagegrid.api import responses  # noqa: E402,F401
