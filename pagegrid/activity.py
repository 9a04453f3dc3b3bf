"""Reading the request log: the customer's Activity page and the admin's log, with filters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select
from sqlalchemy import select

from pagegrid.extensions import db
from pagegrid.models import RequestLogEntry
from pagegrid.models import User
from pagegrid.models import utcnow

STATUS_CLASSES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600), "error": (400, 1000)}
FILTER_NAMES = ("user", "key", "model", "status", "account", "start", "end")


@dataclass(frozen=True)
class Filters:
    """Request log filters; dates are UTC days, both ends included. ``problems`` lists the
    parameters that were not understood (and ignored)."""

    user_id: int | None = None
    user_unknown: bool = False  # a user was asked for that does not exist: nothing matches
    key_id: int | None = None
    model: str | None = None
    status: tuple[int, int] | None = None
    account: str | None = None
    start: date | None = None
    end: date | None = None
    problems: tuple[str, ...] = field(default=())


def parse_filters(args: Mapping[str, str], *, allow_user: bool) -> Filters:
    """Filters from query parameters; anything malformed is ignored and named in ``problems``."""
    values: dict = {}
    problems: list[str] = []
    text = {name: (args.get(name) or "").strip() for name in FILTER_NAMES}
    if allow_user and text["user"]:
        user = text["user"]
        user_id = int(user) if user.isdigit() and len(user) < 10 else db.session.scalar(
            select(User.id).where(User.email == user.lower()[:255]))
        if user_id is None:
            values["user_unknown"] = True
        values["user_id"] = user_id
    if text["key"]:
        if text["key"].isdigit() and len(text["key"]) < 10:
            values["key_id"] = int(text["key"])
        else:
            problems.append("key")
    if text["model"]:
        values["model"] = text["model"][:100]
    if text["account"]:
        values["account"] = text["account"][:100]
    status = text["status"].lower()
    if status in STATUS_CLASSES:
        values["status"] = STATUS_CLASSES[status]
    elif status.isdigit() and len(status) == 3:
        values["status"] = (int(status), int(status) + 1)
    elif status:
        problems.append("status")
    for name in ("start", "end"):
        if text[name]:
            try:
                values[name] = date.fromisoformat(text[name])
            except ValueError:
                problems.append(name)
    return Filters(**values, problems=tuple(problems))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=utcnow().tzinfo)


def query(filters: Filters, *, user_id: int | None = None) -> Select:
    """The filtered rows, newest first; ``user_id`` confines them to one customer."""
    log = RequestLogEntry
    statement = select(log)
    if user_id is not None:
        statement = statement.where(log.user_id == user_id)
    if filters.user_unknown:
        statement = statement.where(log.id.is_(None))
    elif filters.user_id is not None:
        statement = statement.where(log.user_id == filters.user_id)
    if filters.key_id is not None:
        statement = statement.where(log.api_key_id == filters.key_id)
    if filters.model:
        statement = statement.where(log.model == filters.model)
    if filters.account:
        statement = statement.where(log.upstream == filters.account)
    if filters.status:
        statement = statement.where(log.status >= filters.status[0], log.status < filters.status[1])
    try:
        if filters.start:
            statement = statement.where(log.created_at >= _midnight(filters.start))
        if filters.end:
            statement = statement.where(log.created_at < _midnight(filters.end + timedelta(days=1)))
    except OverflowError:  # 9999-12-31 + 1 day
        pass
    return statement.order_by(log.created_at.desc(), log.id.desc())


def page(filters: Filters, *, number: int, user_id: int | None = None, per_page: int = 50) -> Pagination:
    """One page of the filtered rows."""
    return db.paginate(query(filters, user_id=user_id), page=max(1, min(number, 10**6)),
                       per_page=per_page, error_out=False)


def user_emails(user_ids: set[int | None]) -> dict[int, str]:
    """Emails of the users on a page of rows."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.email).where(User.id.in_(ids))).all())
