"""One request in full: its charge (the ledger), how it went (the request log) and its key.

The same record answers ``GET /v1/requests/{id}``, the customer's request page and the admin's.
The ledger is kept forever and the request log ``PAGEGRID_REQUEST_LOG_DAYS``, so an old request
still has its charge, tokens and rates, and loses only its timings; a refused request has only
its log row. A request is found only among ``user_id``'s own (None: the admin, anyone's).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from pagegrid.extensions import db
from pagegrid.json_types import JSON
from pagegrid.models import ApiKey
from pagegrid.models import LedgerEntry
from pagegrid.models import RequestLogEntry
from pagegrid.models import User
from pagegrid.money import format_usd
from pagegrid.money import per_mtok_decimal

RATE_NAMES = (("input", "input"), ("output", "output"), ("cache_write", "cache_write_5m"),
              ("cache_write_1h", "cache_write_1h"), ("cache_read", "cache_read"))
MAX_ID_LENGTH = 64


def find(request_id: str, user_id: int | None = None) -> JSON | None:
    """The request's record, or None if it is unknown (or ``user_id``'s is not it)."""
    if not request_id or len(request_id) > MAX_ID_LENGTH:
        return None
    charge_query = select(LedgerEntry).where(LedgerEntry.request_id == request_id,
                                             LedgerEntry.kind == "usage")
    log_query = select(RequestLogEntry).where(RequestLogEntry.request_id == request_id)
    if user_id is not None:
        charge_query = charge_query.where(LedgerEntry.user_id == user_id)
        log_query = log_query.where(RequestLogEntry.user_id == user_id)
    charge = db.session.scalar(charge_query)
    logged = db.session.scalar(log_query.order_by(RequestLogEntry.id).limit(1))
    if charge is None and logged is None:
        return None
    key_id = charge.api_key_id if charge is not None else logged.api_key_id if logged is not None else None
    key = db.session.get(ApiKey, key_id) if key_id is not None else None
    owner = charge.user_id if charge is not None else logged.user_id if logged is not None else None
    email = db.session.scalar(select(User.email).where(User.id == owner)) if owner is not None else None
    source = charge if charge is not None else logged
    assert source is not None
    cost = -charge.amount_nanos if charge is not None else 0
    return {
        "id": request_id,
        "object": "request",
        "created_at": _when(logged, charge).isoformat(),
        "model": source.model,
        "endpoint": logged.route if logged is not None else None,
        "stream": logged.stream if logged is not None else None,
        "status": logged.status if logged is not None else 200,
        "outcome": charge.status if charge is not None else None,
        "error_type": logged.error_type if logged is not None else None,
        "charged": charge is not None,
        "usage": _usage(source),
        "rates": _rates(charge.rates if charge is not None else None),
        # List rates above; a price group's multiplier applies to their sum (None: list prices).
        "price_group": ((charge.detail or {}).get("price_group") if charge is not None else None),
        "cost": {"nanos": cost, "usd": format_usd(cost, exact=True, symbol=False, grouping=False),
                 "held_nanos": charge.hold_nanos if charge is not None else None},
        "timings": {"latency_ms": logged.latency_ms if logged is not None else None,
                    "time_to_first_token_ms": logged.ttft_ms if logged is not None else None},
        "key": {"id": key.id, "name": key.name, "display": key.display} if key is not None else None,
        "upstream": {"account": source.upstream, "attempts": source.attempts},
        "user": {"id": owner, "email": email},
    }


def _when(logged: RequestLogEntry | None, charge: LedgerEntry | None) -> datetime:
    if logged is not None:
        return logged.created_at
    assert charge is not None
    return charge.started_at or charge.created_at


def _usage(row: LedgerEntry | RequestLogEntry) -> JSON:
    tools = ((getattr(row, "detail", None) or {}).get("server_tools")) or {}
    writes_1h = getattr(row, "cache_creation_1h_input_tokens", 0) or 0
    return {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
            "cache_creation_input_tokens": row.cache_creation_input_tokens,
            "cache_creation_5m_input_tokens": row.cache_creation_input_tokens - writes_1h,
            "cache_creation_1h_input_tokens": writes_1h,
            "cache_read_input_tokens": row.cache_read_input_tokens,
            "server_tool_use": {name: item["uses"] for name, item in tools.items()},
            "server_tool_fees_nanos": {name: item["nanos"] for name, item in tools.items()}}


def _rates(rates: dict | None) -> JSON | None:
    """Each kind's rate as nano-USD per token and as USD per 1M tokens (None: not recorded)."""
    if not rates:
        return None  # charged before the rates were recorded
    return {name: {"nanos_per_token": rates[field], "usd_per_mtok": per_mtok_decimal(rates[field])}
            for field, name in RATE_NAMES if field in rates}


def public(record: JSON) -> JSON:
    """The record as a customer sees it: without the operator's account names or the owner."""
    shown = dict(record)
    shown["upstream"] = {"attempts": record["upstream"]["attempts"]}
    shown.pop("user")
    return shown
