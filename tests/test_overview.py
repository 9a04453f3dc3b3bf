"""The admin overview: its numbers are sums over the ledger and the request log."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from pagegrid import clock
from pagegrid.catalog import SEED
from pagegrid.extensions import db
from pagegrid.models import LedgerEntry
from pagegrid.models import RequestLogEntry
from pagegrid.models import User
from tests.fake_upstream import chat_completion
from tests.fake_upstream import message
from tests.test_admin import HAIKU
from tests.test_admin import HAIKU_FORM

ADMIN = "root@example.com"
HAIKU_BODY = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
GPT_BODY = {"model": "gpt-5.4", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def list_price(model: str) -> list[Decimal]:
    """Nano-USD per token (input, output, cache write, cache write 1h, cache read), from SEED."""
    prices = next(p for m, *_, p in SEED if m == model)
    return [Decimal(p) * 1000 for p in prices]


def expected_cost(entry: LedgerEntry) -> int:
    inp, out, cw, cw1h, cr = list_price(entry.model)
    value = (entry.input_tokens * inp + entry.output_tokens * out
             + (entry.cache_creation_input_tokens - entry.cache_creation_1h_input_tokens) * cw
             + entry.cache_creation_1h_input_tokens * cw1h + entry.cache_read_input_tokens * cr)
    assert value == int(value)
    return int(value)


def row_values(page: str, field: str) -> list[str]:
    row = re.search(rf'<tr id="row-{field}">(.*?)</tr>', page, re.S).group(1)
    return re.findall(r'data-value="([^"]*)"', row)


def nearest_rank(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * fraction)) - 1]


def test_overview_numbers_are_sums_over_the_ledger(app, client, wallets, browser, fake_upstream, monkeypatch):
    wallets.user("0", email=ADMIN, admin=True)
    ada, bob = wallets.user("20"), wallets.user("20")
    ada_key, bob_key = wallets.key(ada), wallets.key(bob)
    assert browser.login(ADMIN).status_code == 302
    # the operator sells Haiku above its list price: that is the margin
    assert browser.post(f"/admin/models/{HAIKU}", {**HAIKU_FORM, "input": "1.5", "output": "7"},
                        token_from="/admin/models").status_code == 302

    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now - timedelta(days=8))
    fake_upstream.reply(message(model=HAIKU, input_tokens=1000, output_tokens=100))
    assert client.post("/v1/messages", json=HAIKU_BODY, headers={"x-api-key": ada_key}).status_code == 200
    monkeypatch.setattr(clock, "now", lambda: real_now - timedelta(days=3))
    fake_upstream.reply(message(model=HAIKU, input_tokens=500, output_tokens=50, cache_write=300,
                                cache_read=2000))
    assert client.post("/v1/messages", json=HAIKU_BODY, headers={"x-api-key": bob_key}).status_code == 200
    monkeypatch.setattr(clock, "now", lambda: real_now)
    for tokens in (10, 20, 30):
        fake_upstream.reply(message(model=HAIKU, input_tokens=tokens, output_tokens=tokens))
        assert client.post("/v1/messages", json=HAIKU_BODY, headers={"x-api-key": ada_key}).status_code == 200
    fake_upstream.reply(chat_completion(prompt_tokens=400, completion_tokens=80, cached_tokens=100))
    assert client.post("/v1/chat/completions", json=GPT_BODY,
                       headers={"Authorization": f"Bearer {bob_key}"}).status_code == 200
    fake_upstream.error(500, "api_error")
    assert client.post("/v1/messages", json=HAIKU_BODY, headers={"x-api-key": bob_key}).status_code == 502
    stranger = {"x-api-key": "pg-" + "1" * 64}
    assert client.post("/v1/messages", json=HAIKU_BODY, headers=stranger).status_code == 401

    response = browser.get("/admin/overview")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.count("<svg") == 3

    with app.app_context():
        entries = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "usage")).all()
        log = db.session.scalars(select(RequestLogEntry)).all()
        balances = db.session.scalars(select(User.balance_nanos)).all()
        today = real_now.date()
        expected = {"revenue": [], "cost": [], "margin": [], "charged": [], "requests": [], "errors": [],
                    "latency_p50": [], "latency_p95": []}
        for days in (1, 7, 30):
            start = today - timedelta(days=days - 1)
            picked = [e for e in entries if e.created_at.date() >= start]
            revenue = -sum(e.amount_nanos for e in picked)
            cost = sum(expected_cost(e) for e in picked)
            expected["revenue"].append(str(revenue))
            expected["cost"].append(str(cost))
            expected["margin"].append(str(revenue - cost))
            expected["charged"].append(str(len(picked)))
            rows = [r for r in log if r.created_at.date() >= start]
            expected["requests"].append(str(len(rows)))
            expected["errors"].append(str(sum(1 for r in rows if r.status >= 500)))
            latencies = [r.latency_ms for r in rows if r.status < 400 and r.latency_ms is not None]
            expected["latency_p50"].append(str(nearest_rank(latencies, 0.5)))
            expected["latency_p95"].append(str(nearest_rank(latencies, 0.95)))
    for field, values in expected.items():
        assert row_values(page, field) == values, field
    assert expected["charged"] == ["4", "5", "6"] and expected["requests"] == ["6", "7", "8"]
    assert int(expected["margin"][2]) > 0  # Haiku is sold above list; GPT at list
    assert f'id="prepaid" data-value="{sum(b for b in balances if b > 0)}"' in page
    assert 'id="holds" data-value="0"' in page
    top_users = re.search(r'<table id="top-users">(.*?)</table>', page, re.S).group(1)
    assert top_users.index(wallets.email(bob)) < top_users.index(wallets.email(ada))  # bob spent more
    assert "gpt-5.4" in re.search(r'<table id="top-models">(.*?)</table>', page, re.S).group(1)


def test_overview_of_an_empty_gateway(app, wallets, browser):
    wallets.user("0", email=ADMIN, admin=True)
    assert browser.login(ADMIN).status_code == 302
    page = browser.get("/admin/overview").get_data(as_text=True)
    assert row_values(page, "revenue") == ["0", "0", "0"]
    assert row_values(page, "latency_p50") == ["", "", ""]
    assert "No usage in this period." in page
