"""Prices, exact costs and the wallet: admission holds, settlement and credits.

Every balance change is one atomic ``UPDATE users SET balance_nanos = balance_nanos + :delta``
in the same transaction as its ledger row, so ``balance == sum(ledger)`` holds at every commit.

Overdraft rule: a request is admitted only while ``balance - open holds > 0``, and it holds
an upper bound of its cost (see ``hold_nanos``) until it settles. So a wallet can end below
zero by less than the hold of the last request admitted.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from decimal import Decimal
from decimal import InvalidOperation

from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update

from pagegrid.errors import InsufficientBalance
from pagegrid.extensions import db
from pagegrid.limits import count_tokens_used
from pagegrid.models import ApiKey
from pagegrid.models import Hold
from pagegrid.models import LedgerEntry
from pagegrid.models import TopUpCode
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.money import format_usd
from pagegrid.translate.usage import Usage

log = logging.getLogger(__name__)

NANOS_PER_USD = 10**9
# A JSON request body has at least this many bytes per input token (conservative: English
# runs about four, and image bytes far more), so the hold's input part never falls short.
BYTES_PER_TOKEN_FLOOR = 2


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


def hold_nanos(body_bytes: int, max_tokens: int, max_output: int, price: Price) -> int:
    """An upper bound of a request's cost: every input token at the dearest input rate plus
    the whole output allowance."""
    input_tokens = -(-body_bytes // BYTES_PER_TOKEN_FLOOR)
    dearest_input = max(price.input, price.cache_write, price.cache_write_1h)
    return input_tokens * dearest_input + min(max_tokens, max_output) * price.output


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


def nanos_to_price_per_mtok(nanos_per_token: int) -> str:
    """Render nano-USD per token as USD per 1M tokens: 6250 -> ``"6.25"``."""
    text = f"{Decimal(nanos_per_token) / 1000:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_nanos(nanos: int) -> str:
    """Render nano-USD exactly, for messages and the CLI: ``$12.345678901`` (see ``pagegrid.money``)."""
    return format_usd(nanos, exact=True, grouping=False)


def new_request_id(prefix: str = "req") -> str:
    """A unique id for a request or ledger row."""
    return f"{prefix}_{secrets.token_hex(12)}"


def reserve(user_id: int, request_id: str, amount_nanos: int) -> None:
    """Hold ``amount_nanos`` for a request, or raise InsufficientBalance (402).

    The caller commits, so that other admission checks can share the transaction.
    """
    admitted = db.session.execute(
        update(User)
        .where(User.id == user_id, User.balance_nanos - User.held_nanos > 0)
        .values(held_nanos=User.held_nanos + amount_nanos)
        .execution_options(synchronize_session=False)
    ).rowcount
    if admitted != 1:
        db.session.rollback()
        balance = db.session.scalar(select(User.balance_nanos).where(User.id == user_id)) or 0
        db.session.rollback()
        if balance <= 0:
            raise InsufficientBalance(
                f"Your wallet balance is {format_nanos(balance)[:-7]}. "
                "Add funds in the dashboard to keep using the API.")
        raise InsufficientBalance(
            "Your available balance is reserved by requests still in progress. "
            "Wait for them to finish or add funds in the dashboard.")
    db.session.execute(insert(Hold).values(request_id=request_id, user_id=user_id,
                                           amount_nanos=amount_nanos, created_at=utcnow()))


def _take_hold(request_id: str) -> int | None:
    """Delete the request's hold and return its amount; None if it was settled already."""
    return db.session.execute(
        delete(Hold).where(Hold.request_id == request_id).returning(Hold.amount_nanos)
    ).scalar_one_or_none()


def release(request_id: str, user_id: int) -> None:
    """Drop a hold without charging (the request failed before the upstream answered)."""
    held = _take_hold(request_id)
    if held is not None:
        db.session.execute(
            update(User).where(User.id == user_id)
            .values(held_nanos=User.held_nanos - held)
            .execution_options(synchronize_session=False))
    db.session.commit()


def settle(*, request_id: str, user_id: int, api_key_id: int, model: str, usage: Usage,
           price: Price, status: str, started_at: datetime) -> int | None:
    """Charge a finished request exactly once; return the cost, or None if already settled."""
    held = _take_hold(request_id)
    if held is None:
        db.session.rollback()
        return None
    cost = cost_nanos(usage, price)
    db.session.execute(
        update(User).where(User.id == user_id)
        .values(balance_nanos=User.balance_nanos - cost, held_nanos=User.held_nanos - held)
        .execution_options(synchronize_session=False))
    now = utcnow()
    count_tokens_used(api_key_id, usage.total_tokens, now)
    db.session.execute(
        update(ApiKey).where(ApiKey.id == api_key_id).values(last_used_at=now)
        .execution_options(synchronize_session=False))
    # Core inserts: the request path skips the ORM's unit of work.
    db.session.execute(insert(LedgerEntry).values(
        request_id=request_id, user_id=user_id, kind="usage", api_key_id=api_key_id, model=model,
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_creation_1h_input_tokens=usage.cache_creation_1h_input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        amount_nanos=-cost, status=status, started_at=started_at, created_at=now))
    db.session.commit()
    log.info("settled %s user=%s key=%s model=%s status=%s cost_nanos=%s",
             request_id, user_id, api_key_id, model, status, cost)
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


def release_stale_holds(older_than: timedelta) -> int:
    """Free holds left by a worker that died mid-request; return how many were released."""
    cutoff = utcnow() - older_than
    stale = db.session.execute(
        select(Hold.request_id, Hold.user_id).where(Hold.created_at < cutoff)).all()
    db.session.rollback()
    for request_id, user_id in stale:
        release(request_id, user_id)
    return len(stale)


def ledger_sum(user_id: int) -> int:
    """Sum of a user's ledger rows (equals the balance)."""
    return db.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount_nanos), 0))
        .where(LedgerEntry.user_id == user_id)) or 0
