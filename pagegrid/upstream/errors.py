"""What a provider's failure means for our client: its status or its stream's first event,
mapped to the gateway's errors (beside the transport that received it)."""

from __future__ import annotations

from typing import Literal

from pagegrid.errors import GatewayError
from pagegrid.errors import UpstreamError
from pagegrid.errors import UpstreamOverloaded
from pagegrid.errors import UpstreamRateLimited
from pagegrid.errors import UpstreamRefusedCredentials
from pagegrid.errors import UpstreamTimeout
from pagegrid.json_types import as_object
from pagegrid.upstream.base import UpstreamReply


def status_error(reply: UpstreamReply) -> GatewayError:
    """Map a provider's non-200 answer to the error our client sees."""
    status = reply.status
    detail = (reply.json() or {}).get("error") or {}
    message = detail.get("message") if isinstance(detail, dict) else None
    kind = detail.get("type") if isinstance(detail, dict) else None
    if status in (401, 403):
        return UpstreamRefusedCredentials("The upstream provider refused the gateway's credentials. "
                                          "This is not your key's fault; please tell the operator.")
    if status == 429:
        retry = reply.headers.get("retry-after")
        return UpstreamRateLimited(message or "The upstream provider is rate limiting; retry shortly.",
                                   headers={"retry-after": retry} if retry else None)
    if status in (503, 529):
        return UpstreamOverloaded(message or "The upstream provider is overloaded.", status=status)
    if status == 504:
        return UpstreamTimeout(message or "The upstream provider timed out.")
    if 400 <= status < 500:
        return GatewayError(message or f"The upstream provider refused the request (HTTP {status}).",
                            status=status, error_type=kind or "invalid_request_error")
    return UpstreamError(f"The upstream provider failed (HTTP {status}).")


def error_type(data: dict) -> str | None | Literal[False]:
    """The error type of a stream event that is an error (None if it names none); False for
    any other event. Covers the Messages, Chat Completions and Responses streams."""
    error = data.get("error")
    if data.get("type") == "error" or (isinstance(error, dict) and "choices" not in data):
        if isinstance(error, dict):
            return error.get("type") or error.get("code")
        return data.get("code")
    if data.get("type") == "response.failed":
        detail = (data.get("response") or {}).get("error") or {}
        return detail.get("code") if isinstance(detail, dict) else None
    return False


def stream_start_error(data: dict) -> GatewayError:
    """The error a client sees if every account's stream began with this error event."""
    kind = error_type(data) or "api_error"
    detail = as_object(data.get("error"))
    message = detail.get("message") or data.get("message") or "The upstream provider failed."
    if kind == "overloaded_error":
        return UpstreamOverloaded(message)
    if kind in ("rate_limit_error", "rate_limit_exceeded"):
        return UpstreamRateLimited(message)
    return UpstreamError(message)
