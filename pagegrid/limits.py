"""Per-key limits: requests per minute (Flask-Limiter), requests per UTC day, tokens per UTC month.

The RPM window lives in Flask-Limiter's storage: Redis when ``PAGEGRID_REDIS_URL`` is set
(shared by every worker and instance), else process memory with a single worker. The daily
and monthly counters live in the database, updated in the same transactions as admission and
settlement, so they are exact however many processes serve and survive restarts.
"""

from __future__ import annotations

import math
import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from flask import current_app
from flask import g
from flask import request
from flask_limiter import RequestLimit
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from pagegrid.errors import RateLimited
from pagegrid.extensions import db
from pagegrid.extensions import limiter
from pagegrid.keys import KeyContext
from pagegrid.keys import authenticate
from pagegrid.models import KeyUsage

# count_tokens is free and Claude Code sends a dozen at once: its own, generous budget.
COUNT_TOKENS_MULTIPLIER = 30
COUNT_TOKENS_MINIMUM = 300


def current_key() -> KeyContext:
    """The request's authenticated key (401 if none), looked up once per request."""
    key = g.get("api_key")
    if key is None:
        key = g.api_key = authenticate(request.headers)
    return key


def _window() -> int:
    return current_app.config["PAGEGRID_RPM_WINDOW_SECONDS"]


def rate_key() -> str:
    """Flask-Limiter key: the key's id, never the secret."""
    return f"key{current_key().key_id}"


def rpm_limit() -> str:
    """The key's own requests-per-minute limit."""
    return f"{current_key().rpm} per {_window()} second"


def count_tokens_limit() -> str:
    """count_tokens gets a separate, larger budget."""
    per_window = max(COUNT_TOKENS_MINIMUM, COUNT_TOKENS_MULTIPLIER * current_key().rpm)
    return f"{per_window} per {_window()} second"


def model_calls(view):  # noqa: ANN001, ANN201 - a view decorator
    """The RPM limit shared by every model-calling route of every dialect."""
    return limiter.shared_limit(rpm_limit, scope="model-calls", key_func=rate_key,
                                error_message=_rpm_message)(view)


def token_counting(view):  # noqa: ANN001, ANN201 - a view decorator
    """The count_tokens budget."""
    return limiter.limit(count_tokens_limit, key_func=rate_key)(view)


def _rpm_message() -> str:
    key = current_key()
    return (f"Rate limit exceeded: this key allows {key.rpm} requests per {_window()} seconds. "
            "Retry after the time in the retry-after header.")


def retry_after(limit: RequestLimit | None) -> int:
    """Whole seconds until ``limit`` lets a request through again (at least 1)."""
    if limit is None:
        return 1
    return max(1, math.ceil(_resets_at(limit) - time.time()))


def _resets_at(limit: RequestLimit) -> float:
    # The window's own reset time: RequestLimit.reset_at rounds it up by a whole second.
    return limit.window[0]


def rate_headers(dialect: str) -> dict[str, str]:
    """The remaining request budget, in the header names of the dialect."""
    limit = limiter.current_limit
    if limit is None:
        return {}
    resets_at = _resets_at(limit)
    reset_in = max(0, math.ceil(resets_at - time.time()))
    if dialect == "anthropic":
        reset = datetime.fromtimestamp(math.ceil(resets_at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"anthropic-ratelimit-requests-limit": str(limit.limit.amount),
                "anthropic-ratelimit-requests-remaining": str(limit.remaining),
                "anthropic-ratelimit-requests-reset": reset}
    return {"x-ratelimit-limit-requests": str(limit.limit.amount),
            "x-ratelimit-remaining-requests": str(limit.remaining),
            "x-ratelimit-reset-requests": f"{reset_in}s"}


def day_period(moment: datetime) -> str:
    """The counter period of a UTC day."""
    return moment.strftime("%Y-%m-%d")


def month_period(moment: datetime) -> str:
    """The counter period of a UTC month."""
    return moment.strftime("%Y-%m")


def _next_day(moment: datetime) -> datetime:
    return (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _next_month(moment: datetime) -> datetime:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=1)


# Clients sleep for retry-after before retrying (Codex up to five times), so a daily or monthly
# limit that resets in hours says so in its message and tells clients not to retry.
LONGEST_USEFUL_WAIT = 60


def _quota_refused(message: str, moment: datetime, resets: datetime) -> RateLimited:
    wait = max(1, math.ceil((resets - moment).total_seconds()))
    when = resets.strftime("%Y-%m-%d %H:%M UTC")
    if wait <= LONGEST_USEFUL_WAIT:
        return RateLimited(f"{message} It resets at {when}.", headers={"retry-after": str(wait)})
    return RateLimited(f"{message} It resets at {when}; retrying earlier will not help.",
                       headers={"x-should-retry": "false"})


def _upsert(**values: int | str):  # noqa: ANN202 - a dialect-specific INSERT
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(KeyUsage).values(**values)


def admit_request(key: KeyContext, moment: datetime) -> None:
    """Check the monthly tokens and count today's request, or raise RateLimited (no commit)."""
    if key.monthly_token_limit:
        used = db.session.scalar(select(KeyUsage.tokens).where(
            KeyUsage.api_key_id == key.key_id, KeyUsage.period == month_period(moment))) or 0
        if used >= key.monthly_token_limit:
            raise _quota_refused(f"Monthly token limit reached: this key has used {used:,} of its "
                                 f"{key.monthly_token_limit:,} tokens this month (UTC).",
                                 moment, _next_month(moment))
    statement = _upsert(api_key_id=key.key_id, period=day_period(moment), requests=1, tokens=0)
    bump = {"requests": KeyUsage.requests + 1}
    if key.daily_request_limit:
        statement = statement.on_conflict_do_update(
            index_elements=[KeyUsage.api_key_id, KeyUsage.period], set_=bump,
            where=KeyUsage.requests < key.daily_request_limit)
    else:
        statement = statement.on_conflict_do_update(
            index_elements=[KeyUsage.api_key_id, KeyUsage.period], set_=bump)
    counted = db.session.execute(statement.returning(KeyUsage.requests)).scalar_one_or_none()
    if counted is None:
        raise _quota_refused(f"Daily request limit reached: this key allows "
                             f"{key.daily_request_limit:,} requests per UTC day.",
                             moment, _next_day(moment))


def count_tokens_used(api_key_id: int, tokens: int, moment: datetime) -> None:
    """Add a settled request's tokens to its key's month (no commit)."""
    statement = _upsert(api_key_id=api_key_id, period=month_period(moment), requests=0, tokens=tokens)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[KeyUsage.api_key_id, KeyUsage.period],
        set_={"tokens": KeyUsage.tokens + tokens}))
