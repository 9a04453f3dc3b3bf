"""Reading the ledger: a user's transaction history, its CSV export and usage aggregates."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select
from sqlalchemy import case
from sqlalchemy import func
from sqlalchemy import select

from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import LedgerEntry
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import format_usd

TOKENS = (LedgerEntry.input_tokens + LedgerEntry.output_tokens
          + LedgerEntry.cache_creation_input_tokens + LedgerEntry.cache_read_input_tokens)
# Every input token of a request, cached or not: the base of the cache-read share.
INPUT_TOKENS = (LedgerEntry.input_tokens + LedgerEntry.cache_creation_input_tokens
                + LedgerEntry.cache_creation_1h_input_tokens + LedgerEntry.cache_read_input_tokens)
CSV_COLUMNS = ("time_utc", "request_id", "kind", "key", "model", "input_tokens", "output_tokens",
               "cache_write_tokens", "cache_read_tokens", "amount_usd", "status", "note")


@dataclass(frozen=True)
class Filters:
    """Transaction history filters; dates are UTC days, both ends included."""

    key_id: int | None = None
    model: str | None = None
    start: date | None = None
    end: date | None = None
    kind: str | None = None  # usage, credit, topup, refund


def _where(user_id: int, filters: Filters) -> list:
    conditions = [LedgerEntry.user_id == user_id]
    if filters.key_id is not None:
        conditions.append(LedgerEntry.api_key_id == filters.key_id)
    if filters.model:
        conditions.append(LedgerEntry.model == filters.model)
    if filters.kind:
        conditions.append(LedgerEntry.kind == filters.kind)
    if filters.start:
        conditions.append(LedgerEntry.created_at >= _midnight(filters.start))
    if filters.end:
        conditions.append(LedgerEntry.created_at < _midnight(filters.end + timedelta(days=1)))
    return conditions


def _filtered(user_id: int, filters: Filters) -> Select:
    return (select(LedgerEntry).where(*_where(user_id, filters))
            .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc()))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=utcnow().tzinfo)


def history(user_id: int, filters: Filters, *, page: int, per_page: int = 50) -> Pagination:
    """One page of the user's ledger rows, newest first."""
    return db.paginate(_filtered(user_id, filters), page=page, per_page=per_page, error_out=False)


def export_rows(user_id: int, filters: Filters) -> Iterator[tuple]:
    """Every filtered row as CSV values (exact amounts), streamed from the database."""
    labels = key_labels(user_id)
    for entry in db.session.scalars(_filtered(user_id, filters).execution_options(yield_per=500)):
        yield (entry.created_at.strftime("%Y-%m-%d %H:%M:%S"), entry.request_id, entry.kind,
               labels.get(entry.api_key_id, ""), entry.model or "", entry.input_tokens,
               entry.output_tokens, entry.cache_creation_input_tokens, entry.cache_read_input_tokens,
               format_usd(entry.amount_nanos, exact=True, symbol=False, grouping=False), entry.status,
               entry.note or "")


def key_labels(user_id: int) -> dict[int, str]:
    """Key id -> ``name (pg-65b0…69d0)`` for the user's keys, revoked ones included."""
    keys = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user_id)).all()
    return {k.id: f"{k.name} ({k.display})" if k.name else k.display for k in keys}


def models_used(user_id: int) -> list[str]:
    """Models that appear in the user's ledger."""
    return list(db.session.scalars(
        select(LedgerEntry.model).where(LedgerEntry.user_id == user_id, LedgerEntry.model.is_not(None))
        .distinct().order_by(LedgerEntry.model)))


def summary(user_id: int) -> dict:
    """Balance, money on hold, this month's spend and the number of active keys."""
    user = db.session.get_one(User, user_id)
    month_start = utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    spent = db.session.scalar(
        select(func.coalesce(-func.sum(LedgerEntry.amount_nanos), 0))
        .where(LedgerEntry.user_id == user_id, LedgerEntry.kind == "usage",
               LedgerEntry.created_at >= month_start))
    keys = db.session.scalar(select(func.count()).select_from(ApiKey).where(
        ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None)))
    return {"balance_nanos": user.balance_nanos, "held_nanos": user.held_nanos,
            "spent_month_nanos": int(spent or 0), "active_keys": keys}


def _utc_day(column):  # noqa: ANN001, ANN202 - SQL expressions
    # SQLite stores UTC text; PostgreSQL must be told to read the timestamptz in UTC.
    if db.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)


def daily_usage(user_id: int, start: date, end: date, key_id: int | None = None) -> list[dict]:
    """Spend, tokens and requests per UTC day from ``start`` to ``end`` (both included), oldest
    first, for one key or all."""
    filters = Filters(key_id=key_id, start=start, end=end)
    day = _utc_day(LedgerEntry.created_at)
    rows = db.session.execute(
        select(day, -func.sum(LedgerEntry.amount_nanos), func.sum(TOKENS), func.count())
        .where(*_where(user_id, filters), LedgerEntry.kind == "usage")
        .group_by(day)).all()
    by_day = {r[0]: r for r in rows}
    out = []
    for offset in range((end - start).days + 1):
        label = (start + timedelta(days=offset)).isoformat()
        row = by_day.get(label)
        out.append({"day": label, "spend_nanos": int(row[1]) if row else 0,
                    "tokens": int(row[2]) if row else 0, "requests": int(row[3]) if row else 0})
    return out


def usage_by(user_id: int, dimension: str, start: date, end: date, key_id: int | None = None) -> list[dict]:
    """Spend, tokens and requests per model or per key from ``start`` to ``end``, largest first."""
    filters = Filters(key_id=key_id, start=start, end=end)
    column = LedgerEntry.model if dimension == "model" else LedgerEntry.api_key_id
    spend = -func.sum(LedgerEntry.amount_nanos)
    rows = db.session.execute(
        select(column, spend, func.sum(TOKENS), func.count(),
               func.sum(case((LedgerEntry.status == "complete", 0), else_=1)),
               func.sum(LedgerEntry.cache_read_input_tokens), func.sum(INPUT_TOKENS))
        .where(*_where(user_id, filters), LedgerEntry.kind == "usage")
        .group_by(column).order_by(spend.desc())).all()
    labels = key_labels(user_id) if dimension == "key" else {}
    return [{"label": labels.get(r[0], r[0]) if dimension == "key" else r[0],
             "spend_nanos": int(r[1] or 0), "tokens": int(r[2] or 0), "requests": int(r[3]),
             "incomplete": int(r[4] or 0), "cache_share": share(r[5], r[6])} for r in rows]


def share(part: int | None, whole: int | None) -> float | None:
    """``part / whole`` (None when there is no whole)."""
    return int(part or 0) / int(whole) if whole else None


def cache_read_share(column, since: datetime) -> dict:  # noqa: ANN001 - a LedgerEntry column
    """Cache-read tokens as a share of all input tokens per value of ``column`` (an upstream
    account, a key) since ``since``: what the providers' prompt caches saved."""
    rows = db.session.execute(
        select(column, func.sum(LedgerEntry.cache_read_input_tokens), func.sum(INPUT_TOKENS))
        .where(LedgerEntry.kind == "usage", LedgerEntry.created_at >= since, column.is_not(None))
        .group_by(column)).all()
    return {value: share(read, whole) for value, read, whole in rows if whole}
