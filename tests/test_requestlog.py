"""The request log: a row for every /v1 request (refused ones too), retention, Activity, admin log."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func
from sqlalchemy import select

from pagegrid import clock
from pagegrid import requestlog
from pagegrid.extensions import db
from pagegrid.models import LedgerEntry
from pagegrid.models import RequestLogEntry
from tests.fake_upstream import message
from tests.fake_upstream import stream_events

BODY = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
ADMIN = "root@example.com"


def rows(app, **where) -> list[RequestLogEntry]:
    with app.app_context():
        query = select(RequestLogEntry).order_by(RequestLogEntry.id)
        for name, value in where.items():
            query = query.where(getattr(RequestLogEntry, name) == value)
        found = db.session.scalars(query).all()
        db.session.expunge_all()
        return list(found)


def page(browser, path: str) -> str:
    return browser.get(path).get_data(as_text=True)


def metric(client, name: str, **labels) -> float:
    """The value of one sample on /metrics (0 when it is not there yet)."""
    text = client.get("/metrics").get_data(as_text=True)
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_a_row_for_401_402_429_and_success(app, client, wallets, fake_upstream):
    rich = wallets.user("10")
    key = wallets.key(rich, rpm=1)
    broke = wallets.key(wallets.user("0"))
    before = {kind: metric(client, "pagegrid_limit_refusals_total", kind=kind) for kind in ("rpm", "balance")}
    fake_upstream.reply(message(model="claude-haiku-4-5-20251001", input_tokens=12, output_tokens=7))

    ok = client.post("/v1/messages", json=BODY, headers={"x-api-key": key})
    limited = client.post("/v1/messages", json=BODY, headers={"x-api-key": key})
    unpaid = client.post("/v1/messages", json=BODY, headers={"x-api-key": broke})
    anonymous = client.post("/v1/chat/completions", json=BODY, headers={"Authorization": "Bearer pg-nope"})
    assert [r.status_code for r in (ok, limited, unpaid, anonymous)] == [200, 429, 402, 401]

    by_id = {r.request_id: r for r in rows(app)}
    success = by_id[ok.headers["request-id"]]
    charge = wallets.charges(rich)[0]
    assert (success.status, success.outcome, success.model, success.route) == \
        (200, "complete", "claude-haiku-4-5-20251001", "messages")
    assert (success.input_tokens, success.output_tokens) == (12, 7)
    assert success.cost_nanos == -charge.amount_nanos > 0
    assert success.user_id == rich and success.api_key_id == charge.api_key_id
    assert success.latency_ms is not None and success.ttft_ms is None and not success.stream

    refused = by_id[limited.headers["request-id"]]
    assert (refused.status, refused.error_type, refused.user_id, refused.cost_nanos) == \
        (429, "rate_limit_error", rich, 0)
    assert by_id[unpaid.headers["request-id"]].error_type == "billing_error"
    assert by_id[unpaid.headers["request-id"]].model == "claude-haiku-4-5-20251001"
    no_key = by_id[anonymous.headers["request-id"]]
    assert (no_key.status, no_key.error_type, no_key.user_id, no_key.route) == \
        (401, "authentication_error", None, "chat_completions")
    assert metric(client, "pagegrid_limit_refusals_total", kind="rpm") == before["rpm"] + 1
    assert metric(client, "pagegrid_limit_refusals_total", kind="balance") == before["balance"] + 1
    assert not {r.request_id for r in rows(app)} & set(requestlog.OPEN)  # closed: nothing kept


def test_stream_rows_carry_first_byte_and_what_was_charged(app, sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(stream_events(message("one two three", model="claude-haiku-4-5-20251001",
                                               input_tokens=30, output_tokens=9)), delay=0.01)
    with sdk(key).messages.stream(**BODY) as stream:
        text = "".join(stream.text_stream)
    assert text == "one two three"
    (row,) = rows(app, user_id=user_id)
    assert row.stream and row.status == 200 and row.outcome == "complete"
    assert row.ttft_ms is not None and row.latency_ms >= row.ttft_ms
    assert (row.input_tokens, row.output_tokens) == (30, 9)
    assert row.cost_nanos == -wallets.charges(user_id)[0].amount_nanos
    wallets.assert_consistent(user_id)


def test_a_client_gone_mid_stream_is_logged_as_aborted(app, sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(stream_events(message("a " * 40, model="claude-haiku-4-5-20251001")), delay=0.01)
    with sdk(key).messages.stream(**BODY) as stream:
        next(iter(stream.text_stream))
    (row,) = rows(app, user_id=user_id)
    assert row.outcome == "client_aborted" and row.cost_nanos == -wallets.charges(user_id)[0].amount_nanos
    assert not {r.request_id for r in rows(app)} & set(requestlog.OPEN)  # closed: nothing kept


def test_free_and_failed_requests_are_logged_too(app, client, funded, fake_upstream):
    user_id, key = funded
    assert client.get("/v1/models").status_code == 200
    fake_upstream.error(529, "overloaded_error")
    assert client.post("/v1/messages", json=BODY, headers={"x-api-key": key}).status_code == 529
    assert client.post("/v1/messages", data=b"{not json", headers={"x-api-key": key}).status_code == 400
    statuses = [(r.route, r.status, r.error_type) for r in rows(app)]
    assert statuses == [("list_models", 200, None), ("messages", 529, "overloaded_error"),
                        ("messages", 400, "invalid_request_error")]


def test_prune_keeps_the_ledger(app, client, runner, funded, wallets, fake_upstream, monkeypatch):
    user_id, key = funded
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now - timedelta(days=31))
    assert client.post("/v1/messages", json=BODY, headers={"x-api-key": key}).status_code == 200
    monkeypatch.setattr(clock, "now", lambda: real_now)
    assert client.post("/v1/messages", json=BODY, headers={"x-api-key": key}).status_code == 200
    assert len(rows(app)) == 2

    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0 and "Pruned 1 request log rows older than 30 days" in result.output
    (kept,) = rows(app)
    assert kept.created_at.replace(tzinfo=None) > (real_now - timedelta(days=1)).replace(tzinfo=None)
    assert len(wallets.charges(user_id)) == 2  # money stays
    wallets.assert_consistent(user_id)
    assert runner.invoke(args=["prune"]).output.startswith("Pruned 0 ")

    app.config["PAGEGRID_REQUEST_LOG_DAYS"] = 1
    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(days=2))
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0
    assert "1 request log rows and 0 stored responses past retention pruned" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RequestLogEntry)) == 0
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                 .where(LedgerEntry.kind == "usage")) == 2


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_bad_retention_stops_the_start(monkeypatch, value):
    from pagegrid import config

    with pytest.raises(SystemExit, match="PAGEGRID_REQUEST_LOG_DAYS"):
        config.retention_days("PAGEGRID_REQUEST_LOG_DAYS", value)


def test_activity_shows_a_customer_only_their_requests(app, client, wallets, browser, fake_upstream):
    mine, theirs = wallets.user("5"), wallets.user("5")
    my_key, their_key = wallets.key(mine), wallets.key(theirs)
    ok = client.post("/v1/messages", json=BODY, headers={"x-api-key": my_key})
    bad = client.post("/v1/messages", json={**BODY, "model": "nope"}, headers={"x-api-key": my_key})
    other = client.post("/v1/messages", json=BODY, headers={"x-api-key": their_key})
    assert browser.login(wallets.email(mine)).status_code == 302

    page = browser.get("/activity").get_data(as_text=True)
    assert ok.headers["request-id"] in page and bad.headers["request-id"] in page
    assert other.headers["request-id"] not in page
    assert "not_found_error" in page

    only_errors = browser.get("/activity?status=4xx").get_data(as_text=True)
    assert bad.headers["request-id"] in only_errors and ok.headers["request-id"] not in only_errors
    # someone else's user id in the query changes nothing: a customer sees only their own rows
    assert other.headers["request-id"] not in browser.get(f"/activity?user={theirs}").get_data(as_text=True)
    for junk in ("status=abc", "start=2026-13-45", "key=%27%3B--", "page=-5", "page=99999999999",
                 "end=9999-12-31", "model=" + "m" * 5000):
        response = browser.get(f"/activity?{junk}")
        assert response.status_code == 200, junk


def test_admin_request_log_filters(app, client, wallets, browser, fake_upstream):
    wallets.user("0", email=ADMIN, admin=True)
    ada, bob = wallets.user("5"), wallets.user("0")
    ada_key, bob_key = wallets.key(ada), wallets.key(bob)
    ok = client.post("/v1/messages", json=BODY, headers={"x-api-key": ada_key})
    unpaid = client.post("/v1/messages", json=BODY, headers={"x-api-key": bob_key})
    assert browser.login(ADMIN).status_code == 302

    everything = browser.get("/admin/requests").get_data(as_text=True)
    assert ok.headers["request-id"] in everything and unpaid.headers["request-id"] in everything
    by_email = browser.get(f"/admin/requests?user={wallets.email(bob)}").get_data(as_text=True)
    assert unpaid.headers["request-id"] in by_email and ok.headers["request-id"] not in by_email
    by_status = browser.get("/admin/requests?status=402").get_data(as_text=True)
    assert unpaid.headers["request-id"] in by_status and ok.headers["request-id"] not in by_status
    key_id = rows(app, user_id=ada)[0].api_key_id
    by_key = page(browser, f"/admin/requests?key={key_id}&model=claude-haiku-4-5-20251001")
    assert ok.headers["request-id"] in by_key and unpaid.headers["request-id"] not in by_key
    today = clock.now().date().isoformat()
    dated = browser.get(f"/admin/requests?start={today}&end={today}").get_data(as_text=True)
    assert ok.headers["request-id"] in dated
    for nothing in ("end=2000-01-01", "account=nobody", "user=ghost@example.com"):
        assert ok.headers["request-id"] not in page(browser, f"/admin/requests?{nothing}"), nothing
    for junk in ("status=99999", "user=" + "9" * 40, "start=yesterday", "key=-1", "page=abc"):
        assert browser.get(f"/admin/requests?{junk}").status_code == 200, junk


def test_customers_cannot_see_the_admin_log(app, wallets, browser):
    assert browser.login(wallets.email(wallets.user("1"))).status_code == 302
    assert browser.get("/admin/requests").status_code == 403
    assert browser.get("/admin/overview").status_code == 403
