"""Low-balance alerts: one email and one signed webhook when the available balance drops below
the customer's threshold, and not again until a credit lifts it back.

The *available* balance is ``balance - open holds``. Settlement already updates the user row;
its UPDATE returns the new balance, holds, threshold and ``alert_armed`` (``billing.settle``), so
a request above the threshold does no work here at all. Below it, a conditional
``UPDATE users SET alert_armed = false WHERE id = … AND alert_armed`` decides which of any number
of concurrent settlements sends the alert, and that one writes it to the outbox in its own
transaction (sent after the commit, off the request path). A credit (top-up, code, card payment,
operator) that leaves the available balance at or above the threshold arms it again; a debit
that takes it below trips it like a charge.
"""

from __future__ import annotations

import json
import secrets

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update

from pagegrid import mail
from pagegrid import outbox
from pagegrid.extensions import db
from pagegrid.extensions import rowcount
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import format_usd

EVENT_TYPE = "balance.low"
_AVAILABLE = User.balance_nanos - User.held_nanos


def new_secret() -> str:
    """A webhook signing secret (shown to the customer once)."""
    return "pgwhsec_" + secrets.token_hex(24)


def after_charge(user_id: int, balance_nanos: int, held_nanos: int, threshold_nanos: int | None,
                 armed: bool) -> None:
    """Trip the alert if this change left the available balance below an armed threshold (the
    values are the user row just updated, in the caller's transaction; the caller commits)."""
    if not armed or threshold_nanos is None or balance_nanos - held_nanos >= threshold_nanos:
        return
    tripped = rowcount(db.session.execute(
        update(User).where(User.id == user_id, User.alert_armed.is_(True))
        .values(alert_armed=False).execution_options(synchronize_session=False)))
    if tripped == 1:
        _notify(user_id, balance_nanos - held_nanos, threshold_nanos)


def after_credit(user_id: int) -> None:
    """A credit or debit changed the balance: arm the alert again at or above the threshold, or
    trip it below (the caller commits)."""
    db.session.execute(
        update(User).where(User.id == user_id, User.alert_armed.is_(False),
                           User.alert_threshold_nanos.is_not(None), _AVAILABLE >= User.alert_threshold_nanos)
        .values(alert_armed=True).execution_options(synchronize_session=False))
    row = db.session.execute(select(User.balance_nanos, User.held_nanos, User.alert_threshold_nanos,
                                    User.alert_armed).where(User.id == user_id)).one_or_none()
    if row is not None:
        after_charge(user_id, *row)


def configure(user: User, threshold_nanos: int | None, webhook_url: str | None) -> str | None:
    """Set the threshold (None: off) and webhook (None: none); arms the alert. Returns a new
    signing secret when the account gets its first webhook (shown once), else None."""
    user.alert_threshold_nanos = threshold_nanos
    user.alert_armed = True
    user.alert_webhook_url = webhook_url
    if webhook_url and not user.alert_webhook_secret:
        user.alert_webhook_secret = new_secret()
        return user.alert_webhook_secret
    return None


def _notify(user_id: int, available_nanos: int, threshold_nanos: int) -> None:
    email, webhook_url = db.session.execute(
        select(User.email, User.alert_webhook_url).where(User.id == user_id)).one()
    config = current_app.config
    available, threshold = format_usd(available_nanos, exact=True), format_usd(threshold_nanos, exact=True)
    if mail.enabled(config):
        base = config.get("PAGEGRID_PUBLIC_URL")
        wallet = (f"\n\nAdd funds: {base}/wallet" if base
                  else "\n\nAdd funds on the Wallet page of the dashboard.")
        outbox.enqueue_email(user_id, email, f"PageGrid: your balance is below {format_usd(threshold_nanos)}",
                             f"Your available PageGrid balance is {available}, below the alert threshold of "
                             f"{threshold} you set.{wallet}\n\nYou get this once; it is sent again only "
                             "after the balance has been topped up above the threshold.\n")
    if webhook_url:
        now = utcnow()
        body = json.dumps({
            "id": f"evt_{secrets.token_hex(12)}", "type": EVENT_TYPE, "created": int(now.timestamp()),
            "data": {"email": email, "available_nanos": available_nanos, "threshold_nanos": threshold_nanos,
                     "available_usd": format_usd(available_nanos, exact=True, symbol=False, grouping=False),
                     "threshold_usd": format_usd(threshold_nanos, exact=True, symbol=False, grouping=False)}},
            separators=(",", ":"))
        outbox.enqueue_webhook(user_id, webhook_url, EVENT_TYPE, body)
