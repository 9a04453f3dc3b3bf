"""Prices, exact costs and the wallet: admission holds, settlement and credits.

Every balance change is one atomic ``UPDATE users SET balance_nanos = balance_nanos + :delta``
in the same transaction as its ledger row, so ``balance == sum(ledger)`` holds at every commit.

Every request holds an upper bound of its cost (``pagegrid.bounds``) until it settles. With
the ``one-hold`` overdraft policy a request is admitted while ``balance - open holds > 0``, so
a wallet can end below zero by less than one hold; with ``none`` only while the available
balance covers the request's whole hold, so it never goes below zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from decimal import Decimal
from decimal import InvalidOperation

from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from pagegrid import alerts
from pagegrid import metrics
from pagegrid import requestlog
from pagegrid.errors import InsufficientBalance
from pagegrid.errors import RateLimited
from pagegrid.extensions import core
from pagegrid.extensions import db
from pagegrid.limits import count_settled
from pagegrid.models import ApiKey
from pagegrid.models import Hold
from pagegrid.models import LedgerEntry
from pagegrid.models import TopUpCode
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import NANOS_PER_CENT
from pagegrid.money import NANOS_PER_USD
from pagegrid.money import format_usd
from pagegrid.pricegroups import LIST_PRICES
from pagegrid.pricegroups import Multiplier
from pagegrid.translate.usage import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    """Nano-USD per token for each token kind ($X per 1M tokens = X*1000)."""

    input: int
    output: int
    cache_write: int
    cache_write_1h: int
    cache_read: int


def cost_nanos(usage: Usage, price: Price) -> int:
    """Exact cost of ``usage`` in nano-USD."""
    five_minute_writes = usage.cache_creation_input_tokens - usage.cache_creation_1h_input_tokens
    return (usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + five_minute_writes * price.cache_write
            + usage.cache_creation_1h_input_tokens * price.cache_write_1h
            + usage.cache_read_input_tokens * price.cache_read)


def usd_to_nanos(text: str) -> int:
    """Parse a USD amount with at most 9 decimals (``"12.5"``, ``"-0.000000150"``) exactly."""
    try:
        amount = Decimal(text.strip().replace("$", "", 1))
    except (InvalidOperation, AttributeError):
        raise ValueError(f"not an amount: {text!r}") from None
    nanos = amount * NANOS_PER_USD
    if not amount.is_finite() or nanos != nanos.to_integral_value():
        raise ValueError(f"amounts have at most 9 decimals: {text!r}")
    return int(nanos)


def price_per_mtok_to_nanos(text: str) -> int:
    """Turn a list price in USD per 1M tokens (at most 3 decimals) into nano-USD per token."""
    nanos = usd_to_nanos(text)
    if nanos < 0 or nanos % 10**6:
        raise ValueError(f"prices per 1M tokens have at most 3 decimals and are not negative: {text!r}")
    return nanos // 10**6


def new_request_id(prefix: str = "req") -> str:
    """A unique id for a request or ledger row."""
    return f"{prefix}_{secrets.token_hex(12)}"


# The request path's statements, built once on the tables (plain Core: no ORM unit of work, no
# statement construction or cache-key generation per request).
_USERS, _HOLDS, _LEDGER = User.__table__, Hold.__table__, LedgerEntry.__table__
_ROOM = _USERS.c.balance_nanos - _USERS.c.held_nanos
_RESERVE = {
    policy: _USERS.update()
    .where(_USERS.c.id == bindparam("p_uid"),
           _ROOM >= bindparam("p_amount") if policy == "none" else _ROOM > 0)
    .values(held_nanos=_USERS.c.held_nanos + bindparam("p_amount"))
    for policy in ("one-hold", "none")
}
_IN_FLIGHT = (select(func.count()).select_from(_HOLDS)
              .where(_HOLDS.c.api_key_id == bindparam("p_kid"), _HOLDS.c.lease_until > bindparam("p_now")))
_TAKE_HOLD = (_HOLDS.delete().where(_HOLDS.c.request_id == bindparam("p_rid"))
              .returning(_HOLDS.c.amount_nanos))
_CHARGE = (_USERS.update().where(_USERS.c.id == bindparam("p_uid"))
           .values(balance_nanos=_USERS.c.balance_nanos - bindparam("p_cost"),
                   held_nanos=_USERS.c.held_nanos - bindparam("p_held")))
# Settlement also reads back what the low-balance alert needs (alerts.after_charge): no extra query.
_CHARGE_RETURNING = _CHARGE.returning(_USERS.c.balance_nanos, _USERS.c.held_nanos,
                                      _USERS.c.alert_threshold_nanos, _USERS.c.alert_armed)
_INSERT_HOLD, _INSERT_LEDGER = _HOLDS.insert(), _LEDGER.insert()
_LEDGER_HAS = select(_LEDGER.c.id).where(_LEDGER.c.request_id == bindparam("p_rid"))
_TOUCH_KEY = (ApiKey.__table__.update().where(ApiKey.__table__.c.id == bindparam("p_kid"))
              .values(last_used_at=bindparam("p_now")))


def reserve(user_id: int, request_id: str, amount_nanos: int, *, api_key_id: int | None = None,
            concurrency: int = 0, lease_seconds: float = 120, overdraft: str = "one-hold") -> None:
    """Hold ``amount_nanos`` for a request, or raise InsufficientBalance (402) or, when the
    key already has ``concurrency`` requests in flight, RateLimited (429).

    ``overdraft`` ``one-hold`` admits while ``balance - holds > 0``; ``none`` only while
    ``balance - holds >= amount``. The user-row UPDATE comes first, so the row lock it takes
    (PostgreSQL) or the write lock (SQLite) serialises a user's admissions and the count of the
    key's live holds is exact across every worker and instance. The caller commits.
    """
    admitted = core(_RESERVE[overdraft], {"p_uid": user_id, "p_amount": amount_nanos}).rowcount
    if admitted != 1:
        db.session.rollback()
        _refuse(user_id, amount_nanos, overdraft)
    now = utcnow()
    if concurrency and api_key_id is not None:
        in_flight = core(_IN_FLIGHT, {"p_kid": api_key_id, "p_now": now}).scalar_one()
        if in_flight >= concurrency:
            db.session.rollback()
            raise RateLimited(
                f"Concurrency limit reached: this key allows {concurrency} requests in flight at "
                "once (streams included). Retry when one of them has finished.",
                headers={"retry-after": "1"}, limit="concurrency")
    core(_INSERT_HOLD, {
        "request_id": request_id, "user_id": user_id, "api_key_id": api_key_id,
        "amount_nanos": amount_nanos, "created_at": now,
        "lease_until": now + timedelta(seconds=lease_seconds)})


def _refuse(user_id: int, amount_nanos: int, overdraft: str) -> None:
    balance, held = db.session.execute(
        select(User.balance_nanos, User.held_nanos).where(User.id == user_id)).one()
    db.session.rollback()
    if balance <= 0:
        raise InsufficientBalance(
            f"Your wallet balance is {format_usd(balance)}. "
            "Add funds in the dashboard to keep using the API.")
    if overdraft == "none" and balance - held > 0:
        needed = -(-amount_nanos // NANOS_PER_CENT) * NANOS_PER_CENT  # rounded up to the cent
        raise InsufficientBalance(
            f"This request needs up to {format_usd(needed)} held for its worst case, "
            f"and {format_usd(balance - held)} is available. A lower max_tokens needs less; "
            "or add funds in the dashboard.")
    raise InsufficientBalance(
        "Your available balance is reserved by requests still in progress. "
        "Wait for them to finish or add funds in the dashboard.")


def _take_hold(request_id: str) -> int | None:
    """Delete the request's hold and return its amount; None if there is none (any more)."""
    return core(_TAKE_HOLD, {"p_rid": request_id}).scalar_one_or_none()


def release(request_id: str, user_id: int) -> None:
    """Drop a hold without charging (the request failed before the upstream answered)."""
    held = _take_hold(request_id)
    if held is not None:
        core(_CHARGE, {"p_uid": user_id, "p_cost": 0, "p_held": held})
    db.session.commit()


def renew_leases(request_ids: list[str], lease_seconds: float) -> None:
    """Extend the leases of requests still in flight in this process."""
    until = utcnow() + timedelta(seconds=lease_seconds)
    for start in range(0, len(request_ids), 500):
        db.session.execute(update(Hold).where(Hold.request_id.in_(request_ids[start:start + 500]))
                           .values(lease_until=until).execution_options(synchronize_session=False))
    db.session.commit()


@dataclass(frozen=True)
class Charge:
    """Everything a settlement needs, in plain values (it may wait in the journal)."""

    request_id: str
    user_id: int
    api_key_id: int
    model: str
    usage: Usage
    price: Price
    status: str
    started_at: datetime
    hold_nanos: int = 0
    tool_prices: dict[str, int] = field(default_factory=dict)  # nano-USD per server tool use
    upstream: str | None = None  # the account that served it
    attempts: int = 0  # accounts tried (1 unless an earlier one failed before the first byte)
    multiplier: Multiplier = LIST_PRICES  # the user's price group at admission (its hold used it too)

    def tool_detail(self) -> dict[str, dict[str, int]]:
        """Each server tool used: its uses and their fees."""
        return {tool: {"uses": uses, "nanos": uses * self.tool_prices.get(tool, 0)}
                for tool, uses in sorted(self.usage.server_tools.items()) if uses}

    def list_cost(self) -> int:
        """Tokens at the model's list prices plus the server tools' fees."""
        return (cost_nanos(self.usage, self.price)
                + sum(item["nanos"] for item in self.tool_detail().values()))

    def cost(self) -> int:
        """What the user pays: the list cost times their group's multiplier, rounded up once."""
        return self.multiplier.apply(self.list_cost())

    def detail(self) -> dict | None:
        """The ledger row's detail: server tool fees, and the multiplier applied (if any)."""
        detail: dict = {}
        tools = self.tool_detail()
        if tools:
            detail["server_tools"] = tools
        if not self.multiplier.is_list:
            detail["price_group"] = {"multiplier": self.multiplier.text(), "list_nanos": self.list_cost()}
        return detail or None


def settle(charge: Charge) -> int | None:
    """Charge a finished request exactly once; return the cost, or None if already charged.

    The hold is deleted if it is still there; a request whose hold was released meanwhile (its
    lease ran out while the database was unreachable) is charged all the same, and the unique
    ledger ``request_id`` makes a second settlement of the same request a no-op.
    """
    held = _take_hold(charge.request_id)
    if held is None and core(
            _LEDGER_HAS, {"p_rid": charge.request_id}).scalar() is not None:
        db.session.rollback()
        return None
    cost = charge.cost()
    usage = charge.usage
    wallet = core(_CHARGE_RETURNING, {"p_uid": charge.user_id, "p_cost": cost, "p_held": held or 0}).one()
    alerts.after_charge(charge.user_id, wallet.balance_nanos, wallet.held_nanos,
                        wallet.alert_threshold_nanos, wallet.alert_armed)
    now = utcnow()
    count_settled(charge.api_key_id, usage.total_tokens, cost, now)
    core(_TOUCH_KEY, {"p_kid": charge.api_key_id, "p_now": now})
    over_hold = cost > charge.hold_nanos
    core(_INSERT_LEDGER, {
        "request_id": charge.request_id, "user_id": charge.user_id, "kind": "usage",
        "api_key_id": charge.api_key_id, "model": charge.model,
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_creation_1h_input_tokens": usage.cache_creation_1h_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "amount_nanos": -cost, "status": charge.status, "started_at": charge.started_at,
        "created_at": now, "hold_nanos": charge.hold_nanos, "over_hold": over_hold,
        "detail": charge.detail(), "upstream": charge.upstream,
        "rates": dataclasses.asdict(charge.price),
        "attempts": charge.attempts})
    requestlog.settled(charge, cost, now)  # its request log row, in this same transaction
    try:
        db.session.commit()
    except IntegrityError:  # settled by another process at the same moment
        db.session.rollback()
        return None
    metrics.charged(charge, cost, over_hold)
    if over_hold:
        log.error("charge above its hold: %s cost_nanos=%s hold_nanos=%s model=%s",
                  charge.request_id, cost, charge.hold_nanos, charge.model)
    log.debug("settled %s user=%s key=%s model=%s upstream=%s attempts=%s status=%s cost_nanos=%s",
             charge.request_id, charge.user_id, charge.api_key_id, charge.model, charge.upstream,
             charge.attempts, charge.status, cost)
    return cost



def credit(user_id: int, amount_nanos: int, note: str | None = None, *, kind: str = "credit",
           commit: bool = True, request_id: str | None = None) -> LedgerEntry:
    """Add (or, negative, remove) funds as a ledger row, atomically with the balance.

    A caller that must credit something only once passes its own ``request_id``: the ledger's
    unique constraint then refuses a second row (IntegrityError at the flush or commit).
    """
    entry = LedgerEntry(request_id=request_id or new_request_id("cr"), user_id=user_id, kind=kind,
                        amount_nanos=amount_nanos, status="complete", note=note)
    db.session.execute(
        update(User).where(User.id == user_id)
        .values(balance_nanos=User.balance_nanos + amount_nanos)
        .execution_options(synchronize_session=False))
    db.session.add(entry)
    alerts.after_credit(user_id)
    if commit:
        db.session.commit()
    return entry


def create_topup_code(amount_nanos: int, *, note: str | None = None, expires_at: datetime | None = None,
                      created_by: int | None = None) -> tuple[TopUpCode, str]:
    """A new single-use top-up code; the code itself is returned once and stored hashed."""
    if amount_nanos <= 0:
        raise ValueError("a top-up code must be worth more than $0")
    code = "PG-" + "-".join(secrets.token_hex(2).upper() for _ in range(4))
    row = TopUpCode(code_hash=_code_hash(code), hint=code[-4:], amount_nanos=amount_nanos, note=note,
                    expires_at=expires_at, created_by=created_by)
    db.session.add(row)
    db.session.commit()
    return row, code


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def redeem_topup_code(user_id: int, code: str) -> int:
    """Credit the code's amount once; return it. Raises ValueError if unknown, used or expired."""
    now = utcnow()
    claimed = db.session.execute(
        update(TopUpCode)
        .where(TopUpCode.code_hash == _code_hash(code), TopUpCode.redeemed_at.is_(None),
               (TopUpCode.expires_at.is_(None)) | (TopUpCode.expires_at > now))
        .values(redeemed_by=user_id, redeemed_at=now)
        .returning(TopUpCode.amount_nanos, TopUpCode.hint)
        .execution_options(synchronize_session=False)).first()
    if claimed is None:
        db.session.rollback()
        raise ValueError("This code is unknown, already used or expired.")
    amount, hint = claimed
    credit(user_id, amount, f"Top-up code …{hint}", kind="topup", commit=False)
    db.session.commit()
    return amount


def release_expired_holds() -> int:
    """Free the holds whose lease ran out (their worker died); return how many were released.

    A live request renews its lease while it runs, so this never frees a hold in use.
    """
    now = utcnow()
    expired = db.session.execute(
        select(Hold.request_id, Hold.user_id).where(Hold.lease_until < now)).all()
    db.session.rollback()
    for request_id, user_id in expired:
        release(request_id, user_id)
    if expired:
        log.warning("released %s holds whose lease expired", len(expired))
    return len(expired)


def ledger_sum(user_id: int) -> int:
    """Sum of a user's ledger rows (equals the balance)."""
    return db.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_nanos), 0))
        .where(LedgerEntry.user_id == user_id)) or 0
