"""The model catalog: seed list, and a short-lived in-process cache for the request path."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from pagegrid import pricelist
from pagegrid.billing import Price
from pagegrid.billing import price_per_mtok_to_nanos
from pagegrid.extensions import db
from pagegrid.models import CatalogModel
from pagegrid.money import exact_decimal
from pagegrid.money import per_mtok_decimal
from pagegrid.price_rules import seed_price_rules
from pagegrid.pricegroups import LIST_PRICES
from pagegrid.pricegroups import Multiplier

# Admin edits reach every worker within this many seconds without a query per request.
CACHE_SECONDS = 2.0

# The seed models, straight from the shipped price list (pagegrid/data/prices.json): their ids,
# names, limits and the providers' list prices in USD per 1M tokens (input, output, cache write
# 5 minutes, cache write 1 hour, cache read).
SEED = pricelist.seed()

# Server-side tools bill per use on top of tokens (the providers' list prices, nano-USD):
# Anthropic web search $10 per 1,000 searches, web fetch free (its content bills as input),
# code execution $0.05 per container-hour (held and charged as one hour per request that
# uses a container: the usage reports no duration); OpenAI web search $10 and file search
# $2.50 per 1,000 calls, code interpreter $0.03 per container.
TOOL_FEES = {
    "anthropic": {"web_search": 10_000_000, "web_fetch": 0, "code_execution": 50_000_000},
    "openai": {"web_search": 10_000_000, "file_search": 2_500_000, "code_interpreter": 30_000_000},
}


def tool_fee(provider: str, tool: str) -> int:
    """Nano-USD per use of a provider's server tool (0 for tools without a fee)."""
    return TOOL_FEES.get(provider, {}).get(tool, 0)


@dataclass(frozen=True)
class ModelEntry:
    """A snapshot of one catalog row, safe to hand to a streaming generator."""

    id: str
    provider: str
    upstream_id: str
    display_name: str
    aliases: tuple[str, ...]
    context_window: int
    max_output: int
    vision: bool
    tools: bool
    thinking: bool
    active: bool
    price: Price
    created_at: datetime


def _source(model_id: str) -> str | None:
    listed = pricelist.listed(model_id)
    return listed.source_text() if listed is not None else None


def seed_catalog() -> int:
    """Insert the seed models that are missing; never overwrite an operator's edits."""
    existing = set(db.session.scalars(select(CatalogModel.id)))
    added = 0
    for model_id, provider, name, aliases, context, max_out, thinking, prices in SEED:
        if model_id in existing:
            continue
        nanos = [price_per_mtok_to_nanos(p) for p in prices]
        db.session.add(CatalogModel(
            id=model_id, provider=provider, upstream_id=model_id, display_name=name,
            aliases=aliases, context_window=context, max_output=max_out, vision=True, tools=True,
            thinking=thinking, active=True, input_nanos=nanos[0], output_nanos=nanos[1],
            cache_write_nanos=nanos[2], cache_write_1h_nanos=nanos[3], cache_read_nanos=nanos[4],
            auto_priced=True, price_source=_source(model_id)))
        added += 1
    db.session.commit()
    seed_price_rules()
    return added


def _entry(row: CatalogModel) -> ModelEntry:
    return ModelEntry(
        id=row.id, provider=row.provider, upstream_id=row.upstream_id,
        display_name=row.display_name, aliases=tuple(row.aliases or ()),
        context_window=row.context_window, max_output=row.max_output, vision=row.vision,
        tools=row.tools, thinking=row.thinking, active=row.active,
        price=Price(row.input_nanos, row.output_nanos, row.cache_write_nanos,
                    row.cache_write_1h_nanos, row.cache_read_nanos),
        created_at=row.created_at)


class Catalog:
    """Active models by id and alias, reloaded from the database every few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._models: list[ModelEntry] = []
        self._by_name: dict[str, ModelEntry] = {}

    def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < CACHE_SECONDS:
            return
        with self._lock:
            rows = db.session.scalars(
                select(CatalogModel).where(CatalogModel.active.is_(True))
                .order_by(CatalogModel.provider, CatalogModel.id)).all()
            models = [_entry(r) for r in rows]
            by_name: dict[str, ModelEntry] = {}
            for m in models:
                for name in m.aliases:
                    by_name.setdefault(name, m)
            by_name.update({m.id: m for m in models})
            self._models, self._by_name = models, by_name
            self._loaded_at = time.monotonic()

    def invalidate(self) -> None:
        """Forget the cache (after an edit in this process)."""
        self._loaded_at = float("-inf")

    def resolve(self, name: str) -> ModelEntry | None:
        """The active model called ``name`` (its id or an alias), if any."""
        self._refresh()
        return self._by_name.get(name)

    def active(self) -> list[ModelEntry]:
        """Every active model."""
        self._refresh()
        return list(self._models)


def catalog() -> Catalog:
    """This app's catalog cache."""
    return current_app.extensions["pagegrid.catalog"]


def model_json(model: ModelEntry, upstream: str, multiplier: Multiplier = LIST_PRICES) -> dict:
    """One catalog entry with the fields both SDKs read, plus PageGrid's own; its prices times
    ``multiplier`` (the price group of the key that asks)."""
    price = model.price

    def _price(nanos: int) -> float:
        # An exact decimal (list prices have at most three decimals in $/1M, multipliers six),
        # so the float prints it exactly.
        return float(per_mtok_decimal(nanos, multiplier.num, multiplier.den))

    names = [model.id, *model.aliases]
    return {
        "id": model.id,
        "type": "model",
        "object": "model",
        "display_name": model.display_name,
        "created_at": model.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "created": int(model.created_at.timestamp()),
        "owned_by": model.provider,
        "provider": model.provider,
        "upstream": upstream,
        "lifecycle": "active",
        "aliases": list(model.aliases),
        # Every name a request may use, LiteLLM-style provider prefixes included.
        "accepted_ids": [*names, *(f"{model.provider}/{name}" for name in names)],
        "context_window": model.context_window,
        "max_input_tokens": model.context_window,
        "max_tokens": model.max_output,
        "max_output_tokens": model.max_output,
        "capabilities": {"vision": model.vision, "tools": model.tools, "thinking": model.thinking},
        "pricing": {
            "currency": "USD",
            "unit": "1M tokens",
            "input": _price(price.input),
            "output": _price(price.output),
            "cache_write": _price(price.cache_write),
            "cache_write_1h": _price(price.cache_write_1h),
            "cache_read": _price(price.cache_read),
            # USD per use of the provider's server-side tools, on top of their tokens.
            "server_tools": {tool: float(exact_decimal(fee * multiplier.num, 10**9 * multiplier.den))
                             for tool, fee in TOOL_FEES[model.provider].items()},
        },
    }
