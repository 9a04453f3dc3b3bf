"""Log in, log out, change password. Accounts are created by an admin; there is no sign-up."""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user
from flask_login import login_required
from sqlalchemy import select
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from pagegrid import mail
from pagegrid import sessions
from pagegrid import throttle
from pagegrid.dashboard import bp
from pagegrid.dashboard.forms import LoginForm
from pagegrid.dashboard.forms import PasswordForm
from pagegrid.dashboard.two_factor import await_code
from pagegrid.extensions import db
from pagegrid.extensions import limiter
from pagegrid.models import User

# Compared against when the email is unknown, so both paths cost one hash check.
_DUMMY_HASH = generate_password_hash("pagegrid-dummy-password")


def safe_next(target: str | None) -> str:
    r"""``target`` if it is a same-site relative path, else the overview.

    Browsers drop tabs and newlines from URLs and read ``\`` as ``/``, so ``/<TAB>/evil`` and
    ``/\evil`` both mean ``//evil``: any control character, whitespace or backslash is refused
    before the ``//`` check, rather than trying to normalise the way every browser does.
    """
    if (target and target.startswith("/") and target.isprintable() and " " not in target
            and "\\" not in target and not target.startswith("//")):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("dashboard.overview")


@bp.route("/login", methods=["GET", "POST"])
# A ceiling on password hashing per client, far above what a person types; the throttle that
# matters (throttle.py) counts failures per (account, IP) and per IP.
@limiter.limit("60 per minute", key_func=get_remote_address, methods=["POST"])
def login():  # noqa: ANN201 - a page or a redirect
    """The login form."""
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.overview"))
    form = LoginForm()
    if form.validate_on_submit():
        email, ip = form.email.data.strip().lower(), request.remote_addr or ""
        wait = throttle.retry_after(email, ip)
        if wait:  # refused before the password is checked: no guessing while waiting
            flash(f"Too many failed logins from your address: try again in {duration(wait)}.", "error")
            page = render_template("dashboard/login.html", form=form, forgot=mail.enabled(current_app.config))
            return page, 429, {"Retry-After": str(wait)}
        user = db.session.scalar(select(User).where(User.email == email))
        valid = check_password_hash(user.password_hash if user else _DUMMY_HASH, form.password.data)
        if user is not None and valid and user.active:
            throttle.succeeded(email, ip)
            if user.totp_enabled:  # no session until the code (two_factor.py)
                return await_code(user, safe_next(request.args.get("next")))
            sessions.start(user)
            return redirect(safe_next(request.args.get("next")))
        if not valid:
            throttle.failed(email, ip)
        flash("This account is disabled." if user is not None and valid else
              "Wrong email or password.", "error")
    return render_template("dashboard/login.html", form=form, forgot=mail.enabled(current_app.config)), 200


def duration(seconds: int) -> str:
    """A wait in words: ``45 seconds``, ``3 minutes``."""
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


@bp.post("/logout")
@login_required
def logout():  # noqa: ANN201
    """End the session, and every other session of this account (a copied cookie stops working)."""
    sessions.end_all(current_user)
    db.session.commit()
    sessions.end_current()
    flash("You are logged out.", "success")
    return redirect(url_for("dashboard.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password():  # noqa: ANN201
    """Change one's own password."""
    form = PasswordForm(email=current_user.email)
    if form.validate_on_submit():
        if not check_password_hash(current_user.password_hash, form.current.data):
            flash("The current password is wrong.", "error")
        else:
            user = current_user._get_current_object()
            user.password_hash = generate_password_hash(form.new.data)
            sessions.end_all(user)
            db.session.commit()
            sessions.start(user)  # this browser stays logged in; every other session ends
            flash("Password changed. Every other session of this account is logged out.", "success")
            return redirect(url_for("dashboard.overview"))
    return render_template("dashboard/password.html", form=form)


@bp.post("/account/sessions/end-others")
@login_required
def end_other_sessions():  # noqa: ANN201
    """Log out every other browser of this account; this one gets a fresh session."""
    user = current_user._get_current_object()
    sessions.end_all(user)
    db.session.commit()
    sessions.start(user)
    flash("Every other session of this account is logged out.", "success")
    return redirect(url_for("dashboard.password"))
