"""Money: exact costs, holds, exactly-once settlement, concurrency and client disconnects."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.test import EnvironBuilder

from pagegrid import billing
from pagegrid import bounds
from pagegrid.billing import Price
from pagegrid.catalog import catalog
from pagegrid.extensions import db
from pagegrid.keys import hash_key
from pagegrid.models import ApiKey
from pagegrid.models import Hold
from pagegrid.models import utcnow
from pagegrid.money import format_usd
from pagegrid.money import per_mtok_decimal
from pagegrid.translate.usage import Usage
from tests.fake_upstream import json_response
from tests.fake_upstream import message
from tests.fake_upstream import stream_events

HAIKU = Price(input=1000, output=5000, cache_write=1250, cache_write_1h=2000, cache_read=100)


@pytest.mark.parametrize("usage, expected", [
    (Usage(), 0),
    (Usage(input_tokens=1), 1000),
    (Usage(input_tokens=1_000_000), 10**9),  # $1 per 1M input tokens
    (Usage(output_tokens=3), 15_000),
    (Usage(cache_creation_input_tokens=10, cache_creation_1h_input_tokens=4), 6 * 1250 + 4 * 2000),
    (Usage(cache_read_input_tokens=7), 700),
    (Usage(14, 10, 100, 0, 1000), 14_000 + 50_000 + 125_000 + 100_000),
])
def test_cost_is_exact_integer_nanos(usage, expected):
    assert billing.cost_nanos(usage, HAIKU) == expected


@pytest.mark.parametrize("text, nanos", [
    ("5", 5 * 10**9), ("0.000000150", 150), ("-1.5", -1_500_000_000), ("$12.345678901", 12_345_678_901),
])
def test_usd_amounts_parse_exactly(text, nanos):
    assert billing.usd_to_nanos(text) == nanos
    assert billing.usd_to_nanos(format_usd(nanos, exact=True, grouping=False)) == nanos


@pytest.mark.parametrize("text", ["0.0000000001", "abc", "", "nan", "inf"])
def test_bad_amounts_are_refused(text):
    with pytest.raises(ValueError):
        billing.usd_to_nanos(text)


def test_list_prices_convert_to_whole_nanos_per_token():
    assert billing.price_per_mtok_to_nanos("0.10") == 100
    assert billing.price_per_mtok_to_nanos("6.25") == 6250
    assert per_mtok_decimal(6250) == "6.25"
    assert per_mtok_decimal(5000) == "5"
    with pytest.raises(ValueError):
        billing.price_per_mtok_to_nanos("0.0001")


def test_hold_covers_the_worst_case(app):
    # 1000 body bytes -> at most 1000 tokens plus the provider's preamble, at the dearest input
    # rate (1-hour cache writes), plus the output allowance capped at the model's maximum.
    with app.app_context():
        haiku = catalog().resolve("claude-haiku-4-5")
    bound = bounds.anthropic_messages({"max_tokens": 99_000, "messages": []}, 1000, haiku)
    assert bound.nanos(haiku) == (1000 + bounds.OVERHEAD_TOKENS) * 2000 + 64_000 * 5000


def test_settlement_happens_exactly_once(app, wallets):
    user_id = wallets.user("1")
    key_id = _key_id(app, wallets.key(user_id))
    with app.app_context():
        model = catalog().resolve("claude-haiku-4-5")
        billing.reserve(user_id, "req_once", 10_000_000)
        db.session.commit()
        charge = billing.Charge(request_id="req_once", user_id=user_id, api_key_id=key_id,
                                model=model.id, usage=Usage(10, 10), price=model.price,
                                status="complete", started_at=utcnow(), hold_nanos=10_000_000)
        assert billing.settle(charge) == 10 * 1000 + 10 * 5000
        assert billing.settle(charge) is None
        billing.release("req_once", user_id)
    assert len(wallets.charges(user_id)) == 1
    wallets.assert_consistent(user_id)


def _key_id(app, secret: str) -> int:
    with app.app_context():
        return db.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(secret)))


def test_cli_credit_and_balance_are_exact(runner, wallets):
    user_id = wallets.user("0", email="cli@example.com")
    assert runner.invoke(args=["credit", "cli@example.com", "0.000000150"]).exit_code == 0
    assert runner.invoke(args=["credit", "cli@example.com", "12.345678751", "--note", "x"]).exit_code == 0
    assert runner.invoke(args=["balance", "cli@example.com"]).output.strip() == "$12.345678901"
    assert runner.invoke(args=["credit", "cli@example.com", "1.0000000001"]).exit_code != 0
    key = runner.invoke(args=["create-key", "cli@example.com", "--name", "ci", "--rpm", "5"]).output
    assert key.strip().startswith("pg-") and len(key.strip()) == 67 and key.count("\n") == 1
    wallets.assert_consistent(user_id)


def test_concurrent_burst_overdraft_stays_within_one_hold(app, live_server, wallets, fake_upstream):
    """50 requests at once from a wallet that covers about 10 of them."""
    usage = message("ok", model="claude-haiku-4-5-20251001", input_tokens=20, output_tokens=1000)
    fake_upstream.default = lambda req: _slow_json(usage)
    body = {"model": "claude-haiku-4-5", "max_tokens": 1000,
            "messages": [{"role": "user", "content": "write a long answer"}]}
    cost = 20 * 1000 + 1000 * 5000
    hold = (len(json.dumps(body)) + bounds.OVERHEAD_TOKENS) * 2000 + 1000 * 5000
    funds = 10 * cost + cost // 2
    user_id = wallets.user(format_usd(funds, exact=True, grouping=False))
    key = wallets.key(user_id)

    def call(_: int) -> int:
        return requests.post(f"{live_server}/v1/messages", json=body, timeout=30,
                             headers={"x-api-key": key}).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(call, range(50)))

    ok = statuses.count(200)
    assert statuses.count(402) == 50 - ok
    wallets.wait_settled(user_id)
    charges = wallets.charges(user_id)
    assert len(charges) == ok == len(fake_upstream.requests)
    assert len({c.request_id for c in charges}) == ok
    assert all(c.amount_nanos == -cost for c in charges)
    # At least as many as the funds cover at their worst case run at once; never more than the
    # funds cover at their real cost plus the one that takes the wallet below zero.
    assert funds // hold <= ok <= funds // cost + 1
    balance = wallets.balance(user_id)
    assert balance > -hold, f"overdraft {balance} beyond one hold {hold}"
    wallets.assert_consistent(user_id)


def _slow_json(body: dict):
    time.sleep(0.3)
    return json_response(body)


def test_client_disconnect_charges_what_was_seen_once(app, sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    msg = message(" ".join(["word"] * 40), input_tokens=50, output_tokens=80)
    fake_upstream.stream(stream_events(msg), delay=0.05)
    client = sdk(key)
    with client.messages.stream(model="claude-opus-4-8", max_tokens=500,
                                messages=[{"role": "user", "content": "talk"}]) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break  # closing the stream here disconnects from PageGrid
    [charge] = wallets.charges(user_id)
    assert charge.status == "client_aborted"
    assert charge.input_tokens == 50
    assert 1 <= charge.output_tokens < 80
    assert charge.amount_nanos == -(50 * 5000 + charge.output_tokens * 25000)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Hold)) == 0
    wallets.assert_consistent(user_id)


def test_live_disconnect_closes_upstream_and_settles(app, live_server, funded, wallets, fake_upstream):
    """Over a real socket: the client hangs up after the first event."""
    user_id, key = funded
    fake_upstream.stream(stream_events(message(" ".join(["w"] * 100), input_tokens=9)), delay=0.02)
    body = {"model": "claude-haiku-4-5", "max_tokens": 500, "stream": True,
            "messages": [{"role": "user", "content": "go"}]}
    response = requests.post(f"{live_server}/v1/messages", json=body, stream=True,
                             headers={"x-api-key": key}, timeout=10)
    first = next(response.iter_lines())
    assert first == b"event: message_start"
    response.close()
    wallets.wait_settled(user_id)
    [charge] = wallets.charges(user_id)
    assert charge.status == "client_aborted"
    assert charge.input_tokens == 9
    wallets.assert_consistent(user_id)


def test_hold_blocks_when_balance_is_reserved(client, wallets, fake_upstream):
    user_id = wallets.user("0.01")
    key = wallets.key(user_id)
    started = threading.Event()

    def slow(req):
        started.set()
        time.sleep(0.5)
        return json_response(message(model="claude-opus-4-8"))

    fake_upstream.respond_with(slow)
    big = {"model": "claude-opus-4-8", "max_tokens": 1000,
           "messages": [{"role": "user", "content": "hi"}]}
    worker = threading.Thread(target=lambda: client.post("/v1/messages", json=big,
                                                         headers={"x-api-key": key}))
    worker.start()
    assert started.wait(5)
    second = client.application.test_client().post("/v1/messages", json=big, headers={"x-api-key": key})
    worker.join()
    assert second.status_code == 402
    assert "in progress" in second.json["error"]["message"]
    wallets.assert_consistent(user_id)


def test_client_gone_before_the_first_byte_releases_the_hold(app, funded, wallets, fake_upstream):
    """The server closes the body before taking a single chunk: the stream never starts."""
    user_id, key = funded
    fake_upstream.stream(stream_events(message("never read")))
    environ = EnvironBuilder(
        path="/v1/messages", method="POST", headers={"x-api-key": key},
        json={"model": "claude-haiku-4-5", "max_tokens": 50, "stream": True,
              "messages": [{"role": "user", "content": "hi"}]}).get_environ()
    statuses = []
    body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"]
    body.close()
    assert wallets.charges(user_id) == []
    wallets.assert_consistent(user_id)
