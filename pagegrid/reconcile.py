"""Reconciliation: per upstream account and UTC day, what the provider bills against what
customers were charged.

The provider's side is computed from the ledger's tokens at the provider's list price
(``pricelist.list_price`` of the catalog model's upstream id). When the price list does not
know the model, the catalog price stands in and the row says so; server tool fees (charged at
the providers' own per-use prices) count on both sides. The admin page, its CSV and
``report-upstreams`` all read ``report()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select

from pagegrid import pricelist
from pagegrid.billing import Price
from pagegrid.extensions import db
from pagegrid.ledger import _utc_day
from pagegrid.models import CatalogModel
from pagegrid.models import LedgerEntry
from pagegrid.models import utcnow
from pagegrid.money import format_usd

UNRECORDED = "(unrecorded)"  # charges settled before the ledger recorded the account
CSV_COLUMNS = ("day", "account", "requests", "input_tokens", "output_tokens", "cache_write_5m_tokens",
               "cache_write_1h_tokens", "cache_read_tokens", "provider_cost_usd", "charged_usd",
               "margin_usd", "price_notes")


@dataclass
class AccountDay:
    """One account's traffic on one UTC day; money in nano-USD."""

    day: str
    account: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    provider_nanos: int = 0
    charged_nanos: int = 0
    catalog_priced: set[str] = field(default_factory=set)  # list price unknown: catalog price used
    unpriced: set[str] = field(default_factory=set)  # no price anywhere: counted as 0

    @property
    def margin_nanos(self) -> int:
        """What customers paid minus what the provider bills."""
        return self.charged_nanos - self.provider_nanos

    @property
    def tokens(self) -> int:
        """All tokens of every kind."""
        return (self.input_tokens + self.output_tokens + self.cache_write_5m_tokens
                + self.cache_write_1h_tokens + self.cache_read_tokens)

    def notes(self) -> str:
        """Which models were not priced from the price list."""
        parts = []
        if self.catalog_priced:
            parts.append("catalog price (not in the price list): " + ", ".join(sorted(self.catalog_priced)))
        if self.unpriced:
            parts.append("no price known: " + ", ".join(sorted(self.unpriced)))
        return "; ".join(parts)

    def add(self, other: AccountDay) -> None:
        """Fold another row into this one (for totals)."""
        for name in ("requests", "input_tokens", "output_tokens", "cache_write_5m_tokens",
                     "cache_write_1h_tokens", "cache_read_tokens", "provider_nanos", "charged_nanos"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.catalog_priced |= other.catalog_priced
        self.unpriced |= other.unpriced


@dataclass(frozen=True)
class Period:
    """UTC days, both ends included, and optionally one account."""

    start: date
    end: date
    account: str | None = None

    @classmethod
    def last_days(cls, days: int = 7, account: str | None = None) -> Period:
        """The last ``days`` UTC days through today."""
        today = utcnow().date()
        return cls(today - timedelta(days=days - 1), today, account)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=utcnow().tzinfo)


def _provider_price(model: str | None, catalog: dict[str, CatalogModel]) -> tuple[Price | None, str]:
    """The provider's per-token price for a ledger model: ('list' | 'catalog' | 'none')."""
    row = catalog.get(model or "")
    listed = pricelist.list_price(row.upstream_id if row else (model or ""))
    if listed is not None:
        return listed, "list"
    if row is not None:
        return Price(row.input_nanos, row.output_nanos, row.cache_write_nanos, row.cache_write_1h_nanos,
                     row.cache_read_nanos), "catalog"
    return None, "none"


def report(period: Period) -> list[AccountDay]:
    """Every (day, account) with usage in the period, oldest day first, accounts by name."""
    day = _utc_day(LedgerEntry.created_at)
    account = func.coalesce(LedgerEntry.upstream, UNRECORDED)
    where = [LedgerEntry.kind == "usage", LedgerEntry.created_at >= _midnight(period.start),
             LedgerEntry.created_at < _midnight(period.end + timedelta(days=1))]
    if period.account == UNRECORDED:
        where.append(LedgerEntry.upstream.is_(None))
    elif period.account:
        where.append(LedgerEntry.upstream == period.account)
    five_minute = LedgerEntry.cache_creation_input_tokens - LedgerEntry.cache_creation_1h_input_tokens
    rows = db.session.execute(
        select(day, account, LedgerEntry.model, func.count(), func.sum(LedgerEntry.input_tokens),
               func.sum(LedgerEntry.output_tokens), func.sum(five_minute),
               func.sum(LedgerEntry.cache_creation_1h_input_tokens),
               func.sum(LedgerEntry.cache_read_input_tokens), -func.sum(LedgerEntry.amount_nanos))
        .where(*where).group_by(day, account, LedgerEntry.model)).all()
    catalog = {m.id: m for m in db.session.scalars(select(CatalogModel))}
    out: dict[tuple[str, str], AccountDay] = {}
    for label, name, model, count, inp, outp, w5, w1, read, charged in rows:
        entry = out.setdefault((label, name), AccountDay(label, name))
        tokens = [int(v or 0) for v in (inp, outp, w5, w1, read)]
        entry.requests += int(count)
        entry.input_tokens += tokens[0]
        entry.output_tokens += tokens[1]
        entry.cache_write_5m_tokens += tokens[2]
        entry.cache_write_1h_tokens += tokens[3]
        entry.cache_read_tokens += tokens[4]
        entry.charged_nanos += int(charged or 0)
        price, kind = _provider_price(model, catalog)
        if price is not None:
            entry.provider_nanos += (tokens[0] * price.input + tokens[1] * price.output
                                     + tokens[2] * price.cache_write + tokens[3] * price.cache_write_1h
                                     + tokens[4] * price.cache_read)
        if kind == "catalog":
            entry.catalog_priced.add(model or "")
        elif kind == "none":
            entry.unpriced.add(model or "(no model)")
    # Server tool fees: the provider bills each use at the per-use price the customer paid.
    for label, name, detail in db.session.execute(
            select(day, account, LedgerEntry.detail).where(*where, LedgerEntry.detail.is_not(None))):
        tools = (detail or {}).get("server_tools") or {}
        fees = sum(int(item.get("nanos", 0)) for item in tools.values() if isinstance(item, dict))
        if (label, name) in out:
            out[(label, name)].provider_nanos += fees
    return [out[key] for key in sorted(out)]


def totals(rows: list[AccountDay]) -> AccountDay:
    """All rows added up."""
    total = AccountDay("total", "all accounts")
    for row in rows:
        total.add(row)
    return total


def accounts() -> list[str]:
    """Account names that appear in the ledger (for the filter)."""
    names = db.session.scalars(select(func.coalesce(LedgerEntry.upstream, UNRECORDED))
                               .where(LedgerEntry.kind == "usage").distinct())
    return sorted(names)


def _usd(nanos: int) -> str:
    return format_usd(nanos, exact=True, symbol=False, grouping=False)


def csv_rows(rows: list[AccountDay]) -> Iterator[tuple]:
    """The rows as CSV values, exact amounts without ``$``."""
    for r in rows:
        yield (r.day, r.account, r.requests, r.input_tokens, r.output_tokens, r.cache_write_5m_tokens,
               r.cache_write_1h_tokens, r.cache_read_tokens, _usd(r.provider_nanos), _usd(r.charged_nanos),
               _usd(r.margin_nanos), r.notes())
