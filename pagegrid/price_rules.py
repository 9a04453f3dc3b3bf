"""Family price rules: how a model the price list lacks is priced (``claude-opus-*`` like a model).

The operator owns the ``price_rules`` table (admin page, ``set-price-rule``, ``list-price-rules``);
``init-db`` fills it once with a rule per family of the price list, each copying the family's
current model. A rule copies a catalog model's *current* price (the operator's edits included),
or that model's list price when it is not in the catalog, or gives five explicit prices.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy import select

from pagegrid import audit
from pagegrid import pricelist
from pagegrid.billing import Price
from pagegrid.extensions import db
from pagegrid.models import CatalogModel
from pagegrid.models import PriceRule

PATTERN = re.compile(r"[A-Za-z0-9*?][A-Za-z0-9._:/@*?-]*")
NANO_FIELDS = ("input_nanos", "output_nanos", "cache_write_nanos", "cache_write_1h_nanos",
               "cache_read_nanos")


@dataclass(frozen=True)
class RulePrice:
    """What a rule prices a new model at, and which model it copied (for limits and the note)."""

    rule: str
    like: str | None
    price: Price
    context_window: int | None = None
    max_output: int | None = None
    thinking: bool = False

    def source_text(self) -> str:
        """``priced like X by rule P`` (or ``explicit prices of rule P``)."""
        if self.like is None:
            return f"explicit prices of rule {self.rule}"
        return f"priced like {self.like} by rule {self.rule}"


def seed_price_rules() -> int:
    """Add the default family rules when the table is empty; return how many were added."""
    if db.session.scalar(select(func.count()).select_from(PriceRule)):
        return 0
    patterns = list(pricelist.load().families)
    for pattern in patterns:
        db.session.add(PriceRule(pattern=pattern))
    db.session.commit()
    return len(patterns)


def _specificity(pattern: str) -> tuple[int, int, str]:
    # The most specific rule wins: more literal characters first, then fewer wildcards.
    wildcards = pattern.count("*") + pattern.count("?")
    return (-(len(pattern) - wildcards), wildcards, pattern)


def ordered() -> list[PriceRule]:
    """Every rule, the one that wins first."""
    return sorted(db.session.scalars(select(PriceRule)), key=lambda r: _specificity(r.pattern))


def matching(model_id: str) -> PriceRule | None:
    """The rule that prices ``model_id``, if any matches."""
    return next((r for r in ordered() if fnmatch.fnmatchcase(model_id, r.pattern)), None)


def explicit_price(rule: PriceRule) -> Price | None:
    """The rule's own five prices, if it has them."""
    values = [getattr(rule, name) for name in NANO_FIELDS]
    return None if any(v is None for v in values) else Price(*values)


def resolve(rule: PriceRule) -> RulePrice | None:
    """The price the rule gives today, or None when the model it copies is priced nowhere."""
    own = explicit_price(rule)
    if own is not None:
        return RulePrice(rule.pattern, None, own)
    like = rule.like_model or pricelist.family_current(rule.pattern)
    if not like:
        return None
    row = db.session.get(CatalogModel, like)
    if row is not None and not row.needs_price:
        return RulePrice(rule.pattern, like, Price(row.input_nanos, row.output_nanos, row.cache_write_nanos,
                                                   row.cache_write_1h_nanos, row.cache_read_nanos),
                         row.context_window, row.max_output, row.thinking)
    listed = pricelist.listed(like)
    if listed is None:
        return None
    return RulePrice(rule.pattern, like, listed.price, listed.context_window, listed.max_output,
                     listed.thinking)


def price_for(model_id: str) -> RulePrice | None:
    """How the rules price ``model_id``, if one matches and resolves."""
    rule = matching(model_id)
    return resolve(rule) if rule is not None else None


def set_rule(pattern: str, *, like: str | None = None, prices: Price | None = None) -> PriceRule:
    """Create or replace the rule for ``pattern``: like a model, at explicit prices, or (neither)
    like the price list's current model of that family. Raises ValueError on bad input."""
    pattern = pattern.strip()
    if len(pattern) > 100 or not PATTERN.fullmatch(pattern):
        raise ValueError("A pattern is a model id with * or ? wildcards, e.g. claude-opus-*.")
    if like is not None and prices is not None:
        raise ValueError("Give either the model whose price the rule copies or five explicit prices.")
    if like is None and prices is None and pricelist.family_current(pattern) is None:
        raise ValueError(f"The price list has no current model for {pattern}: give a model to copy "
                         "or five explicit prices.")
    if like is not None:
        like = like.strip()
        if db.session.get(CatalogModel, like) is None and pricelist.listed(like) is None:
            raise ValueError(f"{like} is neither in the catalog nor in the price list.")
    rule = db.session.scalar(select(PriceRule).where(PriceRule.pattern == pattern))
    before = summary(rule) if rule is not None else None
    if rule is None:
        rule = PriceRule(pattern=pattern)
        db.session.add(rule)
    rule.like_model = like
    for name, value in zip(NANO_FIELDS, (prices.input, prices.output, prices.cache_write,
                                          prices.cache_write_1h, prices.cache_read) if prices else
                           (None,) * 5, strict=True):
        setattr(rule, name, value)
    audit.record("price_rule.set", f"price rule {pattern}", before=before, after=summary(rule), commit=False)
    db.session.commit()
    return rule


def delete_rule(pattern: str) -> bool:
    """Remove the rule for ``pattern``; False if there was none."""
    rule = db.session.scalar(select(PriceRule).where(PriceRule.pattern == pattern.strip()))
    if rule is None:
        return False
    audit.record("price_rule.delete", f"price rule {rule.pattern}", before=summary(rule), commit=False)
    db.session.delete(rule)
    db.session.commit()
    return True


def summary(rule: PriceRule) -> dict:
    """The rule's settings, for the audit log."""
    return {"pattern": rule.pattern, "like_model": rule.like_model,
            **{name: getattr(rule, name) for name in NANO_FIELDS}}


def describe(rule: PriceRule) -> str:
    """What the rule copies, in words."""
    if explicit_price(rule) is not None:
        return "explicit prices"
    if rule.like_model:
        return f"like {rule.like_model}"
    current = pricelist.family_current(rule.pattern)
    return f"like the family's current model ({current or 'none in the price list'})"
