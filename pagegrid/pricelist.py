"""The providers' list prices shipped with PageGrid (``pagegrid/data/prices.json``).

One source of truth for what each provider bills per token: the seed catalog is built from it,
``sync-models`` prices new models from it, and reconciliation computes what the provider bills
from it. Every entry names the page its prices were read from and when.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pagegrid.billing import Price
from pagegrid.billing import price_per_mtok_to_nanos

PATH = Path(__file__).resolve().parent / "data" / "prices.json"
PRICE_KINDS = ("input", "output", "cache_write", "cache_write_1h", "cache_read")
# A snapshot id such as ``claude-opus-4-1-20250805`` is the same model as its undated name.
_DATED = re.compile(r"^(?P<base>.+)-\d{8}$")


@dataclass(frozen=True)
class ListedModel:
    """One model of the price list, its prices exact in nano-USD per token."""

    id: str
    provider: str
    display_name: str
    aliases: tuple[str, ...]
    context_window: int
    max_output: int
    thinking: bool
    seed: bool
    prices: tuple[str, ...]  # USD per 1M tokens as written in the file, in PRICE_KINDS order
    price: Price
    source: str
    date: str
    note: str = ""

    @property
    def confirmed(self) -> bool:
        """False when the file says part of the price is not confirmed by the provider's page."""
        return "not confirmed" not in self.note.lower()

    def source_text(self) -> str:
        """Where the price comes from, for the admin and the CLI."""
        text = f"price list: {self.source} ({self.date})"
        return text if self.confirmed else text + ", not fully confirmed"


@dataclass(frozen=True)
class PriceList:
    """The whole file: models by id, each family's current model, ids that are no chat models."""

    models: dict[str, ListedModel]
    families: dict[str, str]
    not_chat_models: tuple[str, ...]
    updated: str


def _parse(model_id: str, raw: dict) -> ListedModel:
    prices = tuple(str(raw["prices"][kind]) for kind in PRICE_KINDS)
    return ListedModel(
        id=model_id, provider=raw["provider"], display_name=raw["display_name"],
        aliases=tuple(raw.get("aliases", ())), context_window=int(raw["context_window"]),
        max_output=int(raw["max_output"]), thinking=bool(raw.get("thinking", False)),
        seed=bool(raw.get("seed", False)), prices=prices,
        price=Price(*(price_per_mtok_to_nanos(p) for p in prices)),
        source=raw["source"], date=raw["date"], note=raw.get("note", ""))


@lru_cache(maxsize=1)
def load() -> PriceList:
    """The price list, read and checked once per process (a bad price raises ValueError)."""
    raw = json.loads(PATH.read_text(encoding="utf-8"))
    models = {model_id: _parse(model_id, entry) for model_id, entry in raw["models"].items()}
    families = dict(raw.get("families", {}))
    for pattern, current in families.items():
        if current not in models or not fnmatch.fnmatchcase(current, pattern):
            raise ValueError(f"family {pattern}: its current model {current} is not a listed member")
    return PriceList(models, families, tuple(raw.get("not_chat_models", ())), raw.get("updated", ""))


def listed(upstream_model_id: str) -> ListedModel | None:
    """The price list's entry for a provider's model id (a dated snapshot matches its undated name)."""
    models = load().models
    if upstream_model_id in models:
        return models[upstream_model_id]
    dated = _DATED.match(upstream_model_id)
    return models.get(dated.group("base")) if dated else None


def list_price(upstream_model_id: str) -> Price | None:
    """What the provider bills per token for ``upstream_model_id`` at its list price, if listed."""
    entry = listed(upstream_model_id)
    return entry.price if entry else None


def family_current(pattern: str) -> str | None:
    """The current model of a family (``claude-opus-*``), as the price list names it."""
    return load().families.get(pattern)


def is_chat_model(model_id: str) -> bool:
    """False for ids that are embeddings, speech, images and the like (never added by a sync)."""
    return not any(fnmatch.fnmatchcase(model_id, p) for p in load().not_chat_models)


def seed() -> list[tuple]:
    """The models ``init-db`` adds: (id, provider, name, aliases, context, max output, thinking, prices)."""
    return [(m.id, m.provider, m.display_name, list(m.aliases), m.context_window, m.max_output,
             m.thinking, m.prices) for m in load().models.values() if m.seed]
