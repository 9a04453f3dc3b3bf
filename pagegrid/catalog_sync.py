"""``sync-models``: add the models the upstream accounts list and the catalog lacks.

Each new model is priced from the shipped price list, else by a family rule, else added
inactive and flagged "needs a price". Existing catalog rows are never touched, so an operator's
edits survive every sync. A model no account lists is not added (and stays 404).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from dataclasses import field

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pagegrid import audit
from pagegrid import pool
from pagegrid import price_rules
from pagegrid import pricelist
from pagegrid.errors import UpstreamError
from pagegrid.extensions import db
from pagegrid.models import CatalogModel
from pagegrid.upstream.base import UpstreamTarget
from pagegrid.upstream.models_list import list_models

log = logging.getLogger(__name__)

PROVIDERS = ("anthropic", "openai")
LISTED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")
# Limits for a model nothing describes: conservative, the operator corrects them when pricing it.
DEFAULT_LIMITS = {"anthropic": (200_000, 64_000), "openai": (128_000, 16_384)}


@dataclass
class AccountReport:
    """What one account's sync did."""

    account: str
    provider: str
    listed: int = 0
    added: list[tuple[str, str]] = field(default_factory=list)  # (model id, price source)
    flagged: list[str] = field(default_factory=list)  # added inactive: needs a price
    error: str | None = None

    def lines(self) -> list[str]:
        """The report as the CLI prints it."""
        head = f"{self.account} ({self.provider})"
        if self.error:
            return [f"{head}: skipped: {self.error}"]
        out = [f"{head}: {self.listed} models listed, {len(self.added)} added, "
               f"{len(self.flagged)} need a price"]
        out += [f"  added {model_id}: {source}" for model_id, source in self.added]
        out += [f"  added {model_id} INACTIVE: needs a price" for model_id in self.flagged]
        return out


def sync_accounts() -> list[UpstreamTarget]:
    """The accounts whose model lists are read: the pool's enabled accounts (``upstreams`` rows,
    then each provider's environment account ``env-<provider>``), as the request path sees them."""
    return [account.target for account in pool.load_accounts() if account.provider in PROVIDERS]


def _known_names() -> set[str]:
    """Every id, alias and upstream id the catalog already serves."""
    names: set[str] = set()
    for row in db.session.scalars(select(CatalogModel)):
        names.update((row.id, row.upstream_id, *(row.aliases or ())))
    return names


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def new_model(provider: str, listing: dict) -> tuple[CatalogModel, str | None]:
    """The catalog row for a newly listed model and its price source (None: needs a price)."""
    model_id = listing["id"]
    name = listing.get("display_name") if isinstance(listing.get("display_name"), str) else None
    context, max_out = DEFAULT_LIMITS[provider]
    thinking = False
    price = None
    source = None
    entry = pricelist.listed(model_id)
    if entry is not None and entry.provider == provider:
        price, source = entry.price, entry.source_text()
        context, max_out, thinking = entry.context_window, entry.max_output, entry.thinking
        name = name or entry.display_name
    else:
        ruled = price_rules.price_for(model_id)
        if ruled is not None:
            price, source = ruled.price, ruled.source_text()
            context, max_out = ruled.context_window or context, ruled.max_output or max_out
            thinking = ruled.thinking
        else:  # the provider may say how large the model is (Anthropic's max_input_tokens / max_tokens)
            context = _int(listing.get("max_input_tokens")) or context
            max_out = min(_int(listing.get("max_tokens")) or max_out, context)
    nanos = (price.input, price.output, price.cache_write, price.cache_write_1h, price.cache_read) \
        if price else (0, 0, 0, 0, 0)
    row = CatalogModel(
        id=model_id, provider=provider, upstream_id=model_id, display_name=(name or model_id)[:100],
        aliases=[], context_window=context, max_output=max_out, vision=True, tools=True,
        thinking=thinking, active=price is not None, input_nanos=nanos[0], output_nanos=nanos[1],
        cache_write_nanos=nanos[2], cache_write_1h_nanos=nanos[3], cache_read_nanos=nanos[4],
        auto_priced=price is not None, price_source=source, needs_price=price is None)
    return row, source


def sync_account(target: UpstreamTarget) -> AccountReport:
    """Read one account's model list and add what the catalog lacks (errors are reported)."""
    report = AccountReport(target.name, target.provider)
    config = current_app.config
    try:
        listings = list_models(target, connect_timeout=config["PAGEGRID_UPSTREAM_CONNECT_TIMEOUT"],
                               read_timeout=min(config["PAGEGRID_UPSTREAM_READ_TIMEOUT"], 60.0))
    except UpstreamError as exc:
        report.error = exc.message
        log.warning("sync-models: account %s (%s) skipped: %s", target.name, target.provider, exc.message)
        return report
    report.listed = len(listings)
    known = _known_names()
    for listing in listings:
        model_id = listing["id"]
        if model_id in known or not pricelist.is_chat_model(model_id):
            continue
        if not LISTED_ID.fullmatch(model_id):  # the admin addresses models by id in its URLs
            log.warning("sync-models: %s lists an id PageGrid cannot serve: %r", target.name, model_id[:200])
            continue
        row, source = new_model(target.provider, listing)
        db.session.add(row)
        try:
            db.session.commit()
        except IntegrityError:  # another sync added it a moment ago
            db.session.rollback()
            continue
        known.add(model_id)
        if source is None:
            report.flagged.append(model_id)
        else:
            report.added.append((model_id, source))
        log.info("sync-models: %s added %s (%s)", target.name, model_id, source or "needs a price")
    return report


def sync_models() -> list[AccountReport]:
    """Sync every account in ``sync_accounts()``; one failing account does not stop the others."""
    reports = [sync_account(target) for target in sync_accounts()]
    if any(r.added or r.flagged for r in reports):
        current_app.extensions["pagegrid.catalog"].invalidate()
        audit.record("catalog.sync", "catalog", after={
            r.account: {"added": [m for m, _ in r.added], "needs_price": r.flagged}
            for r in reports if r.added or r.flagged})
    return reports
