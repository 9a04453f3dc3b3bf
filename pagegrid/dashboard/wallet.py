"""Wallet: balance, card top-ups (Stripe), top-up codes, transaction history with filters, CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Response
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import stream_with_context
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from pagegrid import billing
from pagegrid import ledger
from pagegrid import payments
from pagegrid import spreadsheet
from pagegrid.dashboard import bp
from pagegrid.dashboard.forms import CheckoutForm
from pagegrid.dashboard.forms import LedgerFilterForm
from pagegrid.dashboard.forms import RedeemForm
from pagegrid.extensions import limiter
from pagegrid.money import format_usd

# Query parameters that are not history filters (paging, and Stripe sending the customer back).
NOT_FILTERS = ("page", "checkout", "topup")


def _filters() -> tuple[LedgerFilterForm, ledger.Filters]:
    form = LedgerFilterForm(request.args)
    labels = ledger.key_labels(current_user.id)
    form.key.choices = [("", "All keys")] + [(str(k), v) for k, v in labels.items()]
    form.model.choices = [("", "All models")] + [(m, m) for m in ledger.models_used(current_user.id)]
    if not form.validate():
        flash("Some filters were not valid dates and were ignored.", "error")
    key_id = int(form.key.data) if (form.key.data or "").isdigit() else None
    filters = ledger.Filters(key_id=key_id if key_id in labels else None, model=form.model.data or None,
                             start=form.start.data if not form.start.errors else None,
                             end=form.end.data if not form.end.errors else None)
    return form, filters


@bp.get("/wallet")
@login_required
def wallet() -> str:
    """Balance, the redeem form and the filtered transaction history."""
    form, filters = _filters()
    page = ledger.history(current_user.id, filters, page=request.args.get("page", 1, type=int))
    card = payments.enabled()
    topups = payments.user_topups(current_user.id)
    returned = next((t for t in topups if str(t.id) == request.args.get("topup")), None)
    return render_template("dashboard/wallet.html", summary=ledger.summary(current_user.id), page=page,
                           filter_form=form, redeem_form=RedeemForm(),
                           labels=ledger.key_labels(current_user.id),
                           query={k: v for k, v in request.args.items() if k not in NOT_FILTERS},
                           checkout_form=CheckoutForm() if card else None,
                           topup_limits=payments.amount_limits() if card else None,
                           topups=topups, checkout=request.args.get("checkout"), returned=returned)


@bp.post("/wallet/checkout")
@login_required
@limiter.limit("10 per minute", key_func=lambda: f"checkout:{current_user.id}")
def wallet_checkout():  # noqa: ANN201
    """Start a card top-up: a pending top-up and a Stripe Checkout Session, then off to Stripe."""
    if not payments.enabled():
        flash("Card payments are not available here.", "error")
        return redirect(url_for("dashboard.wallet"))
    form = CheckoutForm()
    if not form.validate_on_submit():
        flash("Enter an amount to pay.", "error")
        return redirect(url_for("dashboard.wallet"))
    try:
        topup = payments.start_checkout(current_user, payments.parse_amount(form.amount.data))
    except (ValueError, payments.PaymentError) as exc:
        flash(str(exc), "error")
        return redirect(url_for("dashboard.wallet"))
    return redirect(topup.checkout_url, code=303)


@bp.post("/wallet/redeem")
@login_required
@limiter.limit("10 per minute", key_func=lambda: f"redeem:{current_user.id}")
def wallet_redeem():  # noqa: ANN201
    """Redeem a top-up code once; the credit is a ledger row."""
    form = RedeemForm()
    if form.validate_on_submit():
        try:
            amount = billing.redeem_topup_code(current_user.id, form.code.data)
        except ValueError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Added {format_usd(amount)} to your wallet.", "success")
    else:
        flash("Enter a top-up code.", "error")
    return redirect(url_for("dashboard.wallet"))


@bp.get("/wallet/transactions.csv")
@login_required
def wallet_export() -> Response:
    """The filtered transaction history as CSV, with exact amounts."""
    _, filters = _filters()
    user_id = current_user.id

    def rows() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(ledger.CSV_COLUMNS)
        for row in ledger.export_rows(user_id, filters):
            writer.writerow(spreadsheet.safe_row(row))
            if buffer.tell() > 65536:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="pagegrid-transactions.csv"'})
