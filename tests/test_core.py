"""``extensions.core``: the request path's Core statements on the driver's cursor, on SQLite and
PostgreSQL, giving what SQLAlchemy's own execution gives (types, defaults, errors, rows)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Integer
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import MultipleResultsFound
from sqlalchemy.exc import NoResultFound

from pagegrid.extensions import core
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import LedgerEntry
from pagegrid.models import User
from pagegrid.models import utcnow

_USERS, _KEYS, _LEDGER = User.__table__, ApiKey.__table__, LedgerEntry.__table__


def _user() -> int:
    user = User(email="core@example.com", password_hash="x", balance_nanos=0)
    db.session.add(user)
    db.session.commit()
    return user.id


_CREDIT = _USERS.update().where(_USERS.c.id == bindparam("p_uid")) \
    .values(balance_nanos=_USERS.c.balance_nanos + bindparam("p_amount"))


def _credited(uid: int, amount: int) -> None:
    """The balance change that goes with the ledger rows a test writes (balance == sum(ledger))."""
    core(_CREDIT, {"p_uid": uid, "p_amount": amount})


def test_returning_rows_carry_column_names_and_types(app):
    with app.app_context():
        uid = _user()
        core(_LEDGER.insert(), {"request_id": "req_core_0", "user_id": uid, "kind": "usage",
                                "amount_nanos": -30, "status": "complete"})
        wallet = core(_USERS.update().where(_USERS.c.id == bindparam("p_uid"))
                      .values(balance_nanos=_USERS.c.balance_nanos - bindparam("p_cost"))
                      .returning(_USERS.c.balance_nanos, _USERS.c.active), {"p_uid": uid, "p_cost": 30}).one()
        db.session.commit()
        assert wallet.balance_nanos == -30
        assert wallet.active is True  # SQLite's 1 comes back a bool
        assert db.session.get(User, uid).balance_nanos == -30


def test_constants_in_the_statement_and_row_counts(app):
    with app.app_context():
        uid = _user()
        above = _USERS.update().where(_USERS.c.id == bindparam("p_uid"), _USERS.c.balance_nanos > 0) \
            .values(max_rpm=func.coalesce(_USERS.c.max_rpm, 0) + 5)
        assert core(above, {"p_uid": uid}).rowcount == 0  # the balance is 0
        _credited(uid, 1)
        core(_LEDGER.insert(), {"request_id": "req_core_c", "user_id": uid, "kind": "credit",
                                "amount_nanos": 1, "status": "complete"})
        assert core(above, {"p_uid": uid}).rowcount == 1
        assert core(above, {"p_uid": uid + 1000}).rowcount == 0
        db.session.commit()
        assert db.session.get(User, uid).max_rpm == 5


def test_inserts_fill_python_defaults_and_write_types_as_sqlalchemy_does(app):
    with app.app_context():
        uid = _user()
        before = utcnow()
        # created_at is left out (its default fills it); detail None is JSON null; rates a dict.
        core(_LEDGER.insert(), {"request_id": "req_core_1", "user_id": uid, "kind": "credit",
                                "amount_nanos": 5, "status": "complete", "detail": None,
                                "rates": {"input": 3}})
        _credited(uid, 5)
        db.session.commit()
        row = db.session.scalars(select(LedgerEntry).where(LedgerEntry.request_id == "req_core_1")).one()
        assert row.rates == {"input": 3} and row.detail is None
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=before.tzinfo)
        assert before - timedelta(seconds=1) <= created <= utcnow()
        # The timestamp is stored in SQLAlchemy's own format, so comparisons in SQL still order it.
        since = before - timedelta(seconds=1)
        later = db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.created_at > since))
        assert later == row.id
        # None in a JSON column is JSON null, not SQL NULL (SQLAlchemy's JSON type does the same).
        assert db.session.execute(text("SELECT detail IS NULL FROM ledger WHERE request_id = 'req_core_1'")) \
            .scalar() in (False, 0)


def test_many_parameter_sets_and_result_shapes(app):
    with app.app_context():
        uid = _user()
        insert = _LEDGER.insert()
        core(insert, [{"request_id": f"req_core_m{i}", "user_id": uid, "kind": "credit", "amount_nanos": i,
                       "status": "complete"} for i in range(3)])
        _credited(uid, 3)
        by_user = select(_LEDGER.c.amount_nanos).where(_LEDGER.c.user_id == bindparam("p_uid")) \
            .order_by(_LEDGER.c.amount_nanos)
        rows = core(by_user, {"p_uid": uid})
        assert rows.first().amount_nanos == 0 and rows.scalar() == 0
        with pytest.raises(MultipleResultsFound):
            rows.one()
        with pytest.raises(MultipleResultsFound):
            rows.scalar_one_or_none()
        none = core(by_user, {"p_uid": uid + 1000})
        assert none.first() is None and none.scalar_one_or_none() is None
        with pytest.raises(NoResultFound):
            none.scalar_one()
        db.session.commit()


def test_driver_errors_come_out_as_sqlalchemy_errors_and_roll_back(app):
    with app.app_context():
        uid = _user()
        row = {"request_id": "req_core_dup", "user_id": uid, "kind": "credit", "amount_nanos": 1,
               "status": "complete"}
        core(_LEDGER.insert(), row)
        _credited(uid, 1)
        db.session.commit()
        with pytest.raises(IntegrityError):
            core(_LEDGER.insert(), row)
            db.session.commit()  # SQLite may only find the duplicate at its unique index now
        db.session.rollback()
        assert db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.request_id == "req_core_dup"))
        # The session works again after the rollback.
        by_id = select(_USERS.c.id).where(_USERS.c.id == bindparam("p_uid"))
        assert core(by_id, {"p_uid": uid}).scalar() == uid


def test_statements_built_per_call_never_share_a_compiled_form(app):
    # A statement that is dropped after its call could hand its id to the next one built.
    with app.app_context():
        for value in range(50):
            assert core(select(literal(value, Integer))).scalar() == value
        db.session.rollback()
