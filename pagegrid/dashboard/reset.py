"""Forgot password: ask for a link by email, then set a new password with it (only with SMTP).

The link carries its token in the query string (``/reset-password?token=…``): the access log
records paths without query strings, and the page sends no referrer off-site. The form posts the
token back in its body.
"""

from __future__ import annotations

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from pagegrid import mail
from pagegrid import password_reset
from pagegrid import throttle
from pagegrid.dashboard import bp
from pagegrid.dashboard.auth import duration
from pagegrid.dashboard.forms import ForgotForm
from pagegrid.dashboard.forms import ResetForm


def _link(token: str) -> str:
    base = (current_app.config.get("PAGEGRID_PUBLIC_URL") or request.host_url).rstrip("/")
    return base + url_for("dashboard.reset_password", token=token)


@bp.route("/forgot-password", methods=["GET", "POST"])
def forgot_password():  # noqa: ANN201 - a page and its status
    """Ask for a reset link; the answer is the same whether or not the email has an account."""
    if not mail.enabled(current_app.config):
        abort(404)
    form = ForgotForm()
    if form.validate_on_submit():
        email, ip = form.email.data.strip().lower(), request.remote_addr or ""
        wait = throttle.reset_retry_after(email, ip)
        if wait:
            flash(f"Too many reset requests: try again in {duration(wait)}.", "error")
            page = render_template("dashboard/forgot.html", form=form, sent=False)
            return page, 429, {"Retry-After": str(wait)}
        throttle.reset_requested(email, ip)
        password_reset.request(email, _link)
        return render_template("dashboard/forgot.html", form=form, sent=True), 200
    return render_template("dashboard/forgot.html", form=form, sent=False), 200


@bp.route("/reset-password", methods=["GET", "POST"])
def reset_password():  # noqa: ANN201 - a page or a redirect
    """Set a new password with a reset link's token: once, before it expires."""
    token = (request.form.get("token") if request.method == "POST" else request.args.get("token")) or ""
    user = password_reset.account_for(token)
    if user is None:
        return render_template("dashboard/reset.html", form=None, mail=mail.enabled(current_app.config)), 400
    form = ResetForm(email=user.email, data={"token": token})
    if form.validate_on_submit():
        if password_reset.reset(token, form.new.data) is None:  # spent by another tab meanwhile
            return render_template("dashboard/reset.html", form=None, mail=True), 400
        flash("Your password is set, and every session of the account is logged out. Log in with it.",
              "success")
        return redirect(url_for("dashboard.login"))
    page = render_template("dashboard/reset.html", form=form, email=user.email)
    return page, 400 if form.is_submitted() else 200
