"""API keys: list, create (shown once), revoke, rotate, and each key's page (name, expiry, limits,
ready-to-paste setups). Only one's own keys."""

from __future__ import annotations

from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user
from flask_login import login_required
from sqlalchemy import select

from pagegrid import audit
from pagegrid import onetime
from pagegrid.catalog import catalog
from pagegrid.dashboard import bp
from pagegrid.dashboard.docs import base_url
from pagegrid.dashboard.forms import NewKeyForm
from pagegrid.extensions import db
from pagegrid.forms import KeyLimitsForm
from pagegrid.forms import KeySettingsForm
from pagegrid.forms import last_valid_day
from pagegrid.keys import create_key
from pagegrid.keys import is_expired
from pagegrid.keys import revoke_key
from pagegrid.keys import rotate_key
from pagegrid.keys import update_settings
from pagegrid.models import ApiKey
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.setups import tool_setups


def _own_key(key_id: int) -> ApiKey:
    """The current user's key, or 404 (never 403: another user's key ids stay unknowable)."""
    key = db.session.get(ApiKey, key_id)
    if key is None or key.user_id != current_user.id:
        abort(404)
    return key


def _with_model_choices(form: KeyLimitsForm) -> KeyLimitsForm:
    form.allowed_models.choices = [(m.id, m.id) for m in catalog().active()]
    return form


def _setups(key_text: str) -> list:
    """The tool setups (pagegrid/setups.py) with this deployment's URL and ``key_text``."""
    return list(tool_setups(base_url(), key_text, catalog().active()).values())


@bp.route("/keys", methods=["GET", "POST"])
@login_required
def keys():  # noqa: ANN201 - a page
    """The key list and the form for a new key.

    A new secret waits server-side (``onetime``) for the page the POST redirects to, and is
    deleted there: it is shown once, and reloading the page neither shows it again nor
    creates another key. It never enters the cookie, a URL or a log.
    """
    form = _with_model_choices(NewKeyForm())
    if form.validate_on_submit() and _within_ceilings(form, None):
        _, secret = create_key(current_user, name=form.name.data.strip(), rpm=form.rpm.data,
                               daily_request_limit=form.daily_request_limit.data or 0,
                               monthly_token_limit=form.monthly_token_limit.data or 0,
                               allowed_models=list(form.allowed_models.data or []),
                               concurrency=form.concurrency.data, allowed_ips=form.allowed_ips.data,
                               **form.budget(), expires_at=form.expires_at())
        onetime.stash(current_user.id, secret, "created")
        return redirect(url_for("dashboard.keys"))
    if request.method == "POST":
        flash("The key was not created: check the fields below.", "error")
    secret, label = onetime.claim(current_user.id, labels=("created", "rotated"))
    return render_template("dashboard/keys.html", form=form, page=_key_page(), secret=secret,
                           rotated=label == "rotated", setups=_setups(secret) if secret else [],
                           ceilings=ceiling_note(current_user), now=utcnow(), is_expired=is_expired)


def ceiling_note(user: User) -> str:
    """What the operator allows this account's keys, for the form's help text."""
    parts = []
    if user.max_rpm:
        parts.append(f"at most {user.max_rpm:,} requests per minute")
    if user.max_concurrency:
        parts.append(f"at most {user.max_concurrency:,} requests at once")
    if not user.may_lift_quotas:
        parts.append("daily and monthly limits can only be lowered")
    return ("Your operator allows " + "; ".join(parts) + ".") if parts else ""


def _within_ceilings(form: KeyLimitsForm, key: ApiKey | None) -> bool:
    """Refuse settings above the operator's ceilings for this account (False, with errors)."""
    user = current_user
    if user.max_rpm and form.rpm.data > user.max_rpm:
        form.rpm.errors.append(f"Your account allows at most {user.max_rpm:,} requests per minute.")  # type: ignore[attr-defined]  # a list (stub: Sequence)
    if user.max_concurrency and form.concurrency.data > user.max_concurrency:
        form.concurrency.errors.append(f"Your account allows at most {user.max_concurrency:,} at once.")  # type: ignore[attr-defined]  # a list (stub: Sequence)
    if not user.may_lift_quotas:
        for field, current in ((form.daily_request_limit, key.daily_request_limit if key else 0),
                               (form.monthly_token_limit, key.monthly_token_limit if key else 0)):
            value = field.data or 0
            if key is None and value == 0:
                field.errors.append("Your operator asks every key to carry this limit.")  # type: ignore[attr-defined]  # a list (stub: Sequence)
            elif key is not None and current and (value == 0 or value > current):
                field.errors.append("Your operator lets you lower this limit, not raise or remove it.")  # type: ignore[attr-defined]  # a list (stub: Sequence)
    return not (form.rpm.errors or form.concurrency.errors or form.daily_request_limit.errors
                or form.monthly_token_limit.errors)


def _key_page():  # noqa: ANN202 - a Pagination
    return db.paginate(select(ApiKey).where(ApiKey.user_id == current_user.id)
                       .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc()),
                       page=request.args.get("page", 1, type=int), per_page=20, error_out=False)


@bp.post("/keys/<int:key_id>/revoke")
@login_required
def key_revoke(key_id: int):  # noqa: ANN201
    """Revoke a key: the next API call with it gets 401."""
    key = _own_key(key_id)
    revoke_key(key)
    flash(f"Key {key.display} revoked.", "success")
    return redirect(url_for("dashboard.keys"))


@bp.post("/keys/<int:key_id>/rotate")
@login_required
def key_rotate(key_id: int):  # noqa: ANN201
    """A new secret with the same settings; the old secret stops working at once."""
    key = _own_key(key_id)
    if key.revoked_at is not None:
        abort(404)
    onetime.stash(current_user.id, rotate_key(key), "rotated")
    return redirect(url_for("dashboard.keys"))


@bp.route("/keys/<int:key_id>/edit", methods=["GET", "POST"])
@login_required
def key_edit(key_id: int):  # noqa: ANN201
    """A key's page: rename it, set or clear its expiry, change its limits and allowed models,
    and copy its setups for each tool (with the key's ``pg-65b0…69d0``: the secret is never
    shown again). Changes go to the audit log like the operator's."""
    key = _own_key(key_id)
    if key.revoked_at is not None:
        abort(404)
    form = _with_model_choices(KeySettingsForm(obj=key, expires=last_valid_day(key.expires_at)))
    if form.validate_on_submit() and _within_ceilings(form, key):
        with audit.change("key.edit", key):
            update_settings(key, **form.settings(key.expires_at))
        flash(f"Key {key.display} saved.", "success")
        return redirect(url_for("dashboard.key_edit", key_id=key.id))
    if request.method == "POST":
        flash("Nothing was saved: check the fields below.", "error")
    return render_template("dashboard/key_edit.html", form=form, key=key, ceilings=ceiling_note(current_user),
                           expired=is_expired(key.expires_at), setups=_setups(key.display))
