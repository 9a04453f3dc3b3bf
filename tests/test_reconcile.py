"""Reconciliation per upstream account and UTC day, from ledger rows PageGrid itself wrote."""

from __future__ import annotations

import csv
import io
from datetime import UTC
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy import update

from pagegrid import billing
from pagegrid import clock
from pagegrid import pricelist
from pagegrid import reconcile
from pagegrid.extensions import db
from pagegrid.keys import create_key
from pagegrid.models import CatalogModel
from pagegrid.models import LedgerEntry
from pagegrid.models import User
from pagegrid.money import format_usd
from pagegrid.translate.usage import Usage
from tests.fake_upstream import chat_completion
from tests.fake_upstream import message
from tests.test_admin import admin  # noqa: F401 - the logged-in admin fixture
from tests.test_admin import html

DAY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(moment: datetime):  # noqa: ANN201
    return lambda: moment


def post_messages(app, key: str, model: str) -> None:
    response = app.test_client().post("/v1/messages", headers={"x-api-key": key}, json={
        "model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.get_data(as_text=True)


def traffic(app, fake, key: str) -> None:
    """Three Claude requests (one alias, cache writes of both lengths) and one GPT request."""
    fake.reply(message(input_tokens=1000, output_tokens=200, cache_write=800, cache_read=3000,
                       cache_creation={"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 500}))
    post_messages(app, key, "claude-sonnet-4-6")
    fake.reply(message(input_tokens=50, output_tokens=7))
    post_messages(app, key, "claude-haiku-4-5")
    fake.reply(message(input_tokens=10, output_tokens=3))
    post_messages(app, key, "claude-sonnet-4-6")
    fake.reply(chat_completion(prompt_tokens=400, completion_tokens=90, cached_tokens=100))
    body = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}
    response = app.test_client().post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                      json=body)
    assert response.status_code == 200


def expected_by_account(app) -> dict[str, dict]:
    """The report recomputed independently from the ledger rows and the price list."""
    out: dict[str, dict] = {}
    with app.app_context():
        catalog = {m.id: m for m in db.session.scalars(select(CatalogModel))}
        for row in db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "usage")):
            name = row.upstream or reconcile.UNRECORDED
            acc = out.setdefault(name, {"requests": 0, "charged": 0, "provider": 0, "w1h": 0, "w5m": 0})
            acc["requests"] += 1
            acc["charged"] -= row.amount_nanos
            acc["w1h"] += row.cache_creation_1h_input_tokens
            acc["w5m"] += row.cache_creation_input_tokens - row.cache_creation_1h_input_tokens
            usage = Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens,
                          cache_creation_input_tokens=row.cache_creation_input_tokens,
                          cache_creation_1h_input_tokens=row.cache_creation_1h_input_tokens,
                          cache_read_input_tokens=row.cache_read_input_tokens)
            acc["provider"] += billing.cost_nanos(usage, pricelist.list_price(catalog[row.model].upstream_id))
    return out


def test_report_matches_the_ledger_and_the_list_prices(app, fake_upstream, funded, monkeypatch):
    monkeypatch.setattr(clock, "now", at(DAY))
    user_id, key = funded
    traffic(app, fake_upstream, key)
    with app.app_context():
        rows = reconcile.report(reconcile.Period(DAY.date(), DAY.date()))
    expected = expected_by_account(app)
    assert {r.account for r in rows} == set(expected)
    for r in rows:
        want = expected[r.account]
        assert r.day == "2026-11-25"
        assert (r.requests, r.charged_nanos) == (want["requests"], want["charged"])
        assert r.provider_nanos == want["provider"]
        assert (r.cache_write_5m_tokens, r.cache_write_1h_tokens) == (want["w5m"], want["w1h"])
        assert r.margin_nanos == 0  # the seed sells at the providers' list prices
        assert r.notes() == ""
    total = reconcile.totals(rows)
    assert total.requests == 4 and total.cache_write_1h_tokens == 500 and total.cache_write_5m_tokens == 300
    assert total.input_tokens == 1000 + 50 + 10 + 300  # OpenAI's prompt_tokens include the cached 100
    assert total.cache_read_tokens == 3000 + 100
    # Sonnet: 1000 in, 200 out, 300 5m writes, 500 1h writes, 3000 reads; then 10 in, 3 out.
    sonnet = 1010 * 3000 + 203 * 15000 + 300 * 3750 + 500 * 6000 + 3000 * 300
    haiku = 50 * 1000 + 7 * 5000
    gpt = 300 * 2500 + 90 * 15000 + 100 * 250
    assert total.provider_nanos == sonnet + haiku + gpt == total.charged_nanos
    wallets_balance = -sum(e["charged"] for e in expected.values())
    with app.app_context():
        assert billing.ledger_sum(user_id) - billing.usd_to_nanos("10") == wallets_balance


def test_margin_is_the_markup_over_the_list_price(app, fake_upstream, funded, monkeypatch):
    monkeypatch.setattr(clock, "now", at(DAY))
    with app.app_context():  # the operator sells Sonnet input at $3.60 instead of $3
        db.session.execute(update(CatalogModel).where(CatalogModel.id == "claude-sonnet-4-6")
                           .values(input_nanos=3600))
        db.session.commit()
    app.extensions["pagegrid.catalog"].invalidate()
    fake_upstream.reply(message(input_tokens=10_000, output_tokens=100))
    post_messages(app, funded[1], "claude-sonnet-4-6")
    with app.app_context():
        (row,) = reconcile.report(reconcile.Period(DAY.date(), DAY.date()))
    assert row.provider_nanos == 10_000 * 3000 + 100 * 15000
    assert row.charged_nanos == 10_000 * 3600 + 100 * 15000
    assert row.margin_nanos == 10_000 * 600


def test_a_model_the_price_list_lacks_uses_the_catalog_price_and_says_so(app, fake_upstream, funded,
                                                                        monkeypatch):
    monkeypatch.setattr(clock, "now", at(DAY))
    with app.app_context():
        db.session.add(CatalogModel(
            id="acme-1", provider="anthropic", upstream_id="acme-1-base", display_name="Acme", aliases=[],
            context_window=100_000, max_output=8_000, active=True, input_nanos=2000, output_nanos=8000,
            cache_write_nanos=2500, cache_write_1h_nanos=4000, cache_read_nanos=200))
        db.session.commit()
    fake_upstream.reply(message(input_tokens=100, output_tokens=10))
    post_messages(app, funded[1], "acme-1")
    with app.app_context():
        (row,) = reconcile.report(reconcile.Period(DAY.date(), DAY.date()))
    assert row.provider_nanos == 100 * 2000 + 10 * 8000 == row.charged_nanos
    assert row.notes() == "catalog price (not in the price list): acme-1"


def test_days_are_utc_days_and_filters_apply(app, fake_upstream, funded, monkeypatch, runner):
    key = funded[1]
    monkeypatch.setattr(clock, "now", at(datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC)))
    fake_upstream.reply(message(input_tokens=11, output_tokens=1))
    post_messages(app, key, "claude-sonnet-4-6")
    monkeypatch.setattr(clock, "now", at(datetime(2026, 11, 25, 0, 0, 1, tzinfo=UTC)))
    fake_upstream.reply(message(input_tokens=22, output_tokens=2))
    post_messages(app, key, "claude-sonnet-4-6")
    with app.app_context():
        both = reconcile.report(reconcile.Period(datetime(2026, 11, 24).date(), DAY.date()))
        assert [(r.day, r.input_tokens) for r in both] == [("2026-11-24", 11), ("2026-11-25", 22)]
        account = both[0].account
        assert reconcile.report(reconcile.Period(DAY.date(), DAY.date(), account))[0].input_tokens == 22
        assert reconcile.report(reconcile.Period(DAY.date(), DAY.date(), "no-such-account")) == []

    result = runner.invoke(args=["report-upstreams", "--day", "2026-11-24"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Upstream accounts on 2026-11-24 (UTC)"
    assert lines[1].split() == ["account", "requests", "input", "output", "write_5m", "write_1h", "read",
                                "provider_cost", "charged", "margin"]
    cost = 11 * 3000 + 1 * 15000
    assert lines[2].split() == [account, "1", "11", "1", "0", "0", "0", f"${cost / 1e9:.9f}",
                                f"${cost / 1e9:.9f}", "$0.000000000"]
    assert lines[3].split()[:3] == ["all", "accounts", "1"]
    today = runner.invoke(args=["report-upstreams"])  # the clock's today: 2026-11-25
    assert "Upstream accounts on 2026-11-25 (UTC)" in today.output and " 22 " in today.output
    empty = runner.invoke(args=["report-upstreams", "--day", "2026-01-01"])
    assert empty.exit_code == 0 and "no usage" in empty.output
    bad = runner.invoke(args=["report-upstreams", "--day", "25/11/2026"])
    assert bad.exit_code == 2 and "--day" in bad.output


def test_admin_page_and_csv(app, fake_upstream, funded, monkeypatch, admin):  # noqa: F811
    monkeypatch.setattr(clock, "now", at(DAY))
    traffic(app, fake_upstream, funded[1])
    page = html(admin.get("/admin/reconcile"))
    with app.app_context():
        rows = reconcile.report(reconcile.Period(DAY.date(), DAY.date()))
        total = reconcile.totals(rows)
    assert "2026-11-25" in page and rows[0].account in page
    assert format_usd(total.charged_nanos, exact=True) in page  # the exact amount in the cell title
    assert 'href="/admin/reconcile.csv?start=2026-11-19&amp;end=2026-11-25' in page

    response = admin.get("/admin/reconcile.csv?start=2026-11-25&end=2026-11-25")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    table = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert tuple(table[0]) == reconcile.CSV_COLUMNS
    body = {r[1]: r for r in table[1:]}
    csv_row = body[rows[0].account]
    assert csv_row[0] == "2026-11-25" and csv_row[2] == str(rows[0].requests)
    assert csv_row[9] == format_usd(rows[0].charged_nanos, exact=True, symbol=False, grouping=False)
    assert csv_row[10] == "0.000000000"

    nothing = html(admin.get("/admin/reconcile?start=2026-10-01&end=2026-10-02"))
    assert "No usage from 2026-10-01 to 2026-10-02." in nothing
    other = html(admin.get("/admin/reconcile?start=2026-11-25&end=2026-11-25&account=no-such-account"))
    assert "No charges name that account; showing all accounts." in other and rows[0].account in other
    one = html(admin.get(f"/admin/reconcile?start=2026-11-25&end=2026-11-25&account={rows[0].account}"))
    assert "No charges name" not in one and rows[0].account in one


@pytest.mark.parametrize("query", ["start=2026-11-25&end=2026-11-01", "start=yesterday",
                                   "start=2020-01-01&end=2026-11-25", "end=9999-99-99", "account=%00"])
def test_bad_filters_fall_back_with_a_message_not_a_500(app, admin, query, monkeypatch):  # noqa: F811
    monkeypatch.setattr(clock, "now", at(DAY))
    for path in ("/admin/reconcile", "/admin/reconcile.csv"):
        response = admin.get(f"{path}?{query}")
        assert response.status_code == 200, (path, query)


def test_customers_and_anonymous_users_cannot_see_it(app, browser, wallets):
    assert browser.get("/admin/reconcile").status_code in (302, 401)
    wallets.user("1", email="customer@example.com")
    browser.login("customer@example.com")
    assert browser.get("/admin/reconcile").status_code == 403
    assert browser.get("/admin/reconcile.csv").status_code == 403


@pytest.mark.skipif("upstream" not in billing.Charge.__dataclass_fields__,
                    reason="settlement records the serving account once Charge carries it (issue 11, item 2)")
def test_rows_split_by_the_account_that_served_them(app, wallets, monkeypatch, admin):  # noqa: F811
    monkeypatch.setattr(clock, "now", at(DAY))
    user_id = wallets.user("5")
    with app.app_context():
        key, _ = create_key(db.session.get(User, user_id))
        price = pricelist.list_price("claude-sonnet-4-6")
        for n, account in enumerate(["team-a", "team-a", "=HYPERLINK(1)"]):  # a name a spreadsheet runs
            request_id = billing.new_request_id()
            billing.reserve(user_id, request_id, 10**9, api_key_id=key.id)
            db.session.commit()
            billing.settle(billing.Charge(  # type: ignore[call-arg]
                request_id=request_id, user_id=user_id, api_key_id=key.id, model="claude-sonnet-4-6",
                usage=Usage(input_tokens=100 * (n + 1), output_tokens=10), price=price, status="complete",
                started_at=DAY, hold_nanos=10**9, upstream=account, attempts=1))
        rows = {r.account: r for r in reconcile.report(reconcile.Period(DAY.date(), DAY.date()))}
    assert rows["team-a"].requests == 2 and rows["team-a"].input_tokens == 300
    assert rows["=HYPERLINK(1)"].requests == 1
    table = admin.get("/admin/reconcile.csv?start=2026-11-25&end=2026-11-25").get_data(as_text=True)
    assert "'=HYPERLINK(1)" in table


def test_server_tool_fees_count_on_both_sides(app, fake_upstream, funded, monkeypatch):
    monkeypatch.setattr(clock, "now", at(DAY))
    fake_upstream.reply(message(input_tokens=100, output_tokens=10,
                                server_tool_use={"web_search_requests": 2}))
    response = app.test_client().post("/v1/messages", headers={"x-api-key": funded[1]}, json={
        "model": "claude-sonnet-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": "news?"}],
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert response.status_code == 200
    with app.app_context():
        (row,) = reconcile.report(reconcile.Period(DAY.date(), DAY.date()))
    tokens = 100 * 3000 + 10 * 15000
    assert row.charged_nanos == tokens + 2 * 10_000_000
    assert row.provider_nanos == row.charged_nanos and row.margin_nanos == 0
