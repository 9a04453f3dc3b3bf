"""The admin overview and request log: revenue, list-price cost, margin, traffic and latency.

Money comes from the ledger (revenue is what requests were charged), traffic and latency from
the request log. The upstream cost is the providers' list price of the tokens charged (the
catalog's seed prices, ``catalog.SEED``) plus the server tools' fees; a model added by the
operator has no list price here and is costed at its catalog price (margin 0), flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from flask import abort
from flask import flash
from flask import render_template
from flask import request
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import select

from pagegrid import activity
from pagegrid import pricelist
from pagegrid import request_detail
from pagegrid.admin import bp
from pagegrid.billing import Price
from pagegrid.charts import bar_chart
from pagegrid.extensions import db
from pagegrid.models import CatalogModel
from pagegrid.models import Hold
from pagegrid.models import LedgerEntry
from pagegrid.models import RequestLogEntry
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import format_usd

WINDOWS = (("today", 1), ("7 days", 7), ("30 days", 30))
CHART_DAYS = 30
TOP = 10
_L = LedgerEntry
_TOKEN_SUMS = (func.coalesce(func.sum(_L.input_tokens), 0), func.coalesce(func.sum(_L.output_tokens), 0),
               func.coalesce(func.sum(_L.cache_creation_input_tokens), 0),
               func.coalesce(func.sum(_L.cache_creation_1h_input_tokens), 0),
               func.coalesce(func.sum(_L.cache_read_input_tokens), 0))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=utcnow().tzinfo)


def _utc_day(column):  # noqa: ANN001, ANN202 - SQL expressions
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def list_cost(model: str | None, tokens: Sequence[int], catalog_prices: dict[str, Price]) -> int:
    """Nano-USD the provider bills at list price for these token sums (in, out, cw, cw1h, cr)."""
    price = (pricelist.list_price(model) or catalog_prices.get(model)) if model else None
    if price is None:
        return 0
    inp, out, writes, writes_1h, reads = (int(t) for t in tokens)
    return (inp * price.input + out * price.output + (writes - writes_1h) * price.cache_write
            + writes_1h * price.cache_write_1h + reads * price.cache_read)


def _catalog_prices() -> dict[str, Price]:
    rows = db.session.scalars(select(CatalogModel)).all()
    return {r.id: Price(r.input_nanos, r.output_nanos, r.cache_write_nanos, r.cache_write_1h_nanos,
                        r.cache_read_nanos) for r in rows}


def _tool_fees(since: datetime) -> dict[str, int]:
    """Server tool fees charged since ``since`` by day (passed on to the provider at list)."""
    day = _utc_day(_L.created_at)
    by_day: dict[str, int] = {}
    for label, detail in db.session.execute(
            select(day, _L.detail).where(_L.kind == "usage", _L.created_at >= since,
                                         _L.detail.is_not(None))):
        tools = (detail or {}).get("server_tools") or {}
        by_day[label] = by_day.get(label, 0) + sum(int(t.get("nanos", 0)) for t in tools.values())
    return by_day


def money_by_day(since: datetime, prices: dict[str, Price]) -> dict[str, dict[str, int]]:
    """Revenue, list cost and charged requests per UTC day since ``since``."""
    day = _utc_day(_L.created_at)
    out: dict[str, dict[str, int]] = {}
    for label, model, revenue, count, *tokens in db.session.execute(
            select(day, _L.model, -func.sum(_L.amount_nanos), func.count(), *_TOKEN_SUMS)
            .where(_L.kind == "usage", _L.created_at >= since).group_by(day, _L.model)):
        slot = out.setdefault(label, {"revenue": 0, "cost": 0, "charged": 0})
        slot["revenue"] += int(revenue or 0)
        slot["charged"] += int(count)
        slot["cost"] += list_cost(model, tokens, prices)
    for label, fees in _tool_fees(since).items():
        out.setdefault(label, {"revenue": 0, "cost": 0, "charged": 0})["cost"] += fees
    return out


def _percentile(column, since: datetime, fraction: float, *extra) -> int | None:  # noqa: ANN001
    """Nearest-rank percentile of ``column`` over the log since ``since`` (exact, both databases)."""
    log = RequestLogEntry
    where = (log.created_at >= since, column.is_not(None), *extra)
    count = db.session.scalar(select(func.count()).select_from(log).where(*where)) or 0
    if not count:
        return None
    rank = max(1, math.ceil(count * fraction))
    return db.session.scalar(select(column).where(*where).order_by(column).offset(rank - 1).limit(1))


def traffic(since: datetime) -> dict:
    """Requests, refusals, errors and latency percentiles from the request log."""
    log = RequestLogEntry
    total, refused, errors = db.session.execute(
        select(func.count(), func.coalesce(func.sum(case((log.status.between(400, 499), 1), else_=0)), 0),
               func.coalesce(func.sum(case((log.status >= 500, 1), else_=0)), 0))
        .where(log.created_at >= since)).one()
    answered = (log.status < 400,)
    return {"requests": int(total), "refused": int(refused), "errors": int(errors),
            "error_rate": (int(errors) / int(total)) if total else 0.0,
            "latency_p50": _percentile(log.latency_ms, since, 0.50, *answered),
            "latency_p95": _percentile(log.latency_ms, since, 0.95, *answered),
            "ttft_p50": _percentile(log.ttft_ms, since, 0.50, *answered),
            "ttft_p95": _percentile(log.ttft_ms, since, 0.95, *answered)}


def summary(now: datetime | None = None) -> dict:
    """Every number on the overview page."""
    now = now or utcnow()
    today = now.date()
    prices = _catalog_prices()
    first = _midnight(today - timedelta(days=CHART_DAYS - 1))
    by_day = money_by_day(first, prices)
    windows = []
    for label, days in WINDOWS:
        start = today - timedelta(days=days - 1)
        picked = [v for k, v in by_day.items() if k >= start.isoformat()]
        revenue = sum(v["revenue"] for v in picked)
        cost = sum(v["cost"] for v in picked)
        windows.append({"label": label, "days": days, "revenue": revenue, "cost": cost,
                        "margin": revenue - cost, "charged": sum(v["charged"] for v in picked),
                        **traffic(_midnight(start))})
    chart_days = [(today - timedelta(days=CHART_DAYS - 1 - i)).isoformat() for i in range(CHART_DAYS)]
    return {"windows": windows, "days": [(d, by_day.get(d, {"revenue": 0, "cost": 0, "charged": 0}))
                                         for d in chart_days],
            "requests_by_day": _requests_by_day(first),
            "top_users": _top_users(first), "top_models": _top_models(first, prices),
            "balances": _balances(), "holds": _holds(),
            "unlisted": sorted(m for m in prices if pricelist.list_price(m) is None)}


def _requests_by_day(since: datetime) -> dict[str, tuple[int, int]]:
    log = RequestLogEntry
    day = _utc_day(log.created_at)
    return {label: (int(total), int(errors or 0)) for label, total, errors in db.session.execute(
        select(day, func.count(), func.sum(case((log.status >= 500, 1), else_=0)))
        .where(log.created_at >= since).group_by(day))}


def _top_users(since: datetime) -> list[dict]:
    spend = -func.sum(_L.amount_nanos)
    rows = db.session.execute(
        select(User.id, User.email, spend, func.count())
        .join(User, User.id == _L.user_id)
        .where(_L.kind == "usage", _L.created_at >= since)
        .group_by(User.id, User.email).order_by(spend.desc()).limit(TOP)).all()
    return [{"id": r[0], "email": r[1], "revenue": int(r[2] or 0), "requests": int(r[3])} for r in rows]


def _top_models(since: datetime, prices: dict[str, Price]) -> list[dict]:
    spend = -func.sum(_L.amount_nanos)
    rows = db.session.execute(
        select(_L.model, spend, func.count(), *_TOKEN_SUMS)
        .where(_L.kind == "usage", _L.created_at >= since)
        .group_by(_L.model).order_by(spend.desc()).limit(TOP)).all()
    out = []
    for model, revenue, count, *tokens in rows:
        cost = list_cost(model, tokens, prices)
        out.append({"model": model, "revenue": int(revenue or 0), "requests": int(count),
                    "tokens": sum(int(t) for i, t in enumerate(tokens) if i != 3), "cost": cost,
                    "margin": int(revenue or 0) - cost,
                    "listed": model is not None and pricelist.list_price(model) is not None})
    return out


def _balances() -> dict:
    positive = case((User.balance_nanos > 0, User.balance_nanos), else_=0)
    negative = case((User.balance_nanos < 0, User.balance_nanos), else_=0)
    prepaid, owed, users = db.session.execute(
        select(func.coalesce(func.sum(positive), 0), func.coalesce(func.sum(negative), 0),
               func.count())).one()
    return {"prepaid": int(prepaid), "owed": int(owed), "users": int(users)}


def _holds() -> dict:
    count, nanos = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Hold.amount_nanos), 0))).one()
    return {"count": int(count), "nanos": int(nanos)}


@bp.get("/overview")
def overview() -> str:
    """Revenue, cost, margin, traffic and latency at a glance, with 30 days of charts."""
    numbers = summary()
    days = numbers["days"]
    exact = lambda v: format_usd(v, exact=True)  # noqa: E731
    charts = {
        "revenue": bar_chart([(d, v["revenue"]) for d, v in days], title="Revenue per day",
                             describe=exact, axis=format_usd),
        "margin": bar_chart([(d, max(0, v["revenue"] - v["cost"])) for d, v in days],
                            title="Margin per day", describe=exact, axis=format_usd),
        "requests": bar_chart([(d, numbers["requests_by_day"].get(d, (0, 0))[0]) for d, _ in days],
                              title="Requests per day", describe=lambda v: f"{v:,}"),
    }
    return render_template("admin/overview.html", n=numbers, charts=charts)


@bp.get("/requests/<path:request_id>")
def request_page(request_id: str) -> str:
    """Any user's request in full."""
    record = request_detail.find(request_id)
    if record is None:
        abort(404)
    return render_template("admin/request.html", record=record)


@bp.get("/requests")
def request_log() -> str:
    """Everyone's requests, newest first, filtered by user, key, model, status, account, dates."""
    filters = activity.parse_filters(request.args, allow_user=True)
    if filters.problems:
        flash(f"Ignored filters that were not understood: {', '.join(filters.problems)}.", "error")
    rows = activity.page(filters, number=request.args.get("page", 1, type=int))
    query = {k: v for k, v in request.args.items() if k in activity.FILTER_NAMES and v}
    return render_template("admin/requests.html", page=rows, query=query,
                           emails=activity.user_emails({r.user_id for r in rows.items}))
