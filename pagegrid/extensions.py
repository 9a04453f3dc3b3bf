"""Flask extensions, created unbound and initialised in ``create_app``."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
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
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.compiler import SQLCompiler


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


class Rows:
    """What ``core`` returns: the statement's rows, fetched at once, and its row count; the
    part of SQLAlchemy's ``Result`` the request path uses."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> Any:  # noqa: ANN401 - a row of the statement's columns
        """The first row, or None."""
        return self._rows[0] if self._rows else None

    def one(self) -> Any:  # noqa: ANN401 - as above
        """The only row (NoResultFound / MultipleResultsFound otherwise)."""
        if len(self._rows) != 1:
            raise (NoResultFound if not self._rows else MultipleResultsFound)(
                f"expected one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar(self) -> Any:  # noqa: ANN401 - the first column's value
        """The first column of the first row, or None."""
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:  # noqa: ANN401 - as above
        """The first column of the only row."""
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:  # noqa: ANN401 - as above
        """The first column of the only row, or None without rows."""
        if len(self._rows) > 1:
            raise MultipleResultsFound(f"expected at most one row, got {len(self._rows)}")
        return self._rows[0][0] if self._rows else None


class _Prepared:
    """A Core statement compiled once for one dialect and one set of parameter names: its SQL
    string, how to turn a parameter dict into the driver's parameters, and its row shape."""

    __slots__ = ("sql", "order", "constants", "processors", "defaults", "row", "result_processors")

    def __init__(self, statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> None:
        compiled: SQLCompiler = cast("Any", statement).compile(dialect=dialect, column_keys=list(keys))
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("core() runs statements without expanding or literal parameters")
        self.sql = compiled.string
        self.order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        self.processors: dict[str, Callable[[Any], Any]] = dict(compiled._bind_processors)  # type: ignore[arg-type]
        # Python-side column defaults (INSERT) and onupdate values (UPDATE) the caller left out.
        self.defaults: list[tuple[str, Any]] = [
            (column.key, column.default if column in compiled.insert_prefetch else column.onupdate)
            for column in (*compiled.insert_prefetch, *compiled.update_prefetch)]
        # The values written into the statement itself (``balance > 0``, ``requests + 1``).
        defaulted = {name for name, _ in self.defaults}
        self.constants = {name: bind.effective_value for name, bind in compiled.binds.items()
                          if name not in keys and name not in defaulted and not bind.required}
        columns = compiled._result_columns
        self.row: Any = namedtuple("Row", [c[0] for c in columns], rename=True) if columns else None  # noqa: PYI024
        self.result_processors = tuple(c[3]._cached_result_processor(dialect, None) for c in columns)

    def parameters(self, params: dict[str, Any]) -> Any:  # noqa: ANN401 - the driver's form
        if self.constants or self.defaults or self.processors:
            params = {**self.constants, **params}
            for name, default in self.defaults:
                params[name] = default.arg(None) if default.is_callable else default.arg
            for name, process in self.processors.items():
                if name in params:  # None too: a JSON column writes it as JSON null, as SQLAlchemy does
                    params[name] = process(params[name])
        if self.order is not None:
            return tuple(params[name] for name in self.order)
        return params

    def rows(self, raw: list[Any]) -> list[Any]:
        processors, make = self.result_processors, self.row
        if make is None:
            return raw
        if not any(processors):
            return [make._make(row) for row in raw]
        return [make._make(value if process is None or value is None else process(value)
                           for process, value in zip(processors, row, strict=True)) for row in raw]


# By the statement's id, dialect and parameter names; each entry keeps its statement alive, so
# no other statement can take its id. The request path has a few dozen; a caller building its
# statements per call would only refill the cache, which is emptied past PREPARED_LIMIT.
_PREPARED: dict[tuple[int, str, tuple[str, ...]], tuple[Executable, _Prepared]] = {}
PREPARED_LIMIT = 1000


def core(statement: Executable, params: dict[str, Any] | list[dict[str, Any]] | None = None) -> Rows:
    """Run a prebuilt Core statement on the session's connection, in the session's transaction.

    The request path's statements name tables, never entities. SQLAlchemy compiles each one
    once per dialect and set of parameter names; after that it runs on the driver's cursor, so
    no execution context, cache key or result object is built per request (about four times
    cheaper per statement on SQLite). Driver errors come out as SQLAlchemy's exceptions, and a
    dropped connection is invalidated, exactly as ``Connection.execute`` would. A list of dicts
    runs the statement once per dict. Nothing is flushed first: use it where no ORM object is
    pending.
    """
    batch: list[dict[str, Any]] = params if isinstance(params, list) else [params or {}]
    connection = db.session.connection()
    dialect = connection.dialect
    keys = tuple(batch[0])
    cache_key = (id(statement), dialect.name, keys)
    entry = _PREPARED.get(cache_key)
    if entry is None:
        if len(_PREPARED) >= PREPARED_LIMIT:
            _PREPARED.clear()
        entry = _PREPARED[cache_key] = (statement, _Prepared(statement, dialect, keys))
    prepared = entry[1]
    args = [prepared.parameters(one) for one in batch]
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if isinstance(params, list):
            cursor.executemany(prepared.sql, args)
        else:
            cursor.execute(prepared.sql, args[0])
        raw = list(cursor.fetchall()) if cursor.description else []
        return Rows(prepared.rows(raw), cursor.rowcount)
    except dialect.loaded_dbapi.Error as exc:
        connection._handle_dbapi_exception(exc, prepared.sql, args, cursor, None)  # raises
        raise  # not reached: for the type checker
    finally:
        cursor.close()


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
