"""Stripe top-ups: a Checkout Session to pay, webhook events to credit and refund exactly once.

The flow: ``start_checkout`` stores a pending ``StripeTopUp`` and creates a Checkout Session for it
(``client_reference_id`` = the top-up's id); Stripe sends the customer back and, separately, posts
events to ``POST /billing/stripe/webhook``, which ``handle_event`` verifies and applies.

Exactly once, whatever the number, order or concurrency of deliveries:

- A payment credits the wallet only through a conditional ``UPDATE stripe_topups SET
  status='paid' WHERE status IN ('pending', 'failed', 'expired')``; only the delivery whose UPDATE
  matched writes the ledger row, whose ``request_id`` (``stripe-topup:<id>``) is unique besides.
  Session ids can be longer than the ledger's 64-character ids, so the top-up's id names the row.
- A refund is a debit row named ``stripe-refund:<refund id>``; a second delivery of the same
  refund fails the unique constraint and rolls back with everything else it did.

Every balance change goes through ``billing.credit``: one atomic UPDATE of the balance in the
transaction of its ledger row.
"""

from __future__ import annotations

import hashlib
import json
import logging

import stripe
from flask import current_app
from flask import has_request_context
from flask import request
from sqlalchemy import case
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from pagegrid import billing
from pagegrid.errors import GatewayError
from pagegrid.errors import InvalidRequest
from pagegrid.extensions import db
from pagegrid.extensions import rowcount
from pagegrid.models import LedgerEntry
from pagegrid.models import StripeTopUp
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import NANOS_PER_CENT
from pagegrid.money import format_usd

log = logging.getLogger(__name__)

PAID_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
CLOSED_EVENTS = {"checkout.session.expired": "expired", "checkout.session.async_payment_failed": "failed"}
# A payment can arrive for a top-up in any of these (even after we marked its session failed).
UNPAID = ("pending", "failed", "expired")
# Refunds in these states have taken (or are taking) the money back from the customer.
REFUND_DEBITED = ("succeeded", "pending", "requires_action")


class PaymentError(Exception):
    """A top-up could not be started; the message is for the customer or operator."""


class RetryLater(GatewayError):
    """The event is for a payment not credited yet; Stripe redelivers it later."""

    status = 409
    anthropic_type = openai_type = "conflict_error"


def enabled() -> bool:
    """Stripe top-ups are on: both the secret key and the webhook secret are configured."""
    config = current_app.config
    return bool(config.get("PAGEGRID_STRIPE_SECRET_KEY") and config.get("PAGEGRID_STRIPE_WEBHOOK_SECRET"))


def amount_limits() -> tuple[int, int]:
    """The smallest and largest top-up in nano-USD (PAGEGRID_TOPUP_MIN_USD / _MAX_USD)."""
    config = current_app.config
    return (billing.usd_to_nanos(str(config["PAGEGRID_TOPUP_MIN_USD"])),
            billing.usd_to_nanos(str(config["PAGEGRID_TOPUP_MAX_USD"])))


def parse_amount(text: str) -> int:
    """A top-up amount in USD (whole cents, within the limits) as nano-USD, or ValueError."""
    try:
        nanos = billing.usd_to_nanos(text or "")
    except ValueError:
        raise ValueError("Enter an amount in US dollars, such as 25 or 12.50.") from None
    if nanos % NANOS_PER_CENT:
        raise ValueError("Card payments are in whole cents: use at most 2 decimals.")
    low, high = amount_limits()
    if not low <= nanos <= high:
        raise ValueError(f"Top-ups by card are from {format_usd(low)} to {format_usd(high)}.")
    return nanos


def _client() -> stripe.StripeClient:
    config = current_app.config
    base = config.get("PAGEGRID_STRIPE_API_BASE")
    # The client retries network failures with an idempotency key of its own, so a retry never
    # creates a second session.
    return stripe.StripeClient(config["PAGEGRID_STRIPE_SECRET_KEY"], max_network_retries=2,
                               base_addresses={"api": base} if base else None)


def public_url() -> str:
    """The URL customers reach the dashboard at (Stripe sends them back there)."""
    configured = current_app.config.get("PAGEGRID_PUBLIC_URL")
    if configured:
        return configured.rstrip("/")
    if has_request_context():
        return request.host_url.rstrip("/")
    raise PaymentError("Set PAGEGRID_PUBLIC_URL: Stripe needs the URL to send the customer back to.")


def start_checkout(user: User, amount_nanos: int, *, created_by: int | None = None) -> StripeTopUp:
    """Store a pending top-up and create its Checkout Session; the session's URL is on the row."""
    if not enabled():
        raise PaymentError("Card payments are not configured.")
    back = public_url()
    row = StripeTopUp(user_id=user.id, amount_nanos=amount_nanos, status="pending", refunded_nanos=0,
                      created_by=created_by)
    db.session.add(row)
    db.session.commit()  # the id goes to Stripe; no transaction stays open across the call
    metadata = {"pagegrid_topup_id": str(row.id), "pagegrid_user_id": str(user.id)}
    try:
        session = _client().v1.checkout.sessions.create(params={
            "mode": "payment",
            "client_reference_id": str(row.id),
            "customer_email": user.email,
            "line_items": [{"quantity": 1, "price_data": {
                "currency": "usd", "unit_amount": amount_nanos // NANOS_PER_CENT,
                "product_data": {"name": "PageGrid wallet top-up"}}}],
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": f"{back}/wallet?checkout=success&topup={row.id}",
            "cancel_url": f"{back}/wallet?checkout=cancelled&topup={row.id}",
        })
    except stripe.StripeError as exc:
        log.warning("stripe checkout for top-up %s failed: %s", row.id, exc)
        db.session.execute(
            update(StripeTopUp).where(StripeTopUp.id == row.id, StripeTopUp.status == "pending")
            .values(status="failed").execution_options(synchronize_session=False))
        db.session.commit()
        raise PaymentError("Stripe did not accept the payment request. Try again in a minute.") from None
    db.session.execute(update(StripeTopUp).where(StripeTopUp.id == row.id)
                       .values(session_id=session.id, checkout_url=session.url)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    db.session.refresh(row)
    log.info("stripe checkout %s for top-up %s user=%s amount_nanos=%s", session.id, row.id, user.id,
             amount_nanos)
    return row


def user_topups(user_id: int, limit: int = 20) -> list[StripeTopUp]:
    """The user's latest card top-ups, newest first."""
    return list(db.session.scalars(select(StripeTopUp).where(StripeTopUp.user_id == user_id)
                                   .order_by(StripeTopUp.id.desc()).limit(limit)))


# -- webhook events -------------------------------------------------------------------------------

def handle_event(payload: bytes, signature: str | None) -> str:
    """Verify one webhook delivery and apply it; return what was done (for the reply and logs)."""
    config = current_app.config
    try:
        stripe.Webhook.construct_event(payload, signature or "", config["PAGEGRID_STRIPE_WEBHOOK_SECRET"],
                                       api_key=config["PAGEGRID_STRIPE_SECRET_KEY"])
    except stripe.SignatureVerificationError:
        raise InvalidRequest("The Stripe-Signature header does not match this payload.") from None
    except ValueError:
        raise InvalidRequest("The payload is not a Stripe event.") from None
    event = json.loads(payload)  # verified; plain JSON from here on
    kind, obj = event.get("type"), (event.get("data") or {}).get("object") or {}
    if kind in PAID_EVENTS:
        if obj.get("payment_status") != "paid":
            return "awaiting payment"  # e.g. a bank debit: async_payment_succeeded follows
        result = credit_session(obj)
    elif kind in CLOSED_EVENTS:
        result = close_session(obj, CLOSED_EVENTS[kind])
    elif kind == "charge.refunded":
        result = refund_charge(obj)
    else:
        result = "ignored"
    log.info("stripe event %s %s: %s", event.get("id"), kind, result)
    return result


def _topup_for_session(session: dict) -> StripeTopUp | None:
    metadata = session.get("metadata") or {}
    reference = str(session.get("client_reference_id") or metadata.get("pagegrid_topup_id") or "")
    if not reference.isdigit():
        return None  # not one of ours (another product on the same Stripe account)
    return db.session.get(StripeTopUp, int(reference))


def credit_session(session: dict) -> str:
    """Credit a paid Checkout Session's top-up, once."""
    row = _topup_for_session(session)
    if row is None:
        db.session.rollback()
        return "ignored: not a PageGrid top-up"
    total = session.get("amount_total")
    if (session.get("currency") != "usd" or not isinstance(total, int)
            or total * NANOS_PER_CENT != row.amount_nanos
            or (row.session_id is not None and row.session_id != session.get("id"))):
        log.error("stripe session %s does not match top-up %s (%s %s, expected %s nanos)",
                  session.get("id"), row.id, total, session.get("currency"), row.amount_nanos)
        db.session.rollback()
        raise InvalidRequest(f"Checkout Session {session.get('id')} does not match top-up {row.id}.")
    topup_id, user_id, amount = row.id, row.user_id, row.amount_nanos
    db.session.rollback()  # the guard below is the first statement of the write transaction
    claimed = rowcount(db.session.execute(
        update(StripeTopUp).where(StripeTopUp.id == topup_id, StripeTopUp.status.in_(UNPAID))
        .values(status="paid", paid_at=utcnow(), session_id=session.get("id"),
                payment_intent_id=_id_of(session.get("payment_intent")))
        .execution_options(synchronize_session=False)))
    if claimed != 1:
        db.session.rollback()
        return "already credited"
    billing.credit(user_id, amount, f"Card payment (Stripe), top-up #{topup_id}", kind="topup",
                   commit=False, request_id=f"stripe-topup:{topup_id}")
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return "already credited"
    return f"credited {format_usd(amount, exact=True, grouping=False)} to user {user_id}"


def close_session(session: dict, status: str) -> str:
    """Mark a pending top-up expired or failed (nothing was paid)."""
    row = _topup_for_session(session)
    if row is None:
        db.session.rollback()
        return "ignored: not a PageGrid top-up"
    topup_id = row.id
    db.session.rollback()
    closed = rowcount(db.session.execute(
        update(StripeTopUp).where(StripeTopUp.id == topup_id, StripeTopUp.status == "pending")
        .values(status=status).execution_options(synchronize_session=False)))
    db.session.commit()
    return f"top-up {topup_id} {status}" if closed else "unchanged"


def _id_of(value: object) -> str | None:
    """A Stripe reference is an id string, or the expanded object with its ``id``."""
    if isinstance(value, dict):
        return value.get("id")
    return value if isinstance(value, str) else None


def _topup_for_charge(charge: dict) -> StripeTopUp | None:
    intent = _id_of(charge.get("payment_intent"))
    if intent:
        row = db.session.scalar(select(StripeTopUp).where(StripeTopUp.payment_intent_id == intent))
        if row is not None:
            return row
    reference = str((charge.get("metadata") or {}).get("pagegrid_topup_id") or "")
    if reference.isdigit():
        return db.session.get(StripeTopUp, int(reference))
    if intent:
        # The refund arrived before the payment's own event: ask Stripe which session it paid.
        sessions = _client().v1.checkout.sessions.list(params={"payment_intent": intent, "limit": 1})
        for session in sessions.data:
            return _topup_for_session(session.to_dict())
    return None


def _refunds_of(charge: dict) -> list[dict]:
    refunds = charge.get("refunds")
    if isinstance(refunds, dict) and not refunds.get("has_more"):
        return list(refunds.get("data") or [])
    # Newer API versions no longer embed the refunds in the charge.
    listed = _client().v1.refunds.list(params={"charge": charge["id"], "limit": 100})
    return [refund.to_dict() for refund in listed.auto_paging_iter()]


def _refund_request_id(refund_id: str) -> str:
    name = f"stripe-refund:{refund_id}"
    if len(name) <= 64:
        return name
    return "stripe-refund:" + hashlib.sha256(refund_id.encode()).hexdigest()[:50]


def refund_charge(charge: dict) -> str:
    """Debit each refund of a top-up's charge once."""
    row = _topup_for_charge(charge)
    if row is None:
        db.session.rollback()
        return "ignored: not a PageGrid payment"
    if row.status not in ("paid", "refunded"):
        db.session.rollback()
        raise RetryLater(f"Top-up {row.id} is not credited yet; deliver this refund again later.")
    topup_id, user_id = row.id, row.user_id
    db.session.rollback()
    debited = []
    for refund in _refunds_of(charge):
        if refund.get("status") not in REFUND_DEBITED or refund.get("currency", "usd") != "usd":
            continue
        request_id = _refund_request_id(refund["id"])
        if db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.request_id == request_id)):
            db.session.rollback()
            continue
        nanos = int(refund["amount"]) * NANOS_PER_CENT
        db.session.execute(
            update(StripeTopUp).where(StripeTopUp.id == topup_id)
            .values(refunded_nanos=StripeTopUp.refunded_nanos + nanos,
                    status=case((StripeTopUp.refunded_nanos + nanos >= StripeTopUp.amount_nanos, "refunded"),
                                else_=StripeTopUp.status))
            .execution_options(synchronize_session=False))
        billing.credit(user_id, -nanos, f"Refund {refund['id']} of card top-up #{topup_id}", kind="refund",
                       commit=False, request_id=request_id)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # another delivery debited this refund first
            continue
        debited.append(format_usd(nanos, exact=True, grouping=False))
    return f"debited {', '.join(debited)} from user {user_id}" if debited else "no new refunds"
