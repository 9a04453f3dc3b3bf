"""Account → Low-balance alert: the threshold, the webhook URL and its signing secret."""

from __future__ import annotations

from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask_login import current_user
from flask_login import login_required

from pagegrid import alerts
from pagegrid import mail
from pagegrid import onetime
from pagegrid import outbox
from pagegrid.billing import usd_to_nanos
from pagegrid.dashboard import bp
from pagegrid.dashboard.forms import AlertForm
from pagegrid.extensions import db
from pagegrid.money import NANOS_PER_USD
from pagegrid.money import format_usd

SECRET_LABEL = "webhook-secret"
MAX_THRESHOLD_NANOS = 1_000_000 * NANOS_PER_USD


def _threshold(text: str) -> int | None:
    if not text.strip():
        return None
    nanos = usd_to_nanos(text)
    if not 0 < nanos <= MAX_THRESHOLD_NANOS:
        raise ValueError("The threshold is an amount above $0 and at most $1,000,000.")
    return nanos


def _page(form: AlertForm, secret: str | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("dashboard/alerts.html", form=form, secret=secret,
                           mail=mail.enabled(current_app.config)), status


@bp.route("/account/alerts", methods=["GET", "POST"])
@login_required
def alerts_page():  # noqa: ANN201 - a page or a redirect
    """Set or turn off the low-balance alert; a first webhook gets a signing secret, shown once."""
    user = current_user._get_current_object()
    current = user.alert_threshold_nanos
    shown = format_usd(current, exact=True, symbol=False, grouping=False) if current is not None else ""
    form = AlertForm(data={"threshold": shown, "webhook_url": user.alert_webhook_url or ""})
    if not form.validate_on_submit():
        return _page(form, onetime.claim(user.id, labels=(SECRET_LABEL,))[0],
                     400 if form.is_submitted() else 200)
    try:
        threshold = _threshold(form.threshold.data or "")
    except ValueError as exc:
        message = str(exc) if "threshold" in str(exc) else "Enter an amount such as 5 or 2.50."
        form.threshold.errors = [message]
        return _page(form, status=400)
    url = (form.webhook_url.data or "").strip() or None
    if url is not None:
        try:
            url = outbox.validate_webhook_url(
                url, allow_private=current_app.config["PAGEGRID_ALERT_WEBHOOK_ALLOW_PRIVATE"])
        except ValueError as exc:
            form.webhook_url.errors = [str(exc)]
            return _page(form, status=400)
    secret = alerts.configure(user, threshold, url)
    db.session.commit()
    if secret:
        onetime.stash(user.id, secret, SECRET_LABEL)
    flash("Low-balance alert turned off." if threshold is None else
          f"You will be alerted once when your available balance drops below {format_usd(threshold)}.",
          "success")
    return redirect(url_for("dashboard.alerts_page"))


@bp.post("/account/alerts/secret")
@login_required
def alerts_secret():  # noqa: ANN201
    """A new webhook signing secret (the old one stops verifying at once), shown once."""
    user = current_user._get_current_object()
    user.alert_webhook_secret = alerts.new_secret()
    db.session.commit()
    onetime.stash(user.id, user.alert_webhook_secret, SECRET_LABEL)
    flash("New signing secret: the old one no longer signs webhooks.", "success")
    return redirect(url_for("dashboard.alerts_page"))
