"""``GET /v1/key``: the calling key's limits, its usage in the current periods, its budget and
the wallet behind it, in exact nano-USD integers and USD strings."""

from __future__ import annotations

from datetime import datetime

from flask import Response
from flask import jsonify
from flask import request
from sqlalchemy import func
from sqlalchemy import select

from pagegrid import limits
from pagegrid.api import bp
from pagegrid.extensions import db
from pagegrid.keys import authenticate
from pagegrid.models import ApiKey
from pagegrid.models import Hold
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import format_usd


def _money(nanos: int) -> dict[str, int | str]:
    return {"nanos": nanos, "usd": format_usd(nanos, exact=True, symbol=False, grouping=False)}


def _moment(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


@bp.get("/key")
@bp.get("/v1/key")
def key_info() -> Response:
    """The calling key (x-api-key, api-key or Authorization: Bearer): limits, usage, budget, wallet."""
    key = authenticate(request.headers)
    now = utcnow()
    row = db.session.get(ApiKey, key.key_id)
    assert row is not None  # authenticate just found it
    balance, user_held = db.session.execute(
        select(User.balance_nanos, User.held_nanos).where(User.id == key.user_id)).one()
    key_held, in_flight = db.session.execute(
        select(func.coalesce(func.sum(Hold.amount_nanos), 0),
               func.count().filter(Hold.lease_until > now))
        .where(Hold.api_key_id == key.key_id)).one()
    key_held = int(key_held)  # PostgreSQL sums BIGINTs as NUMERIC
    usage = limits.usage_in_periods(key.key_id, now)
    spent = {period: counter.spent_nanos if counter is not None else 0 for period, counter in usage.items()}
    tokens = {period: counter.tokens if counter is not None else 0 for period, counter in usage.items()}
    budget = None
    if key.budget_nanos and key.budget_period is not None:
        used = spent[key.budget_period]
        budget = {"period": key.budget_period, "limit": _money(key.budget_nanos), "spent": _money(used),
                  "held": _money(key_held), "left": _money(key.budget_nanos - used - key_held),
                  "resets_at": _moment(limits.period_reset(key.budget_period, now))}
    day = usage["day"]
    return jsonify({
        "object": "api_key", "id": key.key_id, "name": row.name, "key": row.display,
        "price_group": ({"name": key.price_group, "multiplier": key.multiplier.text()}
                        if key.price_group is not None else None),
        "limits": {
            "requests_per_minute": key.rpm, "concurrency": key.concurrency,
            "requests_per_day": key.daily_request_limit or None,
            "tokens_per_month": key.monthly_token_limit or None,
            "models": list(key.allowed_models) or None, "allowed_ips": list(row.allowed_ips or []) or None,
        },
        "usage": {
            "requests_today": day.requests if day is not None else 0,
            "in_flight": in_flight,
            "tokens": tokens,
            "spent": {period: _money(nanos) for period, nanos in spent.items()},
            "resets_at": {period: _moment(limits.period_reset(period, now)) for period in spent},
        },
        "budget": budget,
        "wallet": {"balance": _money(balance), "held": _money(user_held),
                   "available": _money(balance - user_held)},
    })
