"""The shipped price list: well-formed, exact, the seed's one source, and the family rules."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from pagegrid import price_rules
from pagegrid import pricelist
from pagegrid.billing import Price
from pagegrid.billing import price_per_mtok_to_nanos
from pagegrid.catalog import SEED
from pagegrid.extensions import db
from pagegrid.models import AuditEntry
from pagegrid.models import CatalogModel
from pagegrid.models import PriceRule

RAW = json.loads(pricelist.PATH.read_text())
# What the newest Claude Code (2.1.332) sends: its default, and its opus / sonnet / haiku shortcuts.
CLAUDE_CODE_2_1_332 = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5")


@pytest.mark.parametrize("model_id", sorted(RAW["models"]))
def test_every_entry_has_five_exact_prices_a_source_and_a_date(model_id):
    entry = RAW["models"][model_id]
    assert entry["provider"] in ("anthropic", "openai")
    assert entry["source"].startswith("https://")
    assert len(entry["date"]) == 10 and entry["date"][4] == "-"
    assert set(entry["prices"]) == set(pricelist.PRICE_KINDS)
    for text in entry["prices"].values():
        assert isinstance(text, str)  # decimal strings, never floats
        assert price_per_mtok_to_nanos(text) * 10**6 == Decimal(text) * 10**9
    assert 0 < entry["max_output"] <= entry["context_window"]
    if entry["provider"] == "openai":  # no cache-write surcharge: writes cost the input rate
        assert entry["prices"]["cache_write"] == entry["prices"]["cache_write_1h"] == entry["prices"]["input"]


def test_the_seed_is_the_price_lists_seed_models():
    assert [s[0] for s in SEED] == [m for m, e in RAW["models"].items() if e.get("seed")]
    assert {s[0] for s in SEED} >= {"claude-opus-4-8", "claude-opus-4-7", "claude-opus-4-6",
                                    "claude-sonnet-4-6", "claude-haiku-4-5-20251001", "gpt-5.4", "gpt-5.5"}
    for model_id, *_rest, prices in SEED:
        assert pricelist.list_price(model_id) == Price(*(price_per_mtok_to_nanos(p) for p in prices))


def test_the_newest_claude_code_models_are_listed_but_not_seeded():
    for model_id in CLAUDE_CODE_2_1_332:
        entry = pricelist.listed(model_id)
        assert entry is not None and entry.provider == "anthropic" and not entry.seed
    assert pricelist.list_price("claude-sonnet-5-5") == Price(2000, 10000, 2500, 4000, 200)


def test_list_price_is_exact_nanos_and_knows_dated_snapshots():
    assert pricelist.list_price("claude-haiku-4-5-20251001") == Price(1000, 5000, 1250, 2000, 100)
    assert pricelist.list_price("claude-sonnet-5-5-20261201") == pricelist.list_price("claude-sonnet-5-5")
    assert pricelist.list_price("claude-nonexistent-9") is None
    assert pricelist.list_price("gpt-5.4") == Price(2500, 15000, 2500, 2500, 250)


def test_unconfirmed_prices_say_so_in_their_source():
    assert not pricelist.listed("claude-opus-5-5").confirmed
    assert "not fully confirmed" in pricelist.listed("claude-opus-5-5").source_text()
    assert pricelist.listed("claude-sonnet-5-5").confirmed


def test_every_family_names_a_current_member():
    for pattern, current in RAW["families"].items():
        assert pricelist.family_current(pattern) == current
        assert pricelist.listed(current) is not None


def test_non_chat_models_are_recognised():
    assert not pricelist.is_chat_model("text-embedding-3-small")
    assert not pricelist.is_chat_model("gpt-4o-mini-tts")
    assert pricelist.is_chat_model("gpt-7")


def test_init_db_seeds_a_default_rule_per_family(app):
    with app.app_context():
        patterns = set(db.session.scalars(select(PriceRule.pattern)))
        assert patterns == {"claude-opus-*", "claude-sonnet-*", "claude-haiku-*", "gpt-*"}
        ruled = price_rules.price_for("claude-opus-6")
        assert ruled.like == "claude-opus-5-5" and ruled.rule == "claude-opus-*"
        assert ruled.price == pricelist.list_price("claude-opus-5-5")
        assert ruled.source_text() == "priced like claude-opus-5-5 by rule claude-opus-*"
        assert price_rules.price_for("mistral-large") is None


def test_a_rule_copies_the_catalog_price_with_the_operators_edits(app):
    with app.app_context():
        price_rules.set_rule("claude-sonnet-*", like="claude-sonnet-4-6")
        row = db.session.get(CatalogModel, "claude-sonnet-4-6")
        row.input_nanos = 3125
        db.session.commit()
        assert price_rules.price_for("claude-sonnet-7").price.input == 3125


def test_the_most_specific_rule_wins_and_explicit_prices_win(app):
    with app.app_context():
        price_rules.set_rule("claude-opus-6*", prices=Price(7000, 35000, 8750, 14000, 700))
        assert price_rules.price_for("claude-opus-6-1").price == Price(7000, 35000, 8750, 14000, 700)
        assert price_rules.price_for("claude-opus-6-1").source_text() == \
            "explicit prices of rule claude-opus-6*"
        assert price_rules.price_for("claude-opus-7").like == "claude-opus-5-5"


@pytest.mark.parametrize("args, message", [
    (("claude opus",), "pattern"),
    (("acme-*",), "no current model"),
    (("claude-opus-*", "no-such-model"), "neither"),
])
def test_bad_rules_are_refused(app, args, message):
    with app.app_context():
        with pytest.raises(ValueError, match=message):
            price_rules.set_rule(args[0], like=args[1] if len(args) > 1 else None)


def test_rule_cli(runner):
    result = runner.invoke(args=["set-price-rule", "claude-opus-*", "--like", "claude-opus-4-8"])
    assert result.exit_code == 0, result.output
    assert "claude-opus-*: like claude-opus-4-8" in result.output
    result = runner.invoke(args=["set-price-rule", "mistral-*", "--prices", "2,6,2,2,0.2"])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(args=["list-price-rules"]).output
    assert "claude-opus-*\tlike claude-opus-4-8\t$/1M 5 / 25 / 6.25 / 10 / 0.5" in listing
    assert "mistral-*\texplicit prices\t$/1M 2 / 6 / 2 / 2 / 0.2" in listing
    bad = runner.invoke(args=["set-price-rule", "x-*", "--prices", "1,2,3"])
    assert bad.exit_code != 0 and "five prices" in bad.output
    bad = runner.invoke(args=["set-price-rule", "x-*", "--prices", "1.0001,2,3,4,5"])
    assert bad.exit_code != 0 and "3 decimals" in bad.output
    assert runner.invoke(args=["delete-price-rule", "mistral-*"]).exit_code == 0
    assert runner.invoke(args=["delete-price-rule", "mistral-*"]).exit_code != 0
    with runner.app.app_context():
        log = [(e.actor, e.action, e.target) for e in db.session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("price_rule.%")).order_by(AuditEntry.id))]
    assert log == [("cli", "price_rule.set", "price rule claude-opus-*"),
                   ("cli", "price_rule.set", "price rule mistral-*"),
                   ("cli", "price_rule.delete", "price rule mistral-*")]
