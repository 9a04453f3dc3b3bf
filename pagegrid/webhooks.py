"""Blueprint ``webhooks``: events other services post to us. CSRF-exempt; each sender signs its own."""

from __future__ import annotations

import logging

import stripe
from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from pagegrid import payments
from pagegrid.errors import GatewayError
from pagegrid.errors import NotFound
from pagegrid.errors import UpstreamError

bp = Blueprint("webhooks", __name__, url_prefix="/billing")
log = logging.getLogger(__name__)


@bp.post("/stripe/webhook")
def stripe_webhook() -> Response:
    """A Stripe event: verified with the webhook secret, then applied exactly once."""
    if not payments.enabled():
        raise NotFound("Stripe payments are not configured on this PageGrid.")
    result = payments.handle_event(request.get_data(), request.headers.get("Stripe-Signature"))
    return jsonify(received=True, result=result)


@bp.errorhandler(GatewayError)
def _error(err: GatewayError) -> tuple[Response, int]:
    # Stripe shows the body in its dashboard and redelivers anything that is not a 2xx.
    return jsonify(err.to_openai()), err.status


@bp.errorhandler(stripe.StripeError)
def _stripe_unreachable(exc: stripe.StripeError) -> tuple[Response, int]:
    # A lookup the event needed failed (refunds, sessions): 502, so Stripe delivers it again.
    log.warning("stripe lookup for a webhook event failed: %s", exc)
    return _error(UpstreamError("Stripe could not be reached to process this event; deliver it again."))
