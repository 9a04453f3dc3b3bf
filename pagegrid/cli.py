"""The operator CLI (``flask --app app ...``): the contract in DESIGN.md."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask
from flask import current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import Text
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import type_coerce
from werkzeug.security import generate_password_hash

from pagegrid import accounts
from pagegrid import allowlist
from pagegrid import audit
from pagegrid import backup
from pagegrid import billing
from pagegrid import cli_catalog
from pagegrid import cli_groups
from pagegrid import crypto
from pagegrid import outbox
from pagegrid import passwords
from pagegrid import payments
from pagegrid import requestlog
from pagegrid import responses_store
from pagegrid import sessions
from pagegrid import twofactor
from pagegrid.catalog import seed_catalog
from pagegrid.extensions import db
from pagegrid.keys import BUDGET_PERIODS
from pagegrid.keys import create_key
from pagegrid.keys import is_expired
from pagegrid.keys import update_settings
from pagegrid.models import ApiKey
from pagegrid.models import OneTimeSecret
from pagegrid.models import OutboxMessage
from pagegrid.models import Upstream
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import format_usd
from pagegrid.settlement import settlements
from pagegrid.users import create_user


def _user(email: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    return user


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or migrate the schema and seed the model catalog (safe to run twice)."""
    upgrade()
    added = seed_catalog()
    settled, failing, released = _settle_and_sweep()
    pruned, forgotten = requestlog.prune(), responses_store.prune()
    click.echo(f"Database ready; {added} catalog models added; {settled} journaled settlements "
               f"replayed ({failing} still failing); {released} holds with expired leases released; "
               f"{pruned} request log rows and {forgotten} stored responses past retention pruned.")


@click.command("prune")
@with_appcontext
def prune_command() -> None:
    """Delete request log rows older than PAGEGRID_REQUEST_LOG_DAYS (the ledger is kept); safe from cron."""
    days = current_app.config["PAGEGRID_REQUEST_LOG_DAYS"]
    click.echo(f"Pruned {requestlog.prune()} request log rows older than {days} days.")


@click.command("prune-responses")
@with_appcontext
def prune_responses_command() -> None:
    """Delete stored responses older than PAGEGRID_RESPONSES_RETENTION_DAYS; safe from cron."""
    days = current_app.config["PAGEGRID_RESPONSES_RETENTION_DAYS"]
    click.echo(f"Pruned {responses_store.prune()} stored responses older than {days} days.")


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(path: Path) -> None:
    """Write a consistent copy of the live database to PATH (SQLite backup API, or pg_dump)."""
    try:
        result = backup.backup(current_app.config["SQLALCHEMY_DATABASE_URI"], path)
    except (ValueError, RuntimeError, OSError, sqlite3.Error) as exc:
        raise click.ClickException(str(exc)) from None
    checked = ""
    if result.users is not None:
        if result.inconsistent_users:
            raise click.ClickException(f"the copy at {result.path} has {result.inconsistent_users} "
                                       "users whose balance is not the sum of their ledger")
        checked = f"; balance == sum(ledger) for all {result.users} users"
    click.echo(f"Backed up to {result.path} ({result.size_bytes:,} bytes){checked}.")


def _settle_and_sweep() -> tuple[int, int, int]:
    journal = settlements(current_app).journal
    settled, failing = journal.replay_orphans()
    return settled, failing, billing.release_expired_holds()


@click.command("create-user")
@with_appcontext
@click.argument("email")
@click.option("--password", required=True)
@click.option("--admin", is_flag=True, help="Give the account the admin console.")
def create_user_command(email: str, password: str, admin: bool) -> None:
    """Create an account."""
    if db.session.scalar(select(User.id).where(User.email == email.strip().lower())):
        raise click.ClickException(f"a user with email {email} exists already")
    for problem in passwords.problems(password, email):
        raise click.ClickException(problem)
    audit.created("user.create", create_user(email, password, admin))
    click.echo(f"Created {'admin ' if admin else ''}user {email.strip().lower()}")


@click.command("ensure-admin")
@with_appcontext
def ensure_admin_command() -> None:
    """Create a first admin if there is none and print its credentials (once)."""
    if db.session.scalar(select(User.id).where(User.is_admin.is_(True)).limit(1)):
        return
    password = secrets.token_urlsafe(12)
    audit.created("user.create", create_user("admin@localhost", password, admin=True))
    click.echo(f"First admin created. Email: admin@localhost  Password: {password}\n"
               "This password is shown only now: store it, then change it in the dashboard.")


@click.command("reset-password")
@with_appcontext
@click.argument("email")
@click.password_option("--password", prompt="New password", help="Asked for (hidden) when not given.")
def reset_password_command(email: str, password: str) -> None:
    """Set a new password (a lost admin password) and log out the account's sessions."""
    user = _user(email)
    for problem in passwords.problems(password, user.email):
        raise click.ClickException(problem)
    user.password_hash = generate_password_hash(password)
    sessions.end_all(user)
    audit.record_change("user.password_reset", user)
    db.session.commit()
    click.echo(f"Password of {user.email} changed; its sessions are logged out")


@click.command("disable-2fa")
@with_appcontext
@click.argument("email")
def disable_2fa_command(email: str) -> None:
    """Turn two-factor login off for an account (a lost phone and lost recovery codes)."""
    user = _user(email)
    if not user.totp_enabled:
        click.echo(f"Two-factor login of {user.email} is already off")
        return
    twofactor.disable(user)
    sessions.end_all(user)
    audit.record_change("user.2fa_disable", user)
    db.session.commit()
    click.echo(f"Two-factor login of {user.email} is off; its sessions are logged out")


@click.command("credit")
@with_appcontext
@click.argument("email")
@click.argument("amount_usd")
@click.option("--note", default=None, help="Why (shown in the transaction history).")
def credit_command(email: str, amount_usd: str, note: str | None) -> None:
    """Top up (negative: adjust) a wallet; amounts to 9 decimals."""
    try:
        amount = billing.usd_to_nanos(amount_usd)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    user = _user(email)
    before = user.balance_nanos
    entry = billing.credit(user.id, amount, note or "Credit by operator (CLI)", commit=False)
    db.session.refresh(user)
    audit.record("wallet.credit" if amount >= 0 else "wallet.debit", user,  # commits both together
                 before={"balance_nanos": before},
                 after={"balance_nanos": user.balance_nanos, "amount_nanos": amount, "note": entry.note,
                        "ledger_request_id": entry.request_id})
    balance = format_usd(user.balance_nanos, exact=True, grouping=False)
    click.echo(f"{user.email}: {format_usd(amount, exact=True, grouping=False)} -> balance {balance}")


@click.command("create-key")
@with_appcontext
@click.argument("email")
@click.option("--name", default="", help="A label for the key.")
@click.option("--rpm", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--daily-limit", type=click.IntRange(min=0), default=0, help="0 = unlimited")
@click.option("--monthly-token-limit", type=click.IntRange(min=0), default=0, help="0 = unlimited")
@click.option("--models", default="", help="Comma-separated allow-list (empty = all).")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Requests in flight at once, streams included (default PAGEGRID_KEY_CONCURRENCY).")
@click.option("--allow-ips", default="", help="Comma-separated CIDR ranges the key may be used from "
              "(empty = anywhere), e.g. 10.0.0.0/8,2001:db8::/32.")
@click.option("--budget-usd", default="0", help="Most the key may spend per --budget-period (0 = no budget).")
@click.option("--budget-period", type=click.Choice(BUDGET_PERIODS), default="month", show_default=True,
              help="UTC calendar day, ISO week from Monday, calendar month, or all time.")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="The key stops working N days from now.")
@click.option("--expires-at", help="The key stops working at this UTC moment (2027-01-31T18:00) or "
              "after this UTC day (2027-01-31).")
def create_key_command(email: str, name: str, rpm: int, daily_limit: int,
                       monthly_token_limit: int, models: str, concurrency: int | None,
                       allow_ips: str, budget_usd: str, budget_period: str,
                       expires_in_days: int | None, expires_at: str | None) -> None:
    """Print a new key, and nothing else, on stdout."""
    allowed = [m.strip() for m in models.split(",") if m.strip()]
    key, secret = create_key(_user(email), name=name, rpm=rpm, daily_request_limit=daily_limit,
                             monthly_token_limit=monthly_token_limit, allowed_models=allowed,
                             concurrency=concurrency or current_app.config["PAGEGRID_KEY_CONCURRENCY"],
                             allowed_ips=_ip_ranges(allow_ips), budget_nanos=_budget(budget_usd),
                             budget_period=budget_period, expires_at=_expiry(expires_in_days, expires_at))
    audit.created("key.create", key)
    click.echo(secret)


def _budget(text: str) -> int:
    try:
        nanos = billing.usd_to_nanos(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget-usd") from None
    if nanos < 0:
        raise click.BadParameter("a budget is not negative", param_hint="--budget-usd")
    return nanos


def _expiry(in_days: int | None, at: str | None) -> datetime | None:
    """The moment ``--expires-in-days`` or ``--expires-at`` names (UTC), or None (never)."""
    if in_days is not None and at is not None:
        raise click.UsageError("Give --expires-in-days or --expires-at, not both.")
    if in_days is not None:
        return utcnow() + timedelta(days=in_days)
    if at is None:
        return None
    try:
        moment = (datetime.combine(date.fromisoformat(at) + timedelta(days=1), time.min, tzinfo=UTC)
                  if len(at) == 10 else datetime.fromisoformat(at))
    except ValueError:
        raise click.BadParameter("expected a date (2027-01-31) or a moment (2027-01-31T18:00, UTC)",
                                 param_hint="--expires-at") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= utcnow():
        raise click.BadParameter(f"{at} is in the past", param_hint="--expires-at")
    return moment.astimezone(UTC)


def _ip_ranges(text: str) -> list[str]:
    try:
        return allowlist.parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-ips") from None


@click.command("list-keys")
@with_appcontext
@click.argument("email")
def list_keys_command(email: str) -> None:
    """List a user's keys with their ids and limits (0 = unlimited)."""
    user = _user(email)
    for key in db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)):
        status = "revoked" if key.revoked_at else "expired" if is_expired(key.expires_at) else "active"
        expiry = f"expires={key.expires_at:%Y-%m-%dT%H:%M}Z" if key.expires_at else "expires=never"
        models = ",".join(key.allowed_models or []) or "all models"
        ips = ",".join(key.allowed_ips or []) or "any IP"
        budget = (f"budget={format_usd(key.budget_nanos, exact=True, grouping=False)}/{key.budget_period}"
                  if key.budget_nanos else "budget=none")
        click.echo(f"{key.id}\t{key.display}\t{key.name or '-'}\t{status}\trpm={key.rpm}\t"
                   f"concurrency={key.concurrency}\tdaily={key.daily_request_limit}\t"
                   f"monthly_tokens={key.monthly_token_limit}\t{budget}\t{expiry}\t{models}\t{ips}")


@click.command("set-key-limits")
@with_appcontext
@click.argument("key_id", type=int)
@click.option("--rpm", type=click.IntRange(min=1))
@click.option("--daily-limit", type=click.IntRange(min=0), help="0 = unlimited")
@click.option("--monthly-token-limit", type=click.IntRange(min=0), help="0 = unlimited")
@click.option("--models", help="Comma-separated allow-list; an empty string allows all models.")
@click.option("--concurrency", type=click.IntRange(min=1))
@click.option("--allow-ips", help="Comma-separated CIDR ranges; an empty string allows every address.")
@click.option("--budget-usd", default=None, help="Most the key may spend per period (0 = no budget).")
@click.option("--budget-period", type=click.Choice(BUDGET_PERIODS), default=None)
@click.option("--name", help="A new label for the key.")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="The key stops working N days from now.")
@click.option("--expires-at", help="A UTC moment (2027-01-31T18:00) or the last UTC day (2027-01-31).")
@click.option("--never-expires", is_flag=True, help="Clear the key's expiry.")
def set_key_limits_command(key_id: int, rpm: int | None, daily_limit: int | None,
                           monthly_token_limit: int | None, models: str | None,
                           concurrency: int | None, allow_ips: str | None, budget_usd: str | None,
                           budget_period: str | None, name: str | None,
                           expires_in_days: int | None, expires_at: str | None,
                           never_expires: bool) -> None:
    """Change a key's name, expiry, limits and budget without changing the key."""
    key = db.session.get(ApiKey, key_id)
    if key is None:
        raise click.ClickException(f"no key with id {key_id}")
    allowed = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
    ips = None if allow_ips is None else _ip_ranges(allow_ips)
    expiry = _expiry(expires_in_days, expires_at)
    if never_expires and expiry is not None:
        raise click.UsageError("--never-expires contradicts --expires-in-days/--expires-at.")
    with audit.change("key.edit", key):
        update_settings(key, name=name, rpm=rpm, daily_request_limit=daily_limit,
                        monthly_token_limit=monthly_token_limit, allowed_models=allowed,
                        concurrency=concurrency, allowed_ips=ips,
                        budget_nanos=None if budget_usd is None else _budget(budget_usd),
                        budget_period=budget_period, expires_at=expiry, never_expires=never_expires)
    click.echo(f"updated {key.display}")


@click.command("balance")
@with_appcontext
@click.argument("email")
def balance_command(email: str) -> None:
    """Print the exact balance: ``$12.345678901``."""
    click.echo(format_usd(_user(email).balance_nanos, exact=True, grouping=False))


@click.command("release-holds")
@with_appcontext
def release_holds_command() -> None:
    """Charge what dead workers journaled, then release holds whose lease expired.

    A request in flight keeps renewing its lease, so this never frees a live request's hold.
    """
    settled, failing, released = _settle_and_sweep()
    click.echo(f"{settled} journaled settlements replayed ({failing} still failing); "
               f"{released} holds with expired leases released")


@click.command("settle-pending")
@with_appcontext
def settle_pending_command() -> None:
    """Charge the settlements that dead workers left in the journal (exactly once)."""
    settled, failing = settlements(current_app).journal.replay_orphans()
    click.echo(f"{settled} journaled settlements replayed; {failing} still failing")
    if failing:
        raise SystemExit(1)


@click.command("send-outbox")
@with_appcontext
def send_outbox_command() -> None:
    """Send the alert and password-reset emails and webhooks that are due, dead workers' too."""
    outbox.deliver_due(current_app._get_current_object())  # type: ignore[attr-defined]  # a LocalProxy
    waiting = db.session.scalar(select(func.count()).select_from(OutboxMessage).where(
        OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None)))
    click.echo(f"{waiting} messages still waiting for a retry")


@click.command("rotate-encryption-key")
@with_appcontext
def rotate_encryption_key_command() -> None:
    """Re-encrypt every stored secret under the first key of PAGEGRID_ENCRYPTION_KEY."""
    count = 0
    for column in (Upstream.__table__.c.api_key, OneTimeSecret.__table__.c.value,
                   User.__table__.c.totp_secret, User.__table__.c.alert_webhook_secret,
                   OutboxMessage.__table__.c.body):
        table = column.table
        raw = (table.select().with_only_columns(table.c.id, type_coerce(column, Text))
               .where(column.is_not(None)))
        for row_id, token in db.session.execute(raw).all():
            db.session.execute(table.update().where(table.c.id == row_id)
                               .values({column.name: type_coerce(crypto.reencrypt(token), Text)}))
            count += 1
    audit.record("encryption_key.rotate", "stored secrets", after={"re_encrypted": count}, commit=False)
    db.session.commit()
    click.echo(f"{count} secrets re-encrypted under the first key; older keys can now be removed")


@click.command("add-upstream")
@with_appcontext
@click.argument("provider", type=click.Choice(["anthropic", "openai"]))
@click.argument("base_url")
@click.option("--key", "api_key", required=True, help="The account's provider API key.")
@click.option("--name", default=None, help="A unique name (default: PROVIDER-N).")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher is tried first.")
@click.option("--weight", type=click.IntRange(min=0), default=1, show_default=True,
              help="Share of traffic among accounts of the same priority.")
@click.option("--models", default="", help="Comma-separated catalog model ids (empty = all).")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="Requests in flight on this account at once (default: no cap).")
def add_upstream_command(provider: str, base_url: str, api_key: str, name: str | None, priority: int,
                         weight: int, models: str, max_concurrency: int | None) -> None:
    """Add an upstream provider account to the pool."""
    try:
        row = accounts.add(provider, base_url, api_key, name=name, priority=priority, weight=weight,
                           models=accounts.parse_models(models), max_concurrency=max_concurrency)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {row.name} ({provider}, priority {priority}, weight {weight})")


@click.command("list-upstreams")
@with_appcontext
def list_upstreams_command() -> None:
    """One line per account: name, provider, priority, weight, status (and why)."""
    for view in accounts.listing():
        models = ",".join(view.models) or "all models"
        cap = f"max_concurrency={view.max_concurrency}\t" if view.max_concurrency else ""
        click.echo(f"{view.name}\t{view.provider}\tpriority={view.priority}\tweight={view.weight}\t"
                   f"{cap}{models}\t{view.status}")


@click.command("set-upstream")
@with_appcontext
@click.argument("name")
@click.option("--enable/--disable", "enabled", default=None, help="Use the account, or stop using it.")
@click.option("--priority", type=int, default=None)
@click.option("--weight", type=click.IntRange(min=0), default=None)
def set_upstream_command(name: str, enabled: bool | None, priority: int | None,
                         weight: int | None) -> None:
    """Enable or disable an account (enabling clears a disablement's reason) or re-weigh it."""
    try:
        if priority is not None or weight is not None:
            accounts.set_routing(name, priority=priority, weight=weight)
        if enabled is not None:
            accounts.set_enabled(name, enabled)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from None
    view = next(v for v in accounts.listing() if v.name == name)
    click.echo(f"{view.name}\tpriority={view.priority}\tweight={view.weight}\t{view.status}")


def register(app: Flask) -> None:
    """Add the commands to ``app.cli``."""
    for command in (init_db_command, create_user_command, ensure_admin_command, credit_command,
                    create_key_command, list_keys_command, set_key_limits_command, balance_command,
                    release_holds_command, settle_pending_command, send_outbox_command,
                    rotate_encryption_key_command, reset_password_command, add_upstream_command,
                    list_upstreams_command, set_upstream_command, disable_2fa_command, prune_command,
                    prune_responses_command, backup_command):
        app.cli.add_command(command)
    app.cli.add_command(checkout_command)
    cli_catalog.register(app)  # sync-models, price rules, report-upstreams (issue 11)
    cli_groups.register(app)  # price groups (issue 14)


# -- payments (issue 14): card top-ups through Stripe Checkout ---------------------------------

@click.command("checkout")
@with_appcontext
@click.argument("email")
@click.argument("amount_usd")
def checkout_command(email: str, amount_usd: str) -> None:
    """Print a Stripe Checkout URL that tops up EMAIL's wallet by AMOUNT_USD once paid."""
    if not payments.enabled():
        raise click.ClickException("Stripe is not configured: set PAGEGRID_STRIPE_SECRET_KEY and "
                                   "PAGEGRID_STRIPE_WEBHOOK_SECRET")
    try:
        topup = payments.start_checkout(_user(email), payments.parse_amount(amount_usd))
    except (ValueError, payments.PaymentError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(topup.checkout_url)
