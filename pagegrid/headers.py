"""Security headers on every response: CSP without inline script, no framing, no sniffing.

Every dashboard page shows money or secrets, and the API's answers are private too, so any
response that did not choose its own caching is ``no-store`` (static files and event streams
set theirs). Inline ``style=""`` attributes are still allowed; inline and third-party scripts are not.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from flask import Flask
from flask import Response
from flask import current_app

HSTS = "max-age=31536000"
# "Pay by card" posts a form that redirects to Stripe Checkout: form-action must allow it.
STRIPE_CHECKOUT = "https://checkout.stripe.com"


def content_security_policy(config: dict) -> str:
    """The policy for this deployment (the Stripe API base of the tests hosts their checkout page)."""
    return _policy(bool(config.get("PAGEGRID_STRIPE_SECRET_KEY")),
                   config.get("PAGEGRID_STRIPE_API_BASE") or "")


@lru_cache(maxsize=16)
def _policy(stripe: bool, stripe_api_base: str) -> str:
    form_targets = ["'self'"]
    if stripe:
        form_targets.append(STRIPE_CHECKOUT)
        base = urlsplit(stripe_api_base)
        if base.scheme and base.netloc:
            form_targets.append(f"{base.scheme}://{base.netloc}")
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        f"form-action {' '.join(form_targets)}",
        "frame-ancestors 'none'",
    ])


def init_app(app: Flask) -> None:
    """Add the headers to every response of ``app``."""
    app.after_request(add_security_headers)


def add_security_headers(response: Response) -> Response:
    """Set the headers a page did not set itself."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(current_app.config))
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")
    if (current_app.config.get("PAGEGRID_PUBLIC_URL") or "").startswith("https://"):
        headers.setdefault("Strict-Transport-Security", HSTS)
    return response
