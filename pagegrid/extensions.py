"""Flask extensions, created unbound and initialised in ``create_app``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import cast

from flask_limiter import Limiter
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import CursorResult
from sqlalchemy import Executable
from sqlalchemy import MetaData
from sqlalchemy import Result
from sqlalchemy import Table
from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy.orm import DeclarativeBase


def prune_before(table: Table, cutoff: datetime, batch: int) -> int:
    """Delete ``table``'s rows created before ``cutoff`` (its ``created_at``); return how many.
    Deletes ``batch`` ids per transaction, so a large first prune never holds the write lock
    for long."""
    removed = 0
    while True:
        ids = db.session.execute(select(table.c.id).where(table.c.created_at < cutoff)
                                 .limit(batch)).scalars().all()
        if not ids:
            db.session.commit()
            return removed
        db.session.execute(delete(table).where(table.c.id.in_(ids)))
        db.session.commit()
        removed += len(ids)


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched. ``Session.execute`` is typed as returning a Result;
    for a DML statement it returns a CursorResult, which has the count."""
    return cast("CursorResult[Any]", result).rowcount


def core(statement: Executable, params: dict[str, Any] | None = None) -> CursorResult[Any]:
    """Run a prebuilt Core statement on the session's connection, in the session's transaction.

    The request path's statements name tables, never entities, so the ORM's execution layer
    (``Session.execute``: compile-state plugins, autoflush, result wrapping) is pure CPU for
    them; this skips it. Nothing is flushed first: use it where no ORM object is pending.
    """
    return db.session.connection().execute(statement, params)


# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The typed declarative base (Flask-SQLAlchemy 3.1's form): ``db.Model`` is built from it."""

    metadata = MetaData(naming_convention=NAMING)
    if TYPE_CHECKING:
        # Every model declares its own Table (none maps a join or a select), so ``Model.__table__``
        # has ``insert()``/``update()``/``delete()``; SQLAlchemy types it as any FromClause.
        __table__: ClassVar[Table]


db = SQLAlchemy(model_class=Base)
if TYPE_CHECKING:
    # mypy cannot take a base class from an attribute (``db.Model``; python/mypy#8603): it checks
    # the models against ``Base``, whose body ``db.Model`` copies.
    Model = Base
else:
    Model = db.Model
migrate = Migrate()
login_manager = LoginManager()
login_manager.login_view = "dashboard.login"
login_manager.login_message_category = "info"
csrf = CSRFProtect()
# No default limits: each route says what it needs. Keys are given per limit.
limiter = Limiter(key_func=lambda: "global")
