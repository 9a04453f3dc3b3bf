"""Per-key limits: requests per minute (Flask-Limiter's store), requests per UTC day, tokens per
UTC month, and a dollar budget per UTC day, ISO week, month or all time.

The RPM window lives in Flask-Limiter's storage: Redis when ``PAGEGRID_REDIS_URL`` is set
(shared by every worker and instance), else process memory with a single worker. The daily,
weekly, monthly and all-time counters live in the database (``key_usage``), updated in the same
transactions as admission and settlement, so they are exact however many processes serve and
survive restarts.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from functools import lru_cache
from typing import Any

from flask import current_app
from flask import g
from limits import RateLimitItem
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from pagegrid.errors import RateLimited
from pagegrid.extensions import core
from pagegrid.extensions import db
from pagegrid.extensions import limiter
from pagegrid.keys import BUDGET_PERIODS
from pagegrid.keys import KeyContext
from pagegrid.models import Hold
from pagegrid.models import KeyUsage
from pagegrid.money import format_usd

log = logging.getLogger(__name__)

# count_tokens is free and Claude Code sends a dozen at once: its own, generous budget.
COUNT_TOKENS_MULTIPLIER = 30
COUNT_TOKENS_MINIMUM = 300
# After the limit store failed, this many seconds pass before it is tried again.
STORE_RETRY_SECONDS = 5.0


class RequestRate:
    """Requests per window for each key, in Flask-Limiter's store (Redis when configured).

    The limit items are built once per (amount, window) and the headers' numbers are read at
    admission, so nothing touches the store after the upstream has answered. While the store is
    unreachable each process counts in its own memory (so with N workers a key may get up to N
    times its RPM) and tries the store again every few seconds; nothing is refused for it.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[int, int], RateLimitItem] = {}
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self._store_down_until = 0.0

    def _item(self, amount: int, window: int) -> RateLimitItem:
        item = self._items.get((amount, window))
        if item is None:
            item = self._items[(amount, window)] = RateLimitItemPerSecond(amount, window)
        return item

    def hit(self, prefix: str, scope: str, key_id: int, amount: int,
            window: int) -> tuple[bool, int, float]:
        """Count one request; return (allowed, remaining, window reset time)."""
        item = self._item(amount, window)
        args = (prefix, scope, f"key{key_id}")
        if time.monotonic() >= self._store_down_until:
            try:
                allowed = limiter.limiter.hit(item, *args)
                reset, remaining = limiter.limiter.get_window_stats(item, *args)
                return allowed, remaining, reset
            except Exception as exc:  # noqa: BLE001 - any store failure (Redis down, timeout)
                log.warning("rate limit store unreachable (%s): counting in process memory", exc)
                self._store_down_until = time.monotonic() + STORE_RETRY_SECONDS
        allowed = self._fallback.hit(item, *args)
        reset, remaining = self._fallback.get_window_stats(item, *args)
        return allowed, remaining, reset


def _window() -> int:
    return current_app.config["PAGEGRID_RPM_WINDOW_SECONDS"]


def check_rate(key: KeyContext, scope: str) -> None:
    """Count the request against the key's RPM (``model-calls``) or the count_tokens budget
    (429 with ``retry-after`` when it is spent); keep the numbers for the response headers."""
    window = _window()
    amount = key.rpm
    if scope == "count-tokens":
        amount = max(COUNT_TOKENS_MINIMUM, COUNT_TOKENS_MULTIPLIER * key.rpm)
    config = current_app.config
    allowed, remaining, reset = current_app.extensions["pagegrid.rate"].hit(
        config["RATELIMIT_KEY_PREFIX"], scope, key.key_id, amount, window)
    g.rate = (amount, remaining, reset)
    if not allowed:
        wait = max(1, math.ceil(reset - time.time()))
        what = "requests" if scope == "model-calls" else "token counting requests"
        raise RateLimited(f"Rate limit exceeded: this key allows {amount} {what} per {window} seconds. "
                          "Retry after the time in the retry-after header.",
                          headers={"retry-after": str(wait)}, limit=scope.replace("model-calls", "rpm")
                          .replace("-", "_"))


def rate_headers(dialect: str) -> dict[str, str]:
    """The remaining request budget, in the header names of the dialect (no store access)."""
    rate = g.get("rate")
    if rate is None:
        return {}
    amount, remaining, resets_at = rate
    reset_in = max(0, math.ceil(resets_at - time.time()))
    if dialect == "anthropic":
        return {"anthropic-ratelimit-requests-limit": str(amount),
                "anthropic-ratelimit-requests-remaining": str(remaining),
                "anthropic-ratelimit-requests-reset": _rfc3339(math.ceil(resets_at))}
    return {"x-ratelimit-limit-requests": str(amount),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset_in}s"}


@lru_cache(maxsize=256)
def _rfc3339(second: int) -> str:
    # Many requests share a reset second: formatted once each.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_period(moment: datetime) -> str:
    """The counter period of a UTC day (``2026-12-07``; formatted without strftime, which costs
    more than the statement it keys on the request path)."""
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def month_period(moment: datetime) -> str:
    """The counter period of a UTC month (``2026-12``)."""
    return f"{moment.year:04d}-{moment.month:02d}"


def week_period(moment: datetime) -> str:
    """The counter period of an ISO week (Monday to Sunday, UTC): ``2026-W49``."""
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


TOTAL_PERIOD = "total"


def period_label(period: str, moment: datetime) -> str:
    """The ``key_usage`` period that ``moment`` falls in for a budget period."""
    if period == "day":
        return day_period(moment)
    if period == "week":
        return week_period(moment)
    if period == "month":
        return month_period(moment)
    return TOTAL_PERIOD


def _next_day(moment: datetime) -> datetime:
    return (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _next_month(moment: datetime) -> datetime:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


def period_reset(period: str, moment: datetime) -> datetime | None:
    """When the period containing ``moment`` ends (None: ``total`` never does)."""
    if period == "day":
        return _next_day(moment)
    if period == "week":
        return _next_day(moment + timedelta(days=6 - moment.weekday()))
    if period == "month":
        return _next_month(moment)
    return None


# Clients sleep for retry-after before retrying (Codex up to five times), so a daily or monthly
# limit that resets in hours says so in its message and tells clients not to retry.
LONGEST_USEFUL_WAIT = 60


def _quota_refused(message: str, moment: datetime, resets: datetime, limit: str) -> RateLimited:
    wait = max(1, math.ceil((resets - moment).total_seconds()))
    when = resets.strftime("%Y-%m-%d %H:%M UTC")
    if wait <= LONGEST_USEFUL_WAIT:
        return RateLimited(f"{message} It resets at {when}.", headers={"retry-after": str(wait)},
                           limit=limit)
    return RateLimited(f"{message} It resets at {when}; retrying earlier will not help.",
                       headers={"x-should-retry": "false"}, limit=limit)


_USAGE, _HOLDS = KeyUsage.__table__, Hold.__table__
_MONTH_TOKENS = select(_USAGE.c.tokens).where(_USAGE.c.api_key_id == bindparam("p_kid"),
                                              _USAGE.c.period == bindparam("p_period"))
# One statement, so one snapshot: what the key spent in the period and what its open holds
# (this request's included) keep back.
_BUDGET_STATE = select(
    select(_USAGE.c.spent_nanos).where(_USAGE.c.api_key_id == bindparam("p_kid"),
                                       _USAGE.c.period == bindparam("p_period")).scalar_subquery(),
    select(func.coalesce(func.sum(_HOLDS.c.amount_nanos), 0))
    .where(_HOLDS.c.api_key_id == bindparam("p_kid")).scalar_subquery())
_ROW: dict[str, Any] = {"api_key_id": bindparam("p_kid"), "period": bindparam("p_period")}
_KEY = [_USAGE.c.api_key_id, _USAGE.c.period]


def _upserts(dialect_name: str) -> dict[str, object]:
    """The counter upserts for one database, built once (see ``_UPSERTS``)."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    count = dialect.insert(_USAGE).values(**_ROW, requests=1, tokens=0)
    add = dialect.insert(_USAGE).values(**_ROW, requests=0, tokens=bindparam("p_tokens"),
                                        spent_nanos=bindparam("p_cost"))
    bump = {"requests": _USAGE.c.requests + 1}
    return {
        "count": count.on_conflict_do_update(index_elements=_KEY, set_=bump)
        .returning(_USAGE.c.requests),
        "count_below": count.on_conflict_do_update(index_elements=_KEY, set_=bump,
                                                   where=_USAGE.c.requests < bindparam("p_limit"))
        .returning(_USAGE.c.requests),
        "settled": add.on_conflict_do_update(
            index_elements=_KEY, set_={"tokens": _USAGE.c.tokens + bindparam("p_tokens"),
                                       "spent_nanos": _USAGE.c.spent_nanos + bindparam("p_cost")}),
    }


_UPSERTS = {name: _upserts(name) for name in ("postgresql", "sqlite")}


def _statement(kind: str):  # noqa: ANN202 - a prebuilt Core statement
    return _UPSERTS["postgresql" if db.engine.dialect.name == "postgresql" else "sqlite"][kind]


def admit_request(key: KeyContext, moment: datetime) -> None:
    """Check the monthly tokens and count today's request, or raise RateLimited (no commit)."""
    if key.monthly_token_limit:
        used = core(_MONTH_TOKENS, {"p_kid": key.key_id,
                                                  "p_period": month_period(moment)}).scalar() or 0
        if used >= key.monthly_token_limit:
            raise _quota_refused(f"Monthly token limit reached: this key has used {used:,} of its "
                                 f"{key.monthly_token_limit:,} tokens this month (UTC).",
                                 moment, _next_month(moment), "monthly_tokens")
    params = {"p_kid": key.key_id, "p_period": day_period(moment), "p_limit": key.daily_request_limit}
    kind = "count_below" if key.daily_request_limit else "count"
    counted = core(_statement(kind), params).scalar_one_or_none()
    if counted is None:
        raise _quota_refused(f"Daily request limit reached: this key allows "
                             f"{key.daily_request_limit:,} requests per UTC day.",
                             moment, _next_day(moment), "daily_requests")


def admit_budget(key: KeyContext, moment: datetime, hold_nanos: int, overdraft: str) -> None:
    """Refuse (RateLimited, no commit) a request that the key's budget cannot take.

    Runs after ``billing.reserve`` in the same transaction: the user-row UPDATE there serialises
    the user's admissions, and this request's hold is already among the key's open holds.
    ``one-hold`` admits while spent + the other open holds < budget, so the period can end over
    the budget by less than one hold however many requests run at once; ``none`` only while
    spent + open holds (this one's included) <= budget, so it never ends over.
    """
    if not key.budget_nanos or key.budget_period is None:
        return
    spent, held = core(_BUDGET_STATE, {
        "p_kid": key.key_id, "p_period": period_label(key.budget_period, moment)}).one()
    spent, held = spent or 0, int(held)  # PostgreSQL sums BIGINTs as NUMERIC
    others = held - hold_nanos
    if overdraft == "none":
        refused = spent + held > key.budget_nanos
    else:
        refused = spent + others >= key.budget_nanos
    if not refused:
        return
    budget = format_usd(key.budget_nanos, exact=True)
    span = "in total" if key.budget_period == TOTAL_PERIOD else f"this {key.budget_period} (UTC)"
    message = (f"Budget reached: this key has spent {format_usd(spent, exact=True)} of its {budget} "
               f"budget {span}")
    if others:
        message += f", and requests still in progress hold {format_usd(others, exact=True)}"
    if overdraft == "none":
        message += f"; this request needs up to {format_usd(hold_nanos, exact=True)} held for its worst case"
    message += "."
    resets = period_reset(key.budget_period, moment)
    if resets is None:
        raise RateLimited(f"{message} An all-time budget never resets: raise or remove it in the "
                          "dashboard; retrying will not help.", headers={"x-should-retry": "false"},
                          limit="budget")
    raise _quota_refused(message, moment, resets, "budget")


def count_settled(api_key_id: int, tokens: int, cost_nanos: int, moment: datetime) -> None:
    """Add a settled request's tokens and cost to its key's day, week, month and all-time
    counters (no commit)."""
    core(_statement("settled"), [
        {"p_kid": api_key_id, "p_period": period, "p_tokens": tokens, "p_cost": cost_nanos}
        for period in (day_period(moment), week_period(moment), month_period(moment), TOTAL_PERIOD)])


def usage_in_periods(api_key_id: int, moment: datetime) -> dict[str, KeyUsage | None]:
    """The key's counters of the periods ``moment`` falls in, by budget period name."""
    labels = {period: period_label(period, moment) for period in BUDGET_PERIODS}
    rows = db.session.scalars(select(KeyUsage).where(KeyUsage.api_key_id == api_key_id,
                                                     KeyUsage.period.in_(labels.values()))).all()
    by_label = {row.period: row for row in rows}
    return {period: by_label.get(label) for period, label in labels.items()}
