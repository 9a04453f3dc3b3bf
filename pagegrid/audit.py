"""The audit log of admin actions: who did what to what, when, with the values before and after.

One call per action site. ``record`` writes an entry from explicit values; ``record_change``
stages the pending change of an ORM object (call it just before the commit that saves the
change, so the action and its entry commit together); ``change`` wraps code that commits by
itself (``with audit.change("key.edit", key): update_settings(...)``).

The actor is the logged-in admin, or ``cli`` outside a request (the operator commands). Secrets
never reach the log: secret columns (password and key hashes, encrypted columns) appear only as
``[redacted]`` / ``[changed]``, and text that looks like a PageGrid key, a top-up code or a
provider key is masked wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from datetime import datetime
from decimal import Decimal

from flask import has_request_context
from flask import request
from flask_login import current_user
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy.sql import ClauseElement

from pagegrid.crypto import EncryptedText
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import AuditEntry
from pagegrid.models import CatalogModel
from pagegrid.models import TopUpCode
from pagegrid.models import Upstream
from pagegrid.models import User

CLI = "cli"
REDACTED, CHANGED, UPDATED = "[redacted]", "[changed]", "[updated]"
# Never logged by value, whatever the table; encrypted columns are added from their type.
SECRET_COLUMNS = {"password_hash", "key_hash", "code_hash", "api_key", "totp_secret", "secret"}
# Bookkeeping that changes on its own and says nothing about the action.
IGNORED_COLUMNS = {"updated_at", "last_used_at", "totp_last_step"}
SECRET_TEXT = re.compile(r"pg-[0-9a-f]{16,}|PG(?:-[0-9A-F]{4}){4}|sk-[A-Za-z0-9_-]{8,}|whsec_\w+|rk_\w+")
ACTIONS = (
    "user.create", "user.enable", "user.disable", "user.password_reset", "user.ceilings",
    "user.2fa_disable", "wallet.credit", "wallet.debit", "key.create", "key.edit", "key.revoke",
    "catalog.edit", "upstream.create", "upstream.edit", "upstream.enable", "upstream.disable",
    "upstream.delete", "topup_code.create", "encryption_key.rotate",
    "catalog.create", "catalog.sync", "price_rule.set", "price_rule.delete",
    "price_group.create", "price_group.edit", "user.price_group",
    "user.password_reset_link",
)


def actor() -> tuple[str, int | None, str | None]:
    """(label, user id, IP) of whoever acts now: the logged-in admin, or the CLI."""
    if has_request_context() and current_user.is_authenticated:
        return current_user.email, current_user.id, request.remote_addr
    if has_request_context():
        return "anonymous", None, request.remote_addr
    return CLI, None, None


def describe(obj: object) -> str:
    """How an entry names its target: ``user 3 ada@example.com``, ``key 7 pg-65b0…69d0``."""
    ident = getattr(obj, "id", None)
    number = f" {ident}" if ident is not None else ""
    if isinstance(obj, User):
        return f"user{number} {obj.email}"
    if isinstance(obj, ApiKey):
        return f"key{number} {obj.display} of user {obj.user_id}"
    if isinstance(obj, CatalogModel):
        return f"model {obj.id}"
    if isinstance(obj, Upstream):
        return f"upstream{number} {obj.name}"
    if isinstance(obj, TopUpCode):
        return f"top-up code{number} …{obj.hint}"
    return str(obj)


def record(action: str, target: object, *, before: dict | None = None, after: dict | None = None,
           commit: bool = True) -> AuditEntry:
    """Write one entry (``target``: an ORM object or text); ``commit=False`` leaves it to the caller."""
    label, actor_id, ip = actor()
    entry = AuditEntry(actor=label[:255], actor_id=actor_id, ip=ip, action=action,
                       target=_clean(target if isinstance(target, str) else describe(target))[:255],
                       before=_scrub(before), after=_scrub(after))
    db.session.add(entry)
    if commit:
        db.session.commit()
    return entry


def snapshot(obj: object) -> dict:
    """The object's column values as JSON, secret columns as fingerprints (compared, never logged)."""
    values: dict[str, object] = {}
    for column in inspect(obj).mapper.column_attrs:
        if column.key in IGNORED_COLUMNS:
            continue
        value = getattr(obj, column.key)
        if _secret(obj, column.key):
            values[column.key] = _Secret(value)
        elif isinstance(value, ClauseElement):  # an atomic UPDATE not yet flushed (epoch + 1)
            values[column.key] = UPDATED
        else:
            values[column.key] = _json(value)
    return values


def created(action: str, obj: object) -> AuditEntry:
    """Record a row just created and committed (its values are the ``after``)."""
    return _record_diff(action, describe(obj), None, snapshot(obj), commit=True)


def record_change(action: str, obj: object, *, target: str | None = None) -> AuditEntry:
    """Stage an entry for ``obj``'s pending change (new, modified or deleted); the caller commits.

    The values before are read from the database on a connection of their own, so they are the
    last committed ones even when the session has flushed part of the change already.
    """
    state = inspect(obj)
    deleted = state.deleted or obj in db.session.deleted
    # A new row is not flushed here: its errors (a unique name) stay at the caller's commit.
    before = None if state.transient or state.pending else _committed(obj)
    after = None if deleted else snapshot(obj)
    return _record_diff(action, target or describe(obj), before, after, commit=False)


@contextmanager
def change(action: str, obj: object, *, target: str | None = None) -> Iterator[None]:
    """Record what the ``with`` block changed on ``obj`` (code that commits by itself)."""
    before = snapshot(obj)
    yield
    _record_diff(action, target or describe(obj), before, snapshot(obj), commit=True)


def _record_diff(action: str, target: str, before: dict | None, after: dict | None, *,
                 commit: bool) -> AuditEntry:
    if before is not None and after is not None:
        keys = [k for k in after if before.get(k) != after[k]]
        before, after = {k: before.get(k) for k in keys}, {k: after[k] for k in keys}
    return record(action, target, before=_shown(before, False), after=_shown(after, True), commit=commit)


def _committed(obj: object) -> dict | None:
    mapper = inspect(obj).mapper
    table = mapper.local_table
    key = inspect(obj).identity
    where = [col == value for col, value in zip(mapper.primary_key, key or (), strict=True)]
    with db.engine.connect() as conn:
        row = conn.execute(select(table).where(*where)).mappings().first()
    if row is None:
        return None
    values = {}
    for column in mapper.column_attrs:
        name = column.columns[0].name
        if column.key in IGNORED_COLUMNS or name not in row:
            continue
        values[column.key] = _Secret(row[name]) if _secret(obj, column.key) else _json(row[name])
    return values


class _Secret:
    """A secret column's value, comparable for change detection, shown only as a marker."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Secret) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


def _shown(values: dict | None, is_after: bool) -> dict | None:
    if values is None:
        return None
    shown = {}
    for k, v in values.items():
        if isinstance(v, _Secret):
            v = (CHANGED if is_after else REDACTED) if v.value is not None else None
        shown[k] = v
    return shown


def _secret(obj: object, key: str) -> bool:
    if key in SECRET_COLUMNS:
        return True
    column = inspect(obj).mapper.columns.get(key)
    return column is not None and isinstance(column.type, EncryptedText)


def _json(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    return value


def _clean(text: str) -> str:
    return SECRET_TEXT.sub(lambda m: m.group(0)[:5] + "…" + REDACTED, text)


def _scrub(values: dict | None) -> dict | None:
    """Secret-named fields masked, secret-looking text masked, everything JSON."""
    if values is None:
        return None
    clean: dict[str, object] = {}
    for k, v in values.items():
        if isinstance(v, _Secret):
            clean[k] = REDACTED
        elif k in SECRET_COLUMNS or k in ("password", "code", "recovery_codes"):
            clean[k] = v if v in (REDACTED, CHANGED, None) else REDACTED
        elif isinstance(v, str):
            clean[k] = _clean(v)
        elif isinstance(v, list):
            clean[k] = [_clean(x) if isinstance(x, str) else _json(x) for x in v]
        else:
            clean[k] = _json(v)
    return clean
