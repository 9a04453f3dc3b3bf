"""Two-factor login: the code step after the password, and turning it on and off under Account.

After a right password, an account with two-factor login gets no session yet: the signed cookie
only says which user passed the password, at which session epoch and when (5 minutes to enter
a code). A password reset or a disabled account in between ends that too. Codes are counted by
the code throttle; changing the setting needs the password and a good code, so a borrowed
session alone cannot turn it off.
"""

from __future__ import annotations

import math

from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user
from flask_login import login_required
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response

from pagegrid import clock
from pagegrid import onetime
from pagegrid import sessions
from pagegrid import throttle
from pagegrid import twofactor
from pagegrid.dashboard import bp
from pagegrid.dashboard.forms import CodeForm
from pagegrid.dashboard.forms import TwoFactorForm
from pagegrid.extensions import db
from pagegrid.extensions import limiter
from pagegrid.models import User

PENDING = "2fa_pending"
PENDING_SECONDS = 300


def await_code(user: User, target: str) -> Response:
    """The password was right: remember that (not a login) and ask for the code."""
    session.clear()
    session[PENDING] = {"user": user.id, "epoch": user.session_epoch, "at": int(clock.now().timestamp()),
                        "next": target}
    return redirect(url_for("dashboard.login_code"))


def _pending_user() -> User | None:
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or int(clock.now().timestamp()) - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = db.session.get(User, pending.get("user"))
    if user is None or not user.active or not user.totp_enabled or user.session_epoch != pending.get("epoch"):
        return None
    return user


def _wait(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 90 else f"{math.ceil(seconds / 60)} minutes"


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit("60 per minute", key_func=get_remote_address, methods=["POST"])
def login_code():  # noqa: ANN201 - a page or a redirect
    """The second login step: a code from the authenticator app or a recovery code."""
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.overview"))
    user = _pending_user()
    if user is None:
        session.pop(PENDING, None)
        flash("Log in with your password first (the code must follow within 5 minutes).", "info")
        return redirect(url_for("dashboard.login"))
    form = CodeForm()
    if form.validate_on_submit():
        ip = request.remote_addr or ""
        wait = throttle.code_retry_after(user.id, ip)
        if wait:
            flash(f"Too many wrong codes: try again in {_wait(wait)}.", "error")
            return render_template("dashboard/login_code.html", form=form), 429, {"Retry-After": str(wait)}
        kind = twofactor.check(user, form.code.data)
        if kind in ("totp", "recovery"):
            throttle.code_succeeded(user.id, ip)
            target = session[PENDING]["next"]
            sessions.start(user)
            if kind == "recovery":
                flash(f"You logged in with a recovery code; {twofactor.codes_left(user.id)} are left. "
                      "Make new ones under Account → Two-factor login.", "info")
            return redirect(target)
        throttle.code_failed(user.id, ip)
        flash("This code was used already: wait for the next one." if kind == "replayed" else
              "Wrong code.", "error")
    return render_template("dashboard/login_code.html", form=form)


@bp.get("/account/two-factor")
@login_required
def two_factor() -> str:
    """Two-factor status; enrolment (QR code) when it is off; new recovery codes shown once."""
    user = current_user._get_current_object()
    codes, _ = onetime.claim(user.id, labels=("recovery",))
    context: dict[str, object] = {"form": TwoFactorForm(formdata=None),
                                  "codes": codes.split("\n") if codes else None}
    if user.totp_enabled:
        context["left"] = twofactor.codes_left(user.id)
    else:
        secret = twofactor.start_enrolment(user)
        context["qr"] = twofactor.qr_svg(twofactor.provisioning_uri(user, secret))
        context["secret"] = twofactor.grouped(secret)
    return render_template("dashboard/two_factor.html", user=user, **context)


def _confirmed(form: TwoFactorForm, user: User, kinds: tuple[str, ...]) -> int:
    """0 when the password and the code are right; else the status of the page to show again."""
    if not form.validate_on_submit():
        flash("Enter your password and a code.", "error")
        return 200
    ip = request.remote_addr or ""
    wait = max(throttle.retry_after(user.email, ip), throttle.code_retry_after(user.id, ip))
    if wait:
        flash(f"Too many wrong tries: try again in {_wait(wait)}.", "error")
        return 429
    if not check_password_hash(user.password_hash, form.password.data or ""):
        throttle.failed(user.email, ip)
        flash("The password is wrong.", "error")
        return 200
    kind = twofactor.check(user, form.code.data or "")
    if kind not in kinds:
        throttle.code_failed(user.id, ip)
        flash("This code was used already: wait for the next one." if kind == "replayed" else
              "Wrong code.", "error")
        return 200
    throttle.code_succeeded(user.id, ip)
    return 0


def _again(status: int):  # noqa: ANN202 - the page with its status
    return redirect(url_for("dashboard.two_factor")) if status == 200 else (
        two_factor(), status, {"Retry-After": "60"})


@bp.post("/account/two-factor/enable")
@login_required
def two_factor_enable():  # noqa: ANN201
    """Turn two-factor login on with the first good code; every other session ends."""
    user = current_user._get_current_object()
    if user.totp_enabled:
        return redirect(url_for("dashboard.two_factor"))
    status = _confirmed(TwoFactorForm(), user, ("totp",))
    if status:
        return _again(status)
    codes = twofactor.enable(user)
    _restart_sessions(user)
    onetime.stash(user.id, "\n".join(codes), "recovery")
    flash("Two-factor login is on. Every other session of this account is logged out.", "success")
    return redirect(url_for("dashboard.two_factor"))


@bp.post("/account/two-factor/disable")
@login_required
def two_factor_disable():  # noqa: ANN201
    """Turn two-factor login off (password and a code, or a recovery code)."""
    user = current_user._get_current_object()
    if not user.totp_enabled:
        return redirect(url_for("dashboard.two_factor"))
    status = _confirmed(TwoFactorForm(), user, ("totp", "recovery"))
    if status:
        return _again(status)
    twofactor.disable(user)
    _restart_sessions(user)
    flash("Two-factor login is off.", "success")
    return redirect(url_for("dashboard.two_factor"))


@bp.post("/account/two-factor/recovery-codes")
@login_required
def two_factor_recovery_codes():  # noqa: ANN201
    """Replace the recovery codes (the old ones stop working); the new ones are shown once."""
    user = current_user._get_current_object()
    if not user.totp_enabled:
        return redirect(url_for("dashboard.two_factor"))
    status = _confirmed(TwoFactorForm(), user, ("totp", "recovery"))
    if status:
        return _again(status)
    codes = twofactor.new_recovery_codes(user)
    db.session.commit()
    onetime.stash(user.id, "\n".join(codes), "recovery")
    flash("New recovery codes: the old ones no longer work.", "success")
    return redirect(url_for("dashboard.two_factor"))


def _restart_sessions(user) -> None:  # noqa: ANN001 - a User
    """Commit a 2FA change, ending every session of the user but a fresh one for this browser."""
    sessions.end_all(user)
    db.session.commit()
    sessions.start(user)
