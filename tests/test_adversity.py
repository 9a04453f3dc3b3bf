"""Money against hostile customers: holds that bound what the provider bills, the overdraft
policies, per-key concurrency, leases, the settlement journal, and malformed bodies."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from pagegrid import billing
from pagegrid.catalog import catalog
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import Hold
from pagegrid.models import LedgerEntry
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.settlement import Journal
from pagegrid.settlement import settlements
from pagegrid.translate.usage import Usage
from tests.fake_upstream import chat_completion
from tests.fake_upstream import json_response
from tests.fake_upstream import message
from tests.fake_upstream import openai_response
from tests.fake_upstream import sse_response
from tests.fake_upstream import stream_events

HAIKU = "claude-haiku-4-5"


def _sent(req) -> dict:
    return json.loads(req.get_data())


def _bills_document(req):
    # A URL document the body does not contain: the provider bills it as input.
    body = _sent(req)
    return json_response(message(model="claude-haiku-4-5-20251001", input_tokens=190_000,
                                 output_tokens=body["max_tokens"]))


def _bills_web_search(req):
    body = _sent(req)
    uses = body["tools"][0]["max_uses"]
    return json_response(message(model="claude-haiku-4-5-20251001", input_tokens=150_000,
                                 output_tokens=body["max_tokens"],
                                 server_tool_use={"web_search_requests": uses}))


def _bills_n_choices(req):
    body = _sent(req)
    limit = body.get("max_completion_tokens") or body["max_tokens"]
    return json_response(chat_completion(prompt_tokens=40, completion_tokens=body["n"] * limit))


def _bills_stored_conversation(req):
    return json_response(openai_response(input_tokens=1_000_000, output_tokens=20_000))


def _bills_builtin_tools(req):
    body = _sent(req)
    response = openai_response(input_tokens=900_000, output_tokens=1_000)
    response["output"] = [{"type": "web_search_call", "id": f"ws_{i}", "status": "completed"}
                          for i in range(body["max_tool_calls"])] + response["output"]
    return json_response(response)


CASES = {
    "messages-url-document": ("/v1/messages", _bills_document, {
        "model": HAIKU, "max_tokens": 4000, "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "url", "url": "https://example.com/big.pdf"}},
            {"type": "text", "text": "summarise"}]}]}),
    "messages-web-search": ("/v1/messages", _bills_web_search, {
        "model": HAIKU, "max_tokens": 2000, "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "messages": [{"role": "user", "content": "search the web"}]}),
    "chat-n-8": ("/v1/chat/completions", _bills_n_choices, {
        "model": "gpt-5.4", "n": 8, "max_tokens": 8000, "messages": [{"role": "user", "content": "x"}]}),
    "responses-previous-id": ("/v1/responses", _bills_stored_conversation, {
        "model": "gpt-5.4", "previous_response_id": "resp_123", "input": "and then?"}),
    "responses-web-search": ("/v1/responses", _bills_builtin_tools, {
        "model": "gpt-5.4", "tools": [{"type": "web_search"}], "input": "search"}),
}


def _burst(url: str, key: str, body: dict, count: int = 20) -> list[requests.Response]:
    def call(_: int) -> requests.Response:
        return requests.post(url, json=body, timeout=30, headers={"Authorization": f"Bearer {key}"})

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(call, range(count)))


def _ledger(app, user_id: int) -> list[LedgerEntry]:
    with app.app_context():
        return list(db.session.scalars(select(LedgerEntry).where(
            LedgerEntry.user_id == user_id, LedgerEntry.kind == "usage")))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("policy", ["one-hold", "none"])
def test_unbounded_inputs_stay_within_the_overdraft_policy(case, policy, app, live_server, wallets,
                                                          fake_upstream):
    path, bill, body = CASES[case]
    app.config["PAGEGRID_OVERDRAFT"] = policy
    fake_upstream.default = bill
    user_id = wallets.user("0.10")
    replies = _burst(f"{live_server}{path}", wallets.key(user_id), body)
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {200, 402}, statuses
    wallets.wait_settled(user_id)
    charges = _ledger(app, user_id)
    assert len(charges) == statuses.count(200) == len(fake_upstream.requests)
    assert all(not c.over_hold and -c.amount_nanos <= c.hold_nanos for c in charges)
    balance = wallets.balance(user_id)
    if policy == "none":
        # Every one of these holds more than $0.10: nothing runs, nothing is owed.
        assert statuses.count(200) == 0 and balance == 100_000_000
        refusal = replies[0].json()
        text = json.dumps(refusal)
        assert "worst case" in text and "$0.10 is available" in text and "max_tokens" in text
    else:
        assert statuses.count(200) >= 1
        assert balance > -max(c.hold_nanos for c in charges)
    wallets.assert_consistent(user_id)


def test_server_tool_fees_are_charged_and_detailed(app, client, wallets, fake_upstream):
    fake_upstream.default = _bills_web_search
    user_id = wallets.user("20")
    _, _, body = CASES["messages-web-search"]
    reply = client.post("/v1/messages", json=body, headers={"x-api-key": wallets.key(user_id)})
    assert reply.status_code == 200
    assert fake_upstream.requests[-1].body["tools"][0]["max_uses"] == 10
    [charge] = _ledger(app, user_id)
    assert charge.detail == {"server_tools": {"web_search": {"uses": 10, "nanos": 100_000_000}}}
    tokens = 150_000 * 1000 + 2000 * 5000
    assert -charge.amount_nanos == tokens + 100_000_000


def test_a_small_request_under_none_policy_is_admitted_when_covered(app, client, wallets, fake_upstream):
    app.config["PAGEGRID_OVERDRAFT"] = "none"
    fake_upstream.reply(message(model="claude-haiku-4-5-20251001"))
    user_id = wallets.user("0.10")
    body = {"model": HAIKU, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    reply = client.post("/v1/messages", json=body, headers={"x-api-key": wallets.key(user_id)})
    assert reply.status_code == 200


def test_a_charge_above_its_hold_is_flagged_not_hidden(app, wallets, caplog):
    user_id = wallets.user("1")
    key_id = _key_id(app, wallets.key(user_id))
    with app.app_context():
        model = catalog().resolve(HAIKU)
        billing.reserve(user_id, "req_over", 1000, api_key_id=key_id)
        db.session.commit()
        charge = billing.Charge(request_id="req_over", user_id=user_id, api_key_id=key_id,
                                model=model.id, usage=Usage(10, 10), price=model.price,
                                status="complete", started_at=utcnow(), hold_nanos=1000)
        assert billing.settle(charge) == 60_000
    [row] = _ledger(app, user_id)
    assert row.over_hold and row.hold_nanos == 1000
    assert "charge above its hold" in caplog.text
    wallets.assert_consistent(user_id)


def _key_id(app, secret: str) -> int:
    from pagegrid.keys import hash_key
    with app.app_context():
        return db.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(secret)))


# -- concurrency --------------------------------------------------------------------------------

def _slow_message(req):
    time.sleep(0.8)
    return json_response(message(model="claude-haiku-4-5-20251001"))


def test_concurrency_limit_refuses_the_request_beyond_it(app, live_server, wallets, fake_upstream):
    fake_upstream.default = _slow_message
    user_id = wallets.user("10")
    key = wallets.key(user_id, concurrency=2)
    other = wallets.key(wallets.user("10"))
    body = {"model": HAIKU, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    replies = _burst(f"{live_server}/v1/messages", key, body, count=6)
    refused = [r for r in replies if r.status_code == 429]
    assert sorted(r.status_code for r in replies) == [200, 200, 429, 429, 429, 429]
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["type"] == "rate_limit_error"
               and "2 requests in flight" in r.json()["error"]["message"] for r in refused)
    # Another key of another customer is not affected, and the slots come back.
    assert requests.post(f"{live_server}/v1/messages", json=body, timeout=10,
                         headers={"x-api-key": other}).status_code == 200
    assert requests.post(f"{live_server}/v1/messages", json=body, timeout=10,
                         headers={"x-api-key": key}).status_code == 200
    wallets.wait_settled(user_id)
    assert len(_ledger(app, user_id)) == 3


def test_a_disconnected_stream_gives_its_slot_back(app, live_server, wallets, fake_upstream):
    events = stream_events(message(model="claude-haiku-4-5-20251001"))
    fake_upstream.default = lambda req: sse_response(events, delay=0.3)
    user_id = wallets.user("10")
    key = wallets.key(user_id, concurrency=1)
    body = {"model": HAIKU, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with requests.post(f"{live_server}/v1/messages", json=body, stream=True, timeout=10,
                       headers={"x-api-key": key}) as first:
        next(first.iter_content(64))
        second = requests.post(f"{live_server}/v1/messages", json=body, timeout=10,
                               headers={"x-api-key": key})
        assert second.status_code == 429
    wallets.wait_settled(user_id)
    fake_upstream.reply(message(model="claude-haiku-4-5-20251001"))
    assert requests.post(f"{live_server}/v1/messages", json={**body, "stream": False}, timeout=10,
                         headers={"x-api-key": key}).status_code == 200


def test_the_admins_ceiling_bounds_the_customers_key(app, client, wallets, fake_upstream):
    fake_upstream.default = _slow_message
    user_id = wallets.user("10")
    key = wallets.key(user_id, concurrency=50, rpm=1000)
    with app.app_context():
        user = db.session.get(User, user_id)
        user.max_concurrency, user.max_rpm = 1, 2
        db.session.commit()
    body = {"model": HAIKU, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    replies = [client.post("/v1/messages", json=body, headers={"x-api-key": key}) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    assert replies[0].headers["anthropic-ratelimit-requests-limit"] == "2"


# -- leases and the journal ---------------------------------------------------------------------

def test_release_holds_never_frees_a_live_stream(app, live_server, wallets, fake_upstream, runner):
    events = stream_events(message(model="claude-haiku-4-5-20251001", output_tokens=7))
    fake_upstream.default = lambda req: sse_response(events, delay=0.25)
    user_id = wallets.user("10")
    key = wallets.key(user_id)
    body = {"model": HAIKU, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with requests.post(f"{live_server}/v1/messages", json=body, stream=True, timeout=10,
                       headers={"x-api-key": key}) as reply:
        chunks = reply.iter_content(None)
        first = next(chunks)
        result = runner.invoke(args=["release-holds"])
        assert "0 holds with expired leases released" in result.output
        with app.app_context():
            assert db.session.scalar(select(Hold.request_id).where(Hold.user_id == user_id))
        data = first + b"".join(chunks)
    assert b"message_stop" in data
    wallets.wait_settled(user_id)
    [charge] = _ledger(app, user_id)
    assert charge.output_tokens == 7 and charge.status == "complete"


def test_leases_are_renewed_while_a_request_runs(app, wallets, fake_upstream):
    app.config["PAGEGRID_HOLD_LEASE_SECONDS"] = 0.4
    app.extensions["pagegrid.settlements"] = type(settlements(app))(app)
    events = stream_events(message(model="claude-haiku-4-5-20251001"))
    fake_upstream.default = lambda req: sse_response(events, delay=0.3)
    user_id = wallets.user("10")
    key = wallets.key(user_id)
    body = {"model": HAIKU, "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    swept = []
    stop = threading.Event()

    def sweeper() -> None:  # another worker's loop, freeing expired leases all the time
        while not stop.is_set():
            with app.app_context():
                swept.append(billing.release_expired_holds())
            time.sleep(0.05)

    thread = threading.Thread(target=sweeper)
    thread.start()
    try:
        reply = app.test_client().post("/v1/messages", json=body, headers={"x-api-key": key})
        assert b"message_stop" in reply.data  # ~2 s: five times the lease
    finally:
        stop.set()
        thread.join()
    assert sum(swept) == 0
    wallets.wait_settled(user_id)
    assert len(_ledger(app, user_id)) == 1


def test_an_expired_lease_is_released_by_the_sweep(app, wallets, runner):
    user_id = wallets.user("1")
    with app.app_context():
        billing.reserve(user_id, "req_dead_worker", 5000, lease_seconds=-1)
        db.session.commit()
    assert "1 holds with expired leases released" in runner.invoke(args=["release-holds"]).output
    wallets.assert_consistent(user_id)


def test_a_dead_workers_journal_is_charged_exactly_once(app, wallets, runner, tmp_path):
    user_id = wallets.user("1")
    key_id = _key_id(app, wallets.key(user_id))
    with app.app_context():
        model = catalog().resolve(HAIKU)
        billing.reserve(user_id, "req_journaled", 1_000_000, api_key_id=key_id)
        db.session.commit()
    charge = billing.Charge(request_id="req_journaled", user_id=user_id, api_key_id=key_id,
                            model=model.id, usage=Usage(100, 20), price=model.price,
                            status="complete", started_at=utcnow(), hold_nanos=1_000_000)
    journal = Journal(settlements(app).journal.directory)
    journal.append(charge)
    journal.append(charge)  # a retry journaled twice must still charge once
    journal._file.close()  # the worker died: its lock is gone
    result = runner.invoke(args=["settle-pending"])
    assert result.exit_code == 0 and "2 journaled settlements replayed; 0 still failing" in result.output
    assert runner.invoke(args=["settle-pending"]).output.startswith("0 journaled")
    [row] = _ledger(app, user_id)
    assert row.request_id == "req_journaled" and row.amount_nanos == -(100 * 1000 + 20 * 5000)
    wallets.assert_consistent(user_id)


def test_a_live_workers_journal_is_left_to_it(app, wallets, runner):
    journal = settlements(app).journal
    user_id = wallets.user("1")
    key_id = _key_id(app, wallets.key(user_id))
    with app.app_context():
        model = catalog().resolve(HAIKU)
    other = Journal(journal.directory)
    other.append(billing.Charge(request_id="req_live", user_id=user_id, api_key_id=key_id, model=model.id,
                                usage=Usage(1, 1), price=model.price, status="complete",
                                started_at=utcnow()))
    assert runner.invoke(args=["settle-pending"]).output.startswith("0 journaled")
    other._file.close()
    assert runner.invoke(args=["settle-pending"]).output.startswith("1 journaled")
    wallets.assert_consistent(user_id)


# -- malformed bodies ---------------------------------------------------------------------------

MODEL_ROUTES = ["/v1/messages", "/v1/chat/completions", "/v1/responses", "/v1/messages/count_tokens"]


@pytest.mark.parametrize("path", MODEL_ROUTES)
@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"model": "claude-haiku-4-5", "\\udfff": 1}',
    b'{"model": "claude-haiku-4-5", "input": "\xff\xfe"}',
    b'{"model": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
], ids=["deep", "lone-surrogate", "surrogate-key", "invalid-utf8", "deep-object"])
def test_malformed_json_is_a_400_in_the_dialect(path, raw, client, funded, wallets, fake_upstream):
    user_id, key = funded
    reply = client.post(path, data=raw, headers={"x-api-key": key, "content-type": "application/json"})
    assert reply.status_code == 400, reply.data[:300]
    error = reply.json["error"]
    assert error["type"] == "invalid_request_error"
    assert fake_upstream.requests == [] and wallets.charges(user_id) == []
