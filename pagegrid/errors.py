"""Gateway errors and their two JSON renderings.

Views raise these; the ``api`` blueprint's handlers render them in the dialect of the path.

    GatewayError                    500 api_error
    ├── InvalidRequest              400 invalid_request_error
    │   └── PreviousResponseNotFound 400 invalid_request_error (OpenAI code previous_response_not_found)
    ├── AuthenticationFailed        401 authentication_error
    ├── InsufficientBalance         402 billing_error
    ├── PermissionDenied            403 permission_error
    ├── NotFound                    404 not_found_error
    │   └── ModelNotFound           404 not_found_error (OpenAI code model_not_found)
    ├── MethodNotAllowed            405 invalid_request_error
    ├── RequestTooLarge             413 request_too_large
    ├── UpgradeRequired             426 invalid_request_error (a WebSocket upgrade: use HTTP)
    ├── RateLimited                 429 rate_limit_error
    ├── UpstreamError               502 api_error (or the upstream's own 4xx status and type)
    │   ├── UpstreamOverloaded      529 overloaded_error
    │   ├── UpstreamTimeout         504 timeout_error
    │   ├── UpstreamRateLimited     429 rate_limit_error (the provider's, with its retry-after)
    │   ├── UpstreamRefusedCredentials 502 api_error (our account's key, not the client's)
    │   └── NoUpstream              503 overloaded_error (no account can take the request now)
    ├── DependencyDown              503 api_error (with retry-after; names what is down)
    └── InternalError               500 api_error
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status = 500
    anthropic_type = "api_error"
    openai_type = "api_error"
    openai_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, status: int | None = None,
                 error_type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        if status is not None:
            self.status = status
        if error_type is not None:
            self.anthropic_type = error_type
            self.openai_type = error_type

    def to_anthropic(self) -> dict:
        """The Anthropic error body."""
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}

    def to_openai(self) -> dict:
        """The OpenAI error body."""
        return {"error": {"message": self.message, "type": self.openai_type,
                          "param": self.param, "code": self.openai_code}}


class InvalidRequest(GatewayError):
    """The request body or parameters are wrong."""

    status = 400
    anthropic_type = openai_type = "invalid_request_error"


class PreviousResponseNotFound(InvalidRequest):
    """A ``previous_response_id`` that is unknown, expired or another user's (OpenAI answers 400)."""

    openai_code = "previous_response_not_found"


class AuthenticationFailed(GatewayError):
    """Missing, malformed, unknown, revoked or expired key."""

    status = 401
    anthropic_type = openai_type = "authentication_error"
    openai_code = "invalid_api_key"


class InsufficientBalance(GatewayError):
    """The wallet cannot cover the request."""

    status = 402
    anthropic_type = openai_type = "billing_error"
    openai_code = "insufficient_quota"


class PermissionDenied(GatewayError):
    """The key may not use this model."""

    status = 403
    anthropic_type = openai_type = "permission_error"


class NotFound(GatewayError):
    """Unknown route."""

    status = 404
    anthropic_type = openai_type = "not_found_error"


class ModelNotFound(NotFound):
    """A model that is unknown or inactive."""

    openai_code = "model_not_found"


class MethodNotAllowed(GatewayError):
    """A route that exists, called with another method."""

    status = 405
    anthropic_type = openai_type = "invalid_request_error"


class UpgradeRequired(GatewayError):
    """A WebSocket upgrade (Codex tries one first): 426 makes it fall back to HTTP at once."""

    status = 426
    anthropic_type = openai_type = "invalid_request_error"


class RequestTooLarge(GatewayError):
    """The body is larger than the gateway accepts."""

    status = 413
    anthropic_type = openai_type = "request_too_large"


class RateLimited(GatewayError):
    """A key limit was hit; ``headers`` carries retry-after."""

    status = 429
    anthropic_type = openai_type = "rate_limit_error"
    openai_code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit: str = "rpm", **options) -> None:  # noqa: ANN003
        super().__init__(message, **options)
        # Which one: rpm, count_tokens, concurrency, daily_requests, monthly_tokens, budget.
        self.limit = limit


class UpstreamError(GatewayError):
    """The provider failed or refused; keeps the upstream's status where that helps the client."""

    status = 502
    anthropic_type = openai_type = "api_error"


class UpstreamOverloaded(UpstreamError):
    """The provider is overloaded (Anthropic 529)."""

    status = 529
    anthropic_type = openai_type = "overloaded_error"


class UpstreamTimeout(UpstreamError):
    """The provider did not connect or answer in time."""

    status = 504
    anthropic_type = openai_type = "timeout_error"


class UpstreamRateLimited(UpstreamError):
    """The provider rate limited the gateway's account (every account, when the client sees it)."""

    status = 429
    anthropic_type = openai_type = "rate_limit_error"


class UpstreamRefusedCredentials(UpstreamError):
    """The provider refused the gateway's own key (401/403): the operator's problem, not the client's."""


class NoUpstream(UpstreamError):
    """No account can serve the model now (all disabled, or all at their concurrency cap)."""

    status = 503
    anthropic_type = openai_type = "overloaded_error"


class DependencyDown(GatewayError):
    """The database (or another dependency) is unreachable; the client should retry shortly."""

    status = 503

    def __init__(self, what: str, retry_after: int = 5) -> None:
        super().__init__(f"The gateway's {what} is temporarily unavailable; retry in a few seconds.",
                         headers={"retry-after": str(retry_after)})
        self.what = what


class InternalError(GatewayError):
    """A bug in PageGrid; logged with the request id, never shown as a traceback."""
