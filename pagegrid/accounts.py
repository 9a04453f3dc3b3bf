"""Managing upstream accounts (the admin pages and the CLI share these); routing is pool.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from pagegrid import audit
from pagegrid.extensions import db
from pagegrid.models import Upstream
from pagegrid.models import utcnow
from pagegrid.pool import PROVIDERS
from pagegrid.pool import env_account
from pagegrid.pool import pool

OPERATOR_DISABLED = "disabled by the operator"


class AccountError(ValueError):
    """An account change the operator must correct (shown as is)."""


@dataclass(frozen=True)
class AccountView:
    """One line of the account list: a database row or an environment account."""

    name: str
    provider: str
    base_url: str
    priority: int
    weight: int
    models: list[str]
    max_concurrency: int | None
    enabled: bool
    status: str
    row_id: int | None
    has_key: bool
    created_at: datetime | None


def parse_models(text: str | None) -> list[str]:
    """A comma-separated allow-list as a list (empty: every model of the provider)."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def check(provider: str, name: str, base_url: str, *, priority: int = 0, weight: int = 1,
          max_concurrency: int | None = None, row_id: int | None = None) -> None:
    """Raise AccountError unless these settings make a valid account."""
    if provider not in PROVIDERS:
        raise AccountError(f"provider must be one of {', '.join(PROVIDERS)}")
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise AccountError("name must be 1-100 characters without spaces")
    if name.startswith("env-") or name == "demo":
        raise AccountError(f"the name {name} is reserved for the built-in accounts")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AccountError("base URL must be an http(s) URL such as https://api.anthropic.com")
    if weight < 0 or weight > 10_000:
        raise AccountError("weight must be between 0 and 10000")
    if abs(priority) > 1_000_000:
        raise AccountError("priority must be between -1000000 and 1000000")
    if max_concurrency is not None and max_concurrency < 1:
        raise AccountError("the concurrency cap must be at least 1 (or empty for none)")
    clash = db.session.scalar(select(Upstream.id).where(Upstream.name == name))
    if clash is not None and clash != row_id:
        raise AccountError(f"an account named {name} exists already")


def add(provider: str, base_url: str, api_key: str, *, name: str | None = None, priority: int = 0,
        weight: int = 1, models: list[str] | None = None, max_concurrency: int | None = None,
        enabled: bool = True) -> Upstream:
    """Add an account (named ``<provider>-<n>`` when no name is given)."""
    base_url = base_url.strip().rstrip("/")
    if not name:
        taken = set(db.session.scalars(select(Upstream.name)))
        name = next(f"{provider}-{n}" for n in range(1, len(taken) + 2) if f"{provider}-{n}" not in taken)
    check(provider, name, base_url, priority=priority, weight=weight, max_concurrency=max_concurrency)
    if not api_key.strip():
        raise AccountError("the account needs an API key")
    row = Upstream(provider=provider, name=name, base_url=base_url, api_key=api_key.strip(),
                   priority=priority, weight=weight, models=list(models or []),
                   max_concurrency=max_concurrency, enabled=enabled)
    db.session.add(row)
    audit.record_change("upstream.create", row)
    db.session.commit()
    pool().forget()
    return row


def update(row: Upstream, *, provider: str, name: str, base_url: str, api_key: str | None,
           priority: int, weight: int, models: list[str], max_concurrency: int | None) -> None:
    """Change an account's settings; an empty ``api_key`` keeps the stored key."""
    base_url = base_url.strip().rstrip("/")
    check(provider, name, base_url, priority=priority, weight=weight,
          max_concurrency=max_concurrency, row_id=row.id)
    old_name = row.name
    row.provider, row.name, row.base_url = provider, name, base_url
    row.priority, row.weight, row.models, row.max_concurrency = priority, weight, models, max_concurrency
    if api_key and api_key.strip():
        row.api_key = api_key.strip()
    audit.record_change("upstream.edit", row)
    db.session.commit()
    if old_name != name:
        pool().enable(old_name)  # its recorded status does not follow it to the new name
    pool().forget()


def find(name: str) -> Upstream | None:
    """The database account named ``name``."""
    return db.session.scalar(select(Upstream).where(Upstream.name == name))


def set_enabled(name: str, enabled: bool) -> None:
    """Enable (forgetting why it was disabled) or disable an account, environment ones too."""
    row = find(name)
    if row is None and not _env_names().get(name):
        raise AccountError(f"no upstream account named {name}")
    service = pool()
    action = "upstream.enable" if enabled else "upstream.disable"
    if row is None:  # an environment account: its state lives in the pool's status table
        audit.record(action, f"upstream {name} (environment)", after={"enabled": enabled})
    if enabled:
        if row is not None:
            row.enabled, row.disabled_reason, row.disabled_at = True, None, None
            audit.record_change(action, row)
            db.session.commit()
        service.enable(name)
    elif row is not None:
        row.enabled, row.disabled_reason, row.disabled_at = False, OPERATOR_DISABLED, utcnow()
        audit.record_change(action, row)
        db.session.commit()
        service.forget()
    else:
        service.disable(name, OPERATOR_DISABLED)


def set_routing(name: str, *, priority: int | None = None, weight: int | None = None) -> None:
    """Change an account's priority or weight (database accounts only)."""
    row = find(name)
    if row is None:
        if _env_names().get(name):
            raise AccountError(f"{name} comes from the environment; add it as an account to "
                               "give it a priority or weight")
        raise AccountError(f"no upstream account named {name}")
    update(row, provider=row.provider, name=row.name, base_url=row.base_url, api_key=None,
           priority=row.priority if priority is None else priority,
           weight=row.weight if weight is None else weight, models=list(row.models or []),
           max_concurrency=row.max_concurrency)


def listing() -> list[AccountView]:
    """Every account, database and environment, highest priority first within a provider."""
    service = pool()
    views = [AccountView(row.name, row.provider, row.base_url, row.priority, row.weight,
                         list(row.models or []), row.max_concurrency, row.enabled,
                         service.describe(row.name, row.enabled, row.disabled_reason), row.id,
                         bool(row.api_key), row.created_at)
             for row in db.session.scalars(select(Upstream))]
    for name, account in _env_names().items():
        views.append(AccountView(name, account.provider, account.base_url, account.priority,
                                 account.weight, [], None, True, service.describe(name), None, True, None))
    return sorted(views, key=lambda v: (v.provider, -v.priority, v.name))


def _env_names() -> dict:
    config = current_app.config
    return {account.name: account for provider in PROVIDERS
            if (account := env_account(config, provider)) is not None}
