"""Blueprint ``webhooks``: events other services post to us. CSRF-exempt; each sender signs its own."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import jsonify
from flask import request

from pagegrid import payments
from pagegrid.errors import GatewayError
from pagegrid.errors import NotFound

bp = Blueprint("webhooks", __name__, url_prefix="/billing")


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
