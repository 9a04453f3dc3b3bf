"""The admin console: users and wallets, top-up codes, the model catalog, upstream accounts."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import time
from datetime import timedelta

from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask_login import current_user
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash
from werkzeug.wrappers import Response
from wtforms.validators import DataRequired

from pagegrid import accounts
from pagegrid import audit
from pagegrid import billing
from pagegrid import ledger
from pagegrid import sessions
from pagegrid import twofactor
from pagegrid.admin import bp
from pagegrid.admin.forms import PROVIDERS
from pagegrid.admin.forms import CeilingsForm
from pagegrid.admin.forms import CreditForm
from pagegrid.admin.forms import ModelForm
from pagegrid.admin.forms import NewUserForm
from pagegrid.admin.forms import ResetPasswordForm
from pagegrid.admin.forms import TopUpCodeForm
from pagegrid.admin.forms import UpstreamForm
from pagegrid.admin.forms import UserSearchForm
from pagegrid.admin.groups import user_group_form
from pagegrid.catalog import catalog
from pagegrid.extensions import db
from pagegrid.forms import KeySettingsForm
from pagegrid.forms import last_valid_day
from pagegrid.keys import revoke_key
from pagegrid.keys import update_settings
from pagegrid.models import ApiKey
from pagegrid.models import CatalogModel
from pagegrid.models import LedgerEntry
from pagegrid.models import TopUpCode
from pagegrid.models import Upstream
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import format_usd
from pagegrid.money import per_mtok_decimal
from pagegrid.pool import pool
from pagegrid.users import create_user

PER_PAGE = 50
PRICE_FIELDS = ("input", "output", "cache_write", "cache_write_1h", "cache_read")


def _page(query: Select, param: str = "page", per_page: int = PER_PAGE) -> Pagination:
    return db.paginate(query, page=request.args.get(param, 1, type=int), per_page=per_page,
                       error_out=False)


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _form_failed() -> None:
    flash("Nothing was saved: check the fields marked below.", "error")


# Users ----------------------------------------------------------------------------------------

@bp.get("/")
def users() -> str:
    """Every account, newest first, searchable by email."""
    form = UserSearchForm(request.args)
    query = select(User).order_by(User.created_at.desc(), User.id.desc())
    needle = (form.q.data or "").strip().lower() if form.validate() else ""
    if needle:
        query = query.where(User.email.contains(needle, autoescape=True))
    return render_template("admin/users.html", form=form, page=_page(query),
                           query={"q": needle} if needle else {})


@bp.route("/users/new", methods=["GET", "POST"])
def user_new() -> str | Response:
    """Create an account with an initial password."""
    form = NewUserForm()
    if form.validate_on_submit():
        email = (form.email.data or "").strip().lower()
        if db.session.scalar(select(User.id).where(User.email == email)) is None:
            try:
                user = create_user(email, form.password.data or "", form.admin.data)
            except IntegrityError:  # created by someone else a moment ago
                db.session.rollback()
            else:
                audit.created("user.create", user)
                flash(f"Created {'admin ' if user.is_admin else ''}account {user.email}.", "success")
                return redirect(url_for("admin.user_detail", user_id=user.id))
        form.email.errors.append("An account with this email exists already.")  # type: ignore[attr-defined]  # a list (stub: Sequence)
    if form.errors:
        _form_failed()
    return render_template("admin/user_new.html", form=form)


def _user_or_404(user_id: int) -> User:
    return db.get_or_404(User, user_id, description="There is no such user.")


def _render_user(user: User, *, credit_form: CreditForm | None = None,
                 password_form: ResetPasswordForm | None = None,
                 ceilings_form: CeilingsForm | None = None) -> str:
    keys = _page(select(ApiKey).where(ApiKey.user_id == user.id)
                 .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc(), ApiKey.id.desc()),
                 param="keys_page", per_page=20)
    entries = ledger.history(user.id, ledger.Filters(), page=request.args.get("page", 1, type=int),
                             per_page=PER_PAGE)
    now = utcnow()
    expired = {k.id for k in keys.items if k.expires_at is not None and _aware(k.expires_at) <= now}
    return render_template(
        "admin/user.html", user=user, keys=keys, expired=expired, entries=entries,
        labels=ledger.key_labels(user.id), ledger_sum=billing.ledger_sum(user.id),
        credit_form=credit_form or CreditForm(formdata=None),
        password_form=password_form or ResetPasswordForm(formdata=None),
        ceilings_form=ceilings_form or CeilingsForm(formdata=None, obj=user),
        group_form=user_group_form(user))


@bp.get("/users/<int:user_id>")
def user_detail(user_id: int) -> str:
    """One account: wallet, keys, ledger, and the operator's actions."""
    return _render_user(_user_or_404(user_id))


@bp.post("/users/<int:user_id>/<any(enable, disable):action>")
def user_active(user_id: int, action: str) -> Response:
    """Enable or disable an account: a disabled one cannot log in and its keys get 401."""
    user = _user_or_404(user_id)
    if user.id == current_user.id and action == "disable":
        flash("You cannot disable your own account.", "error")
    else:
        user.active = action == "enable"
        if not user.active:
            sessions.end_all(user)  # a disabled account is logged out everywhere at once
        audit.record_change(f"user.{action}", user)
        db.session.commit()
        flash(f"{user.email} is {'enabled' if user.active else 'disabled'}.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.post("/users/<int:user_id>/password")
def user_password(user_id: int) -> str | Response:
    """Set a new password for the account."""
    user = _user_or_404(user_id)
    form = ResetPasswordForm(email=user.email)
    if not form.validate_on_submit():
        _form_failed()
        return _render_user(user, password_form=form)
    user.password_hash = generate_password_hash(form.new.data or "")
    sessions.end_all(user)  # whoever had the old password is logged out
    audit.record_change("user.password_reset", user)
    db.session.commit()
    if user.id == current_user.id:
        sessions.start(user)
    flash(f"The password of {user.email} was changed; its sessions are logged out.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.post("/users/<int:user_id>/two-factor/off")
def user_two_factor_off(user_id: int) -> Response:
    """Turn a user's two-factor login off (lost phone and recovery codes); their sessions end."""
    user = _user_or_404(user_id)
    if user.totp_enabled:
        twofactor.disable(user)
        sessions.end_all(user)
        audit.record_change("user.2fa_disable", user)
        db.session.commit()
        if user.id == current_user.id:
            sessions.start(user)
        flash(f"Two-factor login of {user.email} is off; its sessions are logged out.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


@bp.post("/users/<int:user_id>/ceilings")
def user_ceilings(user_id: int) -> str | Response:
    """Set the ceilings the customer's keys cannot exceed; they apply to every key at once."""
    user = _user_or_404(user_id)
    form = CeilingsForm()
    if not form.validate_on_submit():
        _form_failed()
        return _render_user(user, ceilings_form=form)
    user.max_rpm, user.max_concurrency = form.max_rpm.data, form.max_concurrency.data
    user.may_lift_quotas = form.may_lift_quotas.data
    audit.record_change("user.ceilings", user)
    db.session.commit()
    flash(f"Limits of {user.email} saved.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


def _key_or_404(key_id: int) -> ApiKey:
    return db.get_or_404(ApiKey, key_id, description="There is no such key.")


@bp.route("/keys/<int:key_id>/edit", methods=["GET", "POST"])
def key_edit(key_id: int) -> str | Response:
    """Change any customer key's name, expiry and limits (the admin is bound by no ceiling)."""
    key = _key_or_404(key_id)
    form = KeySettingsForm(obj=key, expires=last_valid_day(key.expires_at))
    form.allowed_models.choices = [(m.id, m.id) for m in catalog().active()]
    if form.validate_on_submit():
        with audit.change("key.edit", key):
            update_settings(key, **form.settings(key.expires_at))
        flash(f"Key {key.display} saved.", "success")
        return redirect(url_for("admin.user_detail", user_id=key.user_id))
    return render_template("admin/key_edit.html", form=form, key=key, ceilings="")


@bp.post("/keys/<int:key_id>/revoke")
def key_revoke(key_id: int) -> Response:
    """Revoke any customer key: its next API call gets 401."""
    key = _key_or_404(key_id)
    with audit.change("key.revoke", key):
        revoke_key(key)
    flash(f"Key {key.display} revoked.", "success")
    return redirect(url_for("admin.user_detail", user_id=key.user_id))


@bp.post("/users/<int:user_id>/credit")
def user_credit(user_id: int) -> str | Response:
    """Credit or debit the wallet exactly, as one ledger row with the operator's note."""
    user = _user_or_404(user_id)
    form = CreditForm()
    if not form.validate_on_submit():
        _form_failed()
        return _render_user(user, credit_form=form)
    amount = billing.usd_to_nanos(form.amount.data or "")
    if form.direction.data == "debit":
        amount = -amount
    before = db.session.scalar(select(User.balance_nanos).where(User.id == user.id))
    entry = billing.credit(user.id, amount, (form.note.data or "").strip(), commit=False)
    balance = db.session.execute(select(User.balance_nanos).where(User.id == user.id)).scalar_one()
    audit.record("wallet.credit" if amount > 0 else "wallet.debit", user,  # commits both together
                 before={"balance_nanos": before},
                 after={"balance_nanos": balance, "amount_nanos": amount, "note": entry.note,
                        "ledger_request_id": entry.request_id})
    verb = "Credited" if amount > 0 else "Debited"
    flash(f"{verb} {format_usd(abs(amount), exact=True, grouping=False)} "
          f"({'to' if amount > 0 else 'from'} {user.email}). "
          f"New balance: {format_usd(balance, exact=True, grouping=False)}.", "success")
    return redirect(url_for("admin.user_detail", user_id=user.id))


# Top-up codes -----------------------------------------------------------------------------------

@bp.route("/topup-codes", methods=["GET", "POST"])
def topup_codes() -> str:
    """Generate a code (shown on this response only) and list the codes by their hint."""
    form = TopUpCodeForm()
    code = None
    if form.validate_on_submit():
        expires_at = None
        if form.expires.data:  # valid through the whole UTC day
            expires_at = datetime.combine(form.expires.data + timedelta(days=1), time.min, tzinfo=UTC)
        row, code = billing.create_topup_code(billing.usd_to_nanos(form.amount.data or ""),
                                              note=(form.note.data or "").strip() or None,
                                              expires_at=expires_at, created_by=current_user.id)
        audit.created("topup_code.create", row)
        flash(f"Top-up code …{row.hint} for {format_usd(row.amount_nanos, exact=True, grouping=False)} "
              "created.", "success")
        form = TopUpCodeForm(formdata=None)
    elif form.errors:
        _form_failed()
    page = _page(select(TopUpCode).order_by(TopUpCode.created_at.desc(), TopUpCode.id.desc()))
    people = {c.redeemed_by for c in page.items} | {c.created_by for c in page.items}
    emails = dict(db.session.execute(select(User.id, User.email).where(User.id.in_(people - {None}))).all())
    now = utcnow()
    rows = [(c, "redeemed" if c.redeemed_at else
             "expired" if c.expires_at and _aware(c.expires_at) <= now else "open") for c in page.items]
    return render_template("admin/topup_codes.html", form=form, code=code, page=page, rows=rows,
                           emails=emails)


# Model catalog ----------------------------------------------------------------------------------

@bp.get("/models")
def models() -> str:
    """Every catalog model, active or not, with its prices."""
    page = _page(select(CatalogModel).order_by(CatalogModel.provider, CatalogModel.id))
    return render_template("admin/models.html", page=page)


def _model_data(model: CatalogModel) -> dict:
    data = {name: getattr(model, name) for name in (
        "display_name", "upstream_id", "context_window", "max_output", "vision", "tools", "thinking",
        "active")}
    data["aliases"] = ", ".join(model.aliases or [])
    for name in PRICE_FIELDS:
        data[name] = per_mtok_decimal(getattr(model, f"{name}_nanos"))
    return data


def _alias_clashes(model: CatalogModel, aliases: list[str]) -> list[str]:
    """Aliases that already name another model (by id or alias)."""
    taken: dict[str, str] = {}
    for other in db.session.scalars(select(CatalogModel).where(CatalogModel.id != model.id)):
        for name in (other.id, *(other.aliases or [])):
            taken.setdefault(name, other.id)
    return [f"{alias} already names {taken[alias]}." for alias in aliases if alias in taken]


@bp.route("/models/<model_id>", methods=["GET", "POST"])
def model_edit(model_id: str) -> str | Response:
    """Edit a model's names, limits, flags and prices; /v1/models shows the change at once."""
    model = db.get_or_404(CatalogModel, model_id, description="There is no such model.")
    form = ModelForm(data=_model_data(model))
    if form.validate_on_submit():
        aliases = [a for a in form.alias_list() if a != model.id]
        clashes = _alias_clashes(model, aliases)
        if not clashes:
            for name in ("display_name", "upstream_id"):
                setattr(model, name, getattr(form, name).data.strip())
            for name in ("context_window", "max_output", "vision", "tools", "thinking", "active"):
                setattr(model, name, getattr(form, name).data)
            model.aliases = aliases
            priced = [billing.price_per_mtok_to_nanos(getattr(form, name).data) for name in PRICE_FIELDS]
            if priced != [getattr(model, f"{name}_nanos") for name in PRICE_FIELDS] or model.needs_price:
                # The operator's price now: no longer auto-priced, and sync-models never touches it.
                model.auto_priced, model.needs_price, model.price_source = False, False, "set by the operator"
            for name, nanos in zip(PRICE_FIELDS, priced, strict=True):
                setattr(model, f"{name}_nanos", nanos)
            audit.record_change("catalog.edit", model)
            db.session.commit()
            current_app.extensions["pagegrid.catalog"].invalidate()
            flash(f"{model.id} saved.", "success")
            return redirect(url_for("admin.models"))
        form.aliases.errors.extend(clashes)  # type: ignore[attr-defined]  # a list (stub: Sequence)
    if form.errors:
        _form_failed()
    return render_template("admin/model_edit.html", form=form, model=model)


# Upstream accounts ------------------------------------------------------------------------------

def _upstream_or_404(upstream_id: int) -> Upstream:
    return db.get_or_404(Upstream, upstream_id, description="There is no such upstream account.")


@bp.get("/upstreams")
def upstreams() -> str:
    """The pool (never the keys): order, weights, live status and cache-read share per account."""
    since = utcnow() - timedelta(days=7)
    return render_template("admin/upstreams.html", accounts=accounts.listing(),
                           cache_share=ledger.cache_read_share(LedgerEntry.upstream, since),
                           providers={c.value: c.label for c in PROVIDERS},
                           attempts=current_app.config["PAGEGRID_UPSTREAM_ATTEMPTS"])


def _save_upstream(form: UpstreamForm, row: Upstream | None) -> bool:
    """Apply a valid form; False (with the reason on the form) if the account is refused."""
    settings = {"provider": form.provider.data, "name": (form.name.data or "").strip(),
                "base_url": form.base_url.data, "priority": form.priority.data or 0,
                "weight": 1 if form.weight.data is None else form.weight.data,
                "models": accounts.parse_models(form.models.data),
                "max_concurrency": form.max_concurrency.data}
    try:
        if row is None:
            accounts.add(api_key=form.api_key.data or "", enabled=form.enabled.data, **settings)
        else:
            accounts.update(row, api_key=form.api_key.data, **settings)
            if form.enabled.data != row.enabled:
                accounts.set_enabled(row.name, form.enabled.data)
    except accounts.AccountError as exc:
        db.session.rollback()
        form.name.errors = [*form.name.errors, str(exc)]
        return False
    return True


@bp.route("/upstreams/new", methods=["GET", "POST"])
def upstream_new() -> str | Response:
    """Add a provider account."""
    form = UpstreamForm()
    if form.validate_on_submit(extra_validators={"api_key": [DataRequired("Enter the account's API key.")]}) \
            and _save_upstream(form, None):
        flash(f"Upstream account {(form.name.data or '').strip()} added.", "success")
        return redirect(url_for("admin.upstreams"))
    if form.errors or form.name.errors:
        _form_failed()
    return render_template("admin/upstream_form.html", form=form, upstream=None)


@bp.route("/upstreams/<int:upstream_id>/edit", methods=["GET", "POST"])
def upstream_edit(upstream_id: int) -> str | Response:
    """Change an account; an empty key field keeps the stored key."""
    upstream = _upstream_or_404(upstream_id)
    # Filled field by field: the stored key never reaches the form.
    form = UpstreamForm(data={"provider": upstream.provider, "name": upstream.name,
                              "base_url": upstream.base_url, "enabled": upstream.enabled,
                              "priority": upstream.priority, "weight": upstream.weight,
                              "models": ", ".join(upstream.models or []),
                              "max_concurrency": upstream.max_concurrency})
    if form.validate_on_submit() and _save_upstream(form, upstream):
        flash(f"Upstream account {upstream.name} saved.", "success")
        return redirect(url_for("admin.upstreams"))
    if form.errors or form.name.errors:
        _form_failed()
    return render_template("admin/upstream_form.html", form=form, upstream=upstream)


@bp.post("/upstreams/<name>/<any(enable, disable):action>")
def upstream_active(name: str, action: str) -> Response:
    """Enable (clearing why it was disabled) or disable an account, environment ones too."""
    try:
        accounts.set_enabled(name, action == "enable")
    except accounts.AccountError as exc:
        abort(404, description=str(exc))
    flash(f"Upstream account {name} {action}d.", "success")
    return redirect(url_for("admin.upstreams"))


@bp.post("/upstreams/<int:upstream_id>/delete")
def upstream_delete(upstream_id: int) -> Response:
    """Delete an account."""
    upstream = _upstream_or_404(upstream_id)
    name = upstream.name
    db.session.delete(upstream)
    audit.record_change("upstream.delete", upstream)
    db.session.commit()
    pool(current_app).enable(name)  # forget its status
    flash(f"Upstream account {name} deleted.", "success")
    return redirect(url_for("admin.upstreams"))
