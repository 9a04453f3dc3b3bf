"""API keys: create, hash, read from request headers and authenticate."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from flask import has_request_context
from flask import request
from sqlalchemy import bindparam
from sqlalchemy import select
from werkzeug.datastructures import Headers

from pagegrid import allowlist
from pagegrid.errors import AuthenticationFailed
from pagegrid.errors import PermissionDenied
from pagegrid.extensions import core
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import PriceGroup
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.pricegroups import LIST_PRICES
from pagegrid.pricegroups import Multiplier

KEY_PATTERN = re.compile(r"pg-[0-9a-f]{64}")


@dataclass(frozen=True)
class KeyContext:
    """What the request path needs to know about an authenticated key (plain values)."""

    key_id: int
    user_id: int
    rpm: int
    daily_request_limit: int
    monthly_token_limit: int
    allowed_models: tuple[str, ...]
    concurrency: int = 16
    # Parsed once per distinct list (allowlist.networks); empty: any address.
    allowed_networks: tuple[allowlist.Network, ...] = ()
    # The user's price group: charges and holds are list costs times this multiplier.
    multiplier: Multiplier = LIST_PRICES
    price_group: str | None = None
    # A spending cap in nano-USD per day | week | month | total (None: no budget).
    budget_nanos: int | None = None
    budget_period: str | None = None
    # UTC, zone-aware; compared on every request (check_expiry), so a cached context still expires.
    expires_at: datetime | None = None


def _new_secret() -> str:
    return "pg-" + secrets.token_hex(32)


def hash_key(secret: str) -> str:
    """The sha256 hex digest stored for a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(user: User, *, name: str = "", rpm: int = 10, daily_request_limit: int = 0,
               monthly_token_limit: int = 0, allowed_models: list[str] | None = None,
               expires_at: datetime | None = None, concurrency: int = 16,
               allowed_ips: list[str] | None = None, budget_nanos: int = 0,
               budget_period: str = "month") -> tuple[ApiKey, str]:
    """Create a key for ``user``; return the row and the secret, which is never stored.

    ``budget_nanos`` 0 means no budget.
    """
    secret = _new_secret()
    key = ApiKey(user_id=user.id, name=name, key_hash=hash_key(secret), prefix=secret[:7],
                 last4=secret[-4:], rpm=rpm, daily_request_limit=daily_request_limit,
                 monthly_token_limit=monthly_token_limit, allowed_models=allowed_models or [],
                 expires_at=expires_at, concurrency=concurrency, allowed_ips=allowed_ips or [])
    _set_budget(key, budget_nanos, budget_period)
    db.session.add(key)
    db.session.commit()
    return key, secret


def update_settings(key: ApiKey, *, name: str | None = None, rpm: int | None = None,
                    daily_request_limit: int | None = None, monthly_token_limit: int | None = None,
                    allowed_models: list[str] | None = None,
                    expires_at: datetime | None = None, concurrency: int | None = None,
                    allowed_ips: list[str] | None = None, budget_nanos: int | None = None,
                    budget_period: str | None = None, never_expires: bool = False) -> ApiKey:
    """Change a key's name, limits, budget, expiry and restrictions; the secret stays the same.
    None keeps a value (``budget_nanos`` 0 removes the budget; ``never_expires`` clears the
    expiry)."""
    if name is not None:
        key.name = name
    if rpm is not None:
        key.rpm = rpm
    if daily_request_limit is not None:
        key.daily_request_limit = daily_request_limit
    if monthly_token_limit is not None:
        key.monthly_token_limit = monthly_token_limit
    if allowed_models is not None:
        key.allowed_models = allowed_models
    if expires_at is not None or never_expires:
        key.expires_at = expires_at
    if concurrency is not None:
        key.concurrency = concurrency
    if allowed_ips is not None:
        key.allowed_ips = allowed_ips
    if budget_nanos is not None or budget_period is not None:
        _set_budget(key, (key.budget_nanos or 0) if budget_nanos is None else budget_nanos,
                    budget_period or key.budget_period or "month")
    db.session.commit()
    return key


def _set_budget(key: ApiKey, budget_nanos: int, period: str) -> None:
    if period not in BUDGET_PERIODS:
        raise ValueError(f"a budget period is one of {', '.join(BUDGET_PERIODS)}: {period!r}")
    if budget_nanos < 0:
        raise ValueError("a budget is not negative")
    key.budget_nanos, key.budget_period = (budget_nanos, period) if budget_nanos else (None, None)


# The periods a key's dollar budget may cover (UTC calendar day, ISO week from Monday, calendar
# month, all time); limits.py keeps the counters.
BUDGET_PERIODS = ("day", "week", "month", "total")


def revoke_key(key: ApiKey) -> None:
    """Stop a key for good."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.session.commit()


def rotate_key(key: ApiKey) -> str:
    """Give a key a new secret (same id, settings and history); the old secret stops at once."""
    secret = _new_secret()
    key.key_hash, key.prefix, key.last4 = hash_key(secret), secret[:7], secret[-4:]
    db.session.commit()
    return secret


def key_from_headers(headers: Mapping[str, str] | Headers) -> str | None:
    """The key from ``x-api-key``, ``api-key`` or ``Authorization: Bearer``, if any."""
    for name in ("x-api-key", "api-key"):
        value = headers.get(name)
        if value:
            return value.strip()
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


_KEYS, _USERS, _GROUPS = ApiKey.__table__, User.__table__, PriceGroup.__table__
# Built once: plain Core on the tables, the columns the request path needs and nothing else.
_KEY_LOOKUP = (
    select(_KEYS.c.id, _KEYS.c.user_id, _KEYS.c.key_hash, _KEYS.c.revoked_at, _KEYS.c.expires_at,
           _KEYS.c.rpm, _KEYS.c.concurrency, _KEYS.c.daily_request_limit, _KEYS.c.monthly_token_limit,
           _KEYS.c.allowed_models, _KEYS.c.allowed_ips, _KEYS.c.budget_nanos, _KEYS.c.budget_period,
           _USERS.c.active.label("user_active"), _USERS.c.max_rpm, _USERS.c.max_concurrency,
           _GROUPS.c.name.label("group_name"), _GROUPS.c.multiplier_num, _GROUPS.c.multiplier_den)
    .join(_USERS, _USERS.c.id == _KEYS.c.user_id)
    .outerjoin(_GROUPS, _GROUPS.c.id == _USERS.c.price_group_id)
    .where(_KEYS.c.key_hash == bindparam("p_hash"))
)


def authenticate(headers: Mapping[str, str] | Headers, client_ip: str | None = None) -> KeyContext:
    """Resolve the request's key, or raise AuthenticationFailed (401), or PermissionDenied (403)
    when the key has an IP allow-list without ``client_ip`` (default: the request's address,
    which ProxyFix has already taken from a trusted proxy's ``X-Forwarded-For``)."""
    context = key_context(headers)
    check_expiry(context)
    check_client_ip(context, client_ip)
    return context


def key_context(headers: Mapping[str, str] | Headers) -> KeyContext:
    """The request's key as plain values, or AuthenticationFailed (401); no per-request checks.

    A cache of contexts belongs here; ``check_expiry`` and ``check_client_ip`` must still run on
    every request.
    """
    secret = key_from_headers(headers)
    if secret is None:
        raise AuthenticationFailed(
            "Missing API key: send it as x-api-key, api-key or Authorization: Bearer.")
    if not KEY_PATTERN.fullmatch(secret):
        raise AuthenticationFailed("Invalid API key format: keys are pg- followed by 64 hex characters.")
    digest = hash_key(secret)
    key = core(_KEY_LOOKUP, {"p_hash": digest}).first()
    # The index finds the row; the final comparison of digests runs in constant time.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise AuthenticationFailed("Invalid API key.")
    if key.revoked_at is not None:
        raise AuthenticationFailed("This API key has been revoked.")
    if not key.user_active:
        raise AuthenticationFailed("This account is disabled.")
    # The admin's ceilings for the user bound what the customer set on the key.
    return KeyContext(key_id=key.id, user_id=key.user_id, rpm=_ceiling(key.rpm, key.max_rpm),
                      daily_request_limit=key.daily_request_limit,
                      monthly_token_limit=key.monthly_token_limit,
                      allowed_models=tuple(key.allowed_models or ()),
                      concurrency=_ceiling(key.concurrency, key.max_concurrency),
                      allowed_networks=allowlist.networks(tuple(key.allowed_ips or ())),
                      multiplier=(Multiplier(key.multiplier_num, key.multiplier_den)
                                  if key.group_name is not None else LIST_PRICES),
                      price_group=key.group_name, budget_nanos=key.budget_nanos,
                      budget_period=key.budget_period,
                      expires_at=_aware(key.expires_at) if key.expires_at is not None else None)


def is_expired(expires_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether a key with this expiry (None: never) no longer authenticates."""
    return expires_at is not None and _aware(expires_at) <= (now or utcnow())


def check_expiry(context: KeyContext) -> None:
    """AuthenticationFailed (401) naming the moment once the key's expiry has passed."""
    expires_at = context.expires_at
    if expires_at is not None and expires_at <= utcnow():
        raise AuthenticationFailed(f"This API key expired at {expires_at:%Y-%m-%d %H:%M} UTC; "
                                   "create a new key or ask its owner to extend it.")


def check_client_ip(context: KeyContext, client_ip: str | None = None) -> None:
    """PermissionDenied (403) naming the address unless the key may be used from it."""
    if not context.allowed_networks:
        return
    if client_ip is None and has_request_context():
        client_ip = request.remote_addr
    if not allowlist.allows(context.allowed_networks, client_ip):
        raise PermissionDenied(f"This API key may not be used from {client_ip or 'an unknown address'}: "
                               "the address is not in the key's IP allow-list.")


def _ceiling(value: int, ceiling: int | None) -> int:
    return min(value, ceiling) if ceiling else value


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)
