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

from pagegrid import keys
from pagegrid import limits
from pagegrid.billing import new_request_id
from pagegrid.errors import GatewayError
from pagegrid.errors import InternalError
from pagegrid.errors import MethodNotAllowed
from pagegrid.errors import NotFound
from pagegrid.errors import RequestTooLarge
from pagegrid.errors import UpgradeRequired

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__, url_prefix="/v1")

_ANTHROPIC_PATH = re.compile(r"^(/v1)*/messages(/|$)")
# Paths of both dialects: their errors follow the request's headers.
_EITHER_DIALECT_PATH = re.compile(r"^(/v1)*/key$")
# The API also answers without /v1 (a base URL of the bare host in the OpenAI SDK and AI SDK).
ROOT_FORMS = ("/messages", "/chat/", "/responses", "/models", "/completions", "/embeddings", "/requests/")
ROOT_PATHS = ("/v1", "/key")  # exactly these (the dashboard owns /keys)


def is_api_path(path: str) -> bool:
    """True for the paths this blueprint answers (``/v1`` and below, and the root forms)."""
    return path in ROOT_PATHS or path.startswith("/v1/") or path.startswith(ROOT_FORMS)


def wants_json() -> bool:
    """An API client on any path: it sent an API key or a JSON body."""
    return (is_api_path(request.path) or keys.key_from_headers(request.headers) is not None
            or request.mimetype == "application/json")


def dialect(path: str) -> str:
    """``anthropic`` for the Messages API paths (or a request with Anthropic headers on an
    unknown path or on ``/v1/key``), ``openai`` for everything else."""
    if _ANTHROPIC_PATH.match(path):
        return "anthropic"
    if ((not is_api_path(path) or _EITHER_DIALECT_PATH.match(path))
            and ("anthropic-version" in request.headers or "x-api-key" in request.headers)):
        return "anthropic"
    return "openai"


class SlashFolding:
    """WSGI middleware: API paths with repeated or trailing slashes route as written once
    (``/v1//messages``, ``/v1/messages/``), without the redirect httpx does not follow."""

    def __init__(self, wsgi_app) -> None:  # noqa: ANN001
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204
        path = environ.get("PATH_INFO", "")
        folded = re.sub("/{2,}", "/", path)
        if len(folded) > 1:
            folded = folded.rstrip("/")
        if folded != path and is_api_path(folded):
            environ["PATH_INFO"] = folded
        return self.wsgi_app(environ, start_response)


def error_response(err: GatewayError) -> Response:
    """Render ``err`` for the current request's dialect."""
    g.gateway_error = err  # for the request log and the metrics (requestlog.py)
    body = err.to_anthropic() if dialect(request.path) == "anthropic" else err.to_openai()
    response = Response(json.dumps(body), status=err.status, mimetype="application/json")
    response.headers.update(err.headers)
    return response


def http_error(exc: HTTPException) -> GatewayError:
    """The gateway error for a werkzeug HTTP exception (404, 405, 413, ...)."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        # Codex tries a WebSocket on /v1/responses first: 426 makes it fall back to HTTP at
        # once (a 404 costs it seconds and a 400 ends the session).
        return UpgradeRequired("WebSocket is not supported here; send the request over HTTP.")
    if exc.code == 404:
        return NotFound(not_found_hint())
    if exc.code == 413:
        return RequestTooLarge("The request body is larger than this gateway accepts.")
    if exc.code == 405:
        return MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}.")
    return GatewayError(exc.description or exc.name, status=exc.code or 500,
                        error_type="invalid_request_error" if (exc.code or 500) < 500 else "api_error")


def not_found_hint() -> str:
    """A 404 message naming the likely base-URL mistake and the right base URL."""
    path = request.path
    base = request.host_url.rstrip("/")
    message = f"Not found: {request.method} {path}."
    for endpoint in ("/messages", "/chat/completions", "/responses"):
        doubled = f"{endpoint}/v1{endpoint}"
        if doubled in path or f"{endpoint}{endpoint}" in path:
            return (f"{message} The base URL seems to include {endpoint}: set it to {base}/v1 "
                    f"(clients append {endpoint} themselves).")
    if dialect(path) == "anthropic":
        return f"{message} For Claude Code and the Anthropic SDKs set ANTHROPIC_BASE_URL={base}/v1."
    return (f"{message} For the OpenAI SDKs and Codex set the base URL to {base}/v1; "
            "the endpoints are /v1/chat/completions, /v1/responses and /v1/models.")


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
from pagegrid.api import key  # noqa: E402,F401
from pagegrid.api import lookup  # noqa: E402,F401
from pagegrid.api import messages  # noqa: E402,F401
from pagegrid.api import responses  # noqa: E402,F401
