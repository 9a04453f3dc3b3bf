"""Upstream accounts as a pool: failover before the first byte, health, stickiness, caps.

Three fake provider accounts on loopback (a, b, c) plus the environment account (the default
fake, priority -1). Accounts are added through the CLI, as an operator would.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from werkzeug.wrappers import Response

from pagegrid import clock
from pagegrid import create_app
from pagegrid.extensions import db
from pagegrid.models import LedgerEntry
from pagegrid.models import Upstream
from pagegrid.pool import conversation_id
from pagegrid.pool import pool
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream import message
from tests.fake_upstream import serve
from tests.fake_upstream import sse
from tests.fake_upstream import stream_events
from tests.serving import free_port
from tests.test_limits import REDIS_URL
from tests.test_live import start_gunicorn

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"  # copied from shared/clients
BODY = {"model": "claude-sonnet-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="session")
def fake_accounts():
    fakes = [FakeUpstream() for _ in range(3)]
    servers = [serve(fake) for fake in fakes]
    yield fakes
    for server in servers:
        server.shutdown()


@pytest.fixture
def accounts(fake_accounts, app, runner):
    """Accounts a, b, c (priorities 3, 2, 1 unless a test re-weighs them) on three fakes."""
    for name, fake, priority in zip("abc", fake_accounts, (3, 2, 1), strict=True):
        fake.reset()
        result = runner.invoke(args=["add-upstream", "anthropic", fake.url, "--key", f"sk-{name}",
                                     "--name", name, "--priority", str(priority)])
        assert result.exit_code == 0, result.output
    return dict(zip("abc", fake_accounts, strict=True))


def _status_lines(runner) -> dict[str, str]:
    result = runner.invoke(args=["list-upstreams"])
    assert result.exit_code == 0, result.output
    return {line.split("\t")[0]: line for line in result.output.splitlines()}


def _post(client, key: str, body: dict | None = None, **headers):
    return client.post("/v1/messages", json=body or BODY, headers={"x-api-key": key, **headers})


def _text(response) -> str:
    """The answer's text, streamed or not."""
    if response.mimetype != "text/event-stream":
        return "".join(block["text"] for block in response.json["content"])
    texts = []
    for line in response.get_data(as_text=True).splitlines():
        if line.startswith("data: "):
            data = json.loads(line[6:])
            if data.get("type") == "content_block_delta":
                texts.append(data["delta"].get("text", ""))
    return "".join(texts)


def _charged_once(wallets, user_id: int, upstream: str, attempts: int) -> LedgerEntry:
    charges = wallets.charges(user_id)
    assert len(charges) == 1, charges
    assert (charges[0].upstream, charges[0].attempts) == (upstream, attempts)
    wallets.assert_consistent(user_id)
    return charges[0]


@pytest.mark.parametrize("stream", [False, True])
def test_a_529_fails_over_to_the_next_account_and_cools_the_first(client, runner, accounts, funded,
                                                                  wallets, stream):
    user_id, key = funded
    accounts["a"].error(529, "overloaded_error", "Overloaded")
    if stream:
        accounts["b"].stream(stream_events(message("from b", model="claude-sonnet-4-6")))
    else:
        accounts["b"].reply(message("from b", model="claude-sonnet-4-6"))
    response = _post(client, key, {**BODY, "stream": stream})
    assert response.status_code == 200, response.data
    assert _text(response) == "from b"
    assert [len(f.requests) for f in accounts.values()] == [1, 1, 0]
    # The same request went to both: the second account got the client's own body.
    assert accounts["a"].requests[0].body == accounts["b"].requests[0].body
    assert accounts["b"].requests[0].headers["X-Api-Key"] == "sk-b"
    charge = _charged_once(wallets, user_id, "b", 2)
    assert charge.request_id == response.headers["request-id"]
    line = _status_lines(runner)["a"]
    assert "cooling until" in line and "HTTP 529" in line
    scraped = client.get("/metrics").get_data(as_text=True)  # the attempts, by account and outcome
    assert 'pagegrid_upstream_attempts_total{account="a",outcome="529"}' in scraped
    assert 'pagegrid_upstream_attempts_total{account="b",outcome="ok"}' in scraped
    # While it cools, a is not tried.
    _post(client, key)
    assert len(accounts["a"].requests) == 1 and len(accounts["b"].requests) == 2


def test_a_connect_error_fails_over(client, runner, accounts, funded, wallets, app):
    user_id, key = funded
    runner.invoke(args=["add-upstream", "anthropic", f"http://127.0.0.1:{free_port()}", "--key", "sk-dead",
                        "--name", "dead", "--priority", "9"])
    response = _post(client, key)
    assert response.status_code == 200, response.data
    assert [len(f.requests) for f in accounts.values()] == [1, 0, 0]
    _charged_once(wallets, user_id, "a", 2)
    assert "cooling until" in _status_lines(runner)["dead"]


def test_a_429_cools_for_the_providers_retry_after(client, runner, accounts, funded, wallets, app):
    user_id, key = funded
    accounts["a"].error(429, "rate_limit_error", "slow down", headers={"retry-after": "120"})
    before = time.time()
    assert _post(client, key).status_code == 200
    _charged_once(wallets, user_id, "b", 2)
    status = pool(app).statuses()["a"]
    assert status.state == "cooling" and 119 <= status.until - before <= 122
    assert "HTTP 429" in _status_lines(runner)["a"]


def test_repeated_5xx_cools_longer_each_time(client, accounts, funded, app, monkeypatch):
    _, key = funded
    now = clock.now()
    cooldowns = []
    for i in range(4):
        monkeypatch.setattr(clock, "now", lambda at=now: at)
        accounts["a"].error(500, "api_error", "boom")
        fresh = {**BODY, "messages": [{"role": "user", "content": f"q{i}"}]}  # not sticky to b
        assert _post(client, key, fresh).status_code == 200
        cooldowns.append(round(pool(app).statuses()["a"].until - now.timestamp()))
        now += timedelta(seconds=cooldowns[-1] + 1)  # a is tried again once it has cooled
    assert cooldowns == [5, 10, 20, 40], [len(f.requests) for f in accounts.values()]
    assert len(accounts["a"].requests) == 4


def test_a_stream_whose_first_event_is_an_error_fails_over(client, runner, accounts, funded, wallets):
    user_id, key = funded
    accounts["a"].stream([sse({"type": "error", "error": {"type": "overloaded_error",
                                                           "message": "Overloaded"}})])
    accounts["b"].stream(stream_events(message("streamed by b", model="claude-sonnet-4-6")))
    response = _post(client, key, {**BODY, "stream": True})
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and "overloaded" not in text.lower()
    assert "streamed" in text and text.rstrip().endswith('{"type": "message_stop"}')
    _charged_once(wallets, user_id, "b", 2)
    assert "stream began with overloaded_error" in _status_lines(runner)["a"]


def test_a_401_disables_the_account_with_its_reason_until_the_operator_enables_it(
        client, runner, accounts, funded, wallets, app):
    user_id, key = funded
    accounts["a"].error(401, "authentication_error", "invalid x-api-key")
    assert _post(client, key).status_code == 200
    _charged_once(wallets, user_id, "b", 2)
    line = _status_lines(runner)["a"]
    assert "disabled: credentials rejected, HTTP 401, at 20" in line
    for _ in range(3):
        _post(client, key)
    assert len(accounts["a"].requests) == 1  # never tried again
    # Another process (its own pool, same database) sees it too, and so does the admin.
    other = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"], "TESTING": True})
    with other.app_context():
        assert "a" not in {a.name for a in pool(other).accounts()}
        db.session.remove()
        db.engine.dispose()
    result = runner.invoke(args=["set-upstream", "a", "--enable"])
    assert result.exit_code == 0 and result.output.rstrip().endswith("healthy")
    _post(client, key, {**BODY, "messages": [{"role": "user", "content": "a new conversation"}]})
    assert len(accounts["a"].requests) == 2


@pytest.mark.parametrize("status", [400, 404, 413])
def test_the_clients_own_mistakes_are_not_retried(client, accounts, funded, wallets, status):
    user_id, key = funded
    accounts["a"].error(status, "invalid_request_error", "your request is wrong")
    response = _post(client, key)
    assert response.status_code == status
    assert response.json["error"]["message"] == "your request is wrong"
    assert [len(f.requests) for f in accounts.values()] == [1, 0, 0]
    assert wallets.charges(user_id) == []
    wallets.assert_consistent(user_id)


def test_a_stream_cut_after_its_first_event_is_not_retried(client, accounts, funded, wallets):
    user_id, key = funded
    accounts["a"].stream(stream_events(message("a b c d e f", model="claude-sonnet-4-6")), fail_after=3)
    response = _post(client, key, {**BODY, "stream": True})
    assert "event: error" in response.get_data(as_text=True)
    assert [len(f.requests) for f in accounts.values()] == [1, 0, 0]
    charges = wallets.charges(user_id)
    assert [(c.upstream, c.attempts, c.status) for c in charges] == [("a", 1, "upstream_error")]


def test_when_every_attempt_fails_the_client_sees_the_last_error_and_pays_nothing(
        client, accounts, funded, wallets):
    user_id, key = funded
    accounts["a"].error(529, "overloaded_error", "a is overloaded")
    accounts["b"].error(500, "api_error", "b broke")
    accounts["c"].error(503, "overloaded_error", "c is overloaded")
    response = _post(client, key)
    assert response.status_code == 503 and response.json["error"]["message"] == "c is overloaded"
    assert [len(f.requests) for f in accounts.values()] == [1, 1, 1]
    assert wallets.charges(user_id) == []
    wallets.assert_consistent(user_id)
    # All three cool now; the next request still tries them (soonest back first), not the demo.
    accounts["a"].reply(message("a is back", model="claude-sonnet-4-6"))
    assert _post(client, key).status_code == 200


def test_attempts_stop_at_the_configured_number(client, accounts, funded, app):
    _, key = funded
    app.config["PAGEGRID_UPSTREAM_ATTEMPTS"] = 2
    pool(app).attempts = 2
    accounts["a"].error(529, "overloaded_error", "a")
    accounts["b"].error(529, "overloaded_error", "b")
    assert _post(client, key).status_code == 529
    assert [len(f.requests) for f in accounts.values()] == [1, 1, 0]


def test_weights_share_the_traffic_of_one_priority(client, runner, accounts, funded):
    _, key = funded
    for name, weight in (("a", "1"), ("b", "3"), ("c", "0")):
        result = runner.invoke(args=["set-upstream", name, "--priority", "5", "--weight", weight])
        assert result.exit_code == 0
    for i in range(200):  # distinct conversations: no stickiness
        fresh = {**BODY, "messages": [{"role": "user", "content": f"q{i}"}]}
        assert _post(client, key, fresh).status_code == 200
    a, b, c = (len(f.requests) for f in accounts.values())
    assert c == 0 and a + b == 200
    assert 120 <= b <= 180, (a, b)  # 150 expected


def test_a_model_allow_list_keeps_other_models_off_an_account(client, runner, accounts, funded):
    _, key = funded
    runner.invoke(args=["add-upstream", "anthropic", accounts["c"].url, "--key", "sk-opus",
                        "--name", "opus-only", "--priority", "10", "--models", "claude-opus-4-8"])
    _post(client, key)
    _post(client, key, {**BODY, "model": "claude-opus-4-8"})
    assert [r.body["model"] for r in accounts["c"].requests] == ["claude-opus-4-8"]
    assert [r.body["model"] for r in accounts["a"].requests] == ["claude-sonnet-4-6"]


def test_a_concurrency_cap_sends_the_overflow_to_the_next_account(live_server, runner, accounts,
                                                                  funded, wallets):
    user_id, key = funded
    with runner.app.app_context():
        db.session.execute(db.update(Upstream).where(Upstream.name == "a").values(max_concurrency=1))
        db.session.commit()
        pool(runner.app).forget()
    accounts["a"].stream(stream_events(message("slow one", model="claude-sonnet-4-6")), delay=0.3)
    slow = threading.Thread(target=requests.post, args=(f"{live_server}/v1/messages",), kwargs={
        "json": {**BODY, "stream": True}, "headers": {"x-api-key": key}, "timeout": 30})
    slow.start()
    time.sleep(0.5)  # the slow stream holds a's only slot
    other = requests.post(f"{live_server}/v1/messages", headers={"x-api-key": key}, timeout=30,
                          json={**BODY, "messages": [{"role": "user", "content": "another"}]})
    slow.join()
    assert other.status_code == 200
    assert len(accounts["a"].requests) == 1 and len(accounts["b"].requests) == 1
    wallets.wait_settled(user_id)
    # The slot came back: a serves again.
    requests.post(f"{live_server}/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=30)
    assert len(accounts["a"].requests) == 2
    wallets.wait_settled(user_id)
    assert [c.attempts for c in wallets.charges(user_id)] == [1, 1, 1]


# -- sticky conversations ------------------------------------------------------------------------

class CachingProvider:
    """Answers like Anthropic and imitates its prompt cache per account: a prompt whose
    messages start with a prompt this account saw before reads those tokens from the cache."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    @staticmethod
    def _prefix(body: dict, count: int) -> str:
        return hashlib.sha256(json.dumps([body.get("system"), body.get("tools"),
                                          body["messages"][:count]]).encode()).hexdigest()

    def __call__(self, req) -> Response:
        body = json.loads(req.get_data())
        messages = body["messages"]
        tokens = [len(json.dumps(m)) // 4 + 1 for m in messages]
        base = len(json.dumps([body.get("system"), body.get("tools")])) // 4
        read = 0
        for count in range(len(messages), 0, -1):
            if self._prefix(body, count) in self.seen:
                read = base + sum(tokens[:count])
                break
        total = base + sum(tokens)
        self.seen.add(self._prefix(body, len(messages)))
        msg = message("ok", model=body["model"], input_tokens=3, cache_write=max(total - read - 3, 0),
                      cache_read=read)
        if body.get("stream"):
            return Response((sse(e) for e in stream_events(msg)), mimetype="text/event-stream")
        return Response(json.dumps(msg), mimetype="application/json")


def claude_code_turns(turns: int) -> tuple[dict, list[dict]]:
    """The captured Claude Code request, replayed as a conversation of ``turns`` requests."""
    for line in (CAPTURES / "claude_a1_baseurl_v1.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["method"] == "POST" and record["path"].startswith("/v1/v1/messages?"):
            break
    headers = {k: v for k, v in record["headers"].items()
               if k.lower() in ("anthropic-version", "anthropic-beta", "x-claude-code-session-id", "x-app")}
    first = record["body"]
    bodies, messages = [], list(first["messages"])
    for turn in range(turns):
        bodies.append({**first, "messages": list(messages)})
        messages += [{"role": "assistant", "content": [{"type": "text", "text": f"answer {turn}"}]},
                     {"role": "user", "content": [{"type": "text", "text": f"next question {turn}"}]}]
    return headers, bodies


def cache_read_share(charges: list[LedgerEntry]) -> float:
    reads = sum(c.cache_read_input_tokens for c in charges)
    return reads / sum(c.input_tokens + c.cache_creation_input_tokens + c.cache_read_input_tokens
                       for c in charges)


def test_a_20_turn_claude_code_conversation_stays_on_one_account(client, runner, accounts, funded,
                                                                 wallets, browser):
    user_id, key = funded
    for name, fake in accounts.items():
        runner.invoke(args=["set-upstream", name, "--priority", "0", "--weight", "1"])
        fake.default = CachingProvider()
    headers, bodies = claude_code_turns(20)
    for body in bodies:
        response = client.post("/v1/v1/messages?beta=true", json={**body, "model": "claude-sonnet-4-6"},
                               headers={**headers, "x-api-key": key})
        assert response.status_code == 200, response.data
    counts = sorted(len(f.requests) for f in accounts.values())
    assert counts == [0, 0, 20]
    charges = wallets.charges(user_id)
    assert len({c.upstream for c in charges}) == 1
    assert all(c.attempts == 1 for c in charges)
    share = cache_read_share(charges)
    assert share > 0.9, share
    # The customer sees the share per key (and the admin per account).
    assert browser.login(wallets.email(user_id)).status_code == 302
    assert f"{share * 100:.1f} %" in browser.get("/usage").get_data(as_text=True)


def test_a_sticky_conversation_moves_when_its_account_fails_and_stays_moved(client, runner, accounts,
                                                                             funded, wallets):
    user_id, key = funded
    for name in accounts:
        runner.invoke(args=["set-upstream", name, "--priority", "0", "--weight", "1"])
    body = {**BODY, "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s-1"})}}
    _post(client, key, body)
    first = next(n for n, f in accounts.items() if f.requests)
    accounts[first].error(529, "overloaded_error", "Overloaded")
    _post(client, key, body)
    second = wallets.charges(user_id)[-1].upstream
    assert second != first
    with runner.app.app_context():
        pool(runner.app).enable(first)  # healthy again: the conversation stays where it went
    for _ in range(3):
        _post(client, key, body)
    assert {c.upstream for c in wallets.charges(user_id)[2:]} == {second}


@pytest.mark.parametrize(("body", "headers"), [
    ({"prompt_cache_key": "conv-1"}, {}),
    ({"metadata": {"user_id": "user_abc_account_x_session_5e1f"}}, {}),
    ({}, {"session-id": "codex-session-1"}),
    ({"user": "end-user-7"}, {}),
])
def test_client_conversation_markers_win_over_the_content_hash(body, headers):
    one = conversation_id(1, {**BODY, **body, "messages": [{"role": "user", "content": "a"}]}, headers)
    two = conversation_id(1, {**BODY, **body, "messages": [{"role": "user", "content": "b"}]}, headers)
    assert one == two
    assert conversation_id(2, {**BODY, **body}, headers) != conversation_id(1, {**BODY, **body}, headers)
    assert conversation_id(1, {**BODY, "messages": [{"role": "user", "content": "a"}]}, {}) != \
        conversation_id(1, {**BODY, "messages": [{"role": "user", "content": "b"}]}, {})


# -- shared across workers and instances ------------------------------------------------------------

def test_status_and_stickiness_are_shared_by_workers_and_instances_through_redis(
        database_url, fake_server, fake_accounts, app, runner, wallets, tmp_path):
    fakes = dict(zip("abc", fake_accounts, strict=True))
    for name, fake in fakes.items():
        fake.reset()
        runner.invoke(args=["add-upstream", "anthropic", fake.url, "--key", f"sk-{name}",
                            "--name", name, "--priority", "0"])
    user_id = wallets.user("10")
    key = wallets.key(user_id)
    env = {"PAGEGRID_WORKERS": "2", "PAGEGRID_REDIS_URL": REDIS_URL,
           "PAGEGRID_REDIS_PREFIX": f"pagegrid-test-{secrets.token_hex(4)}:"}
    with start_gunicorn(database_url, fake_server, tmp_path, env) as one, \
            start_gunicorn(database_url, fake_server, tmp_path, {**env, "PAGEGRID_WORKERS": "1"}) as two:
        def post(url: str, body: dict) -> requests.Response:
            return requests.post(f"{url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)

        # Stickiness: one conversation over both instances (three workers) stays on one account.
        conversation = {**BODY, "metadata": {"user_id": "user_x_account_y_session_shared-1"}}
        for turn in range(12):
            assert post((one, two)[turn % 2], conversation).status_code == 200
        used = [name for name, fake in fakes.items() if fake.requests]
        assert len(used) == 1 and len(fakes[used[0]].requests) == 12
        # Health: the sticky account overloads once on instance one ...
        sticky = fakes[used[0]]
        sticky.default = lambda req: Response(json.dumps(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            status=529, mimetype="application/json")
        assert post(one, conversation).status_code == 200
        assert len(sticky.requests) == 13
        time.sleep(1.2)  # every worker re-reads the shared status within a second
        # ... and instance two never tries it while it cools.
        threads = [threading.Thread(target=post, args=(two, {**BODY, "messages": [
            {"role": "user", "content": f"other {i}"}]})) for i in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(sticky.requests) == 13
        wallets.wait_settled(user_id)
    charges = wallets.charges(user_id)
    assert len(charges) == 23 and [c.attempts for c in charges].count(2) == 1
    wallets.assert_consistent(user_id)


# -- the admin pages --------------------------------------------------------------------------------

def test_the_admin_adds_orders_and_sees_the_status_of_accounts(client, runner, accounts, funded, wallets,
                                                               browser):
    wallets.user("0", email="root@example.com", admin=True)
    assert browser.login("root@example.com").status_code == 302
    form = {"provider": "anthropic", "name": "fast", "base_url": accounts["c"].url, "api_key": "sk-fast",
            "priority": "7", "weight": "2", "models": "claude-sonnet-4-6, claude-opus-4-8",
            "max_concurrency": "4", "enabled": "y"}
    created = browser.post("/admin/upstreams/new", form, token_from="/admin/upstreams/new")
    assert created.status_code == 302, created.get_data(as_text=True)
    line = _status_lines(runner)["fast"]
    assert "priority=7\tweight=2\tmax_concurrency=4\tclaude-sonnet-4-6,claude-opus-4-8\thealthy" in line
    _, key = funded
    assert _post(client, key).status_code == 200
    assert len(accounts["c"].requests) == 1  # the new top priority takes the traffic at once
    # Refusals are messages on the form, never a 500.
    for bad in ({"weight": "-1"}, {"name": "a"}, {"name": "env-anthropic"}, {"priority": "x"},
                {"max_concurrency": "0"}, {"name": "has space"}):
        page = browser.post("/admin/upstreams/new", {**form, **bad}, token_from="/admin/upstreams/new")
        refused = page.get_data(as_text=True)
        assert page.status_code == 200 and 'class="help" style="color:var(--bad)"' in refused, bad
    missing = browser.post("/admin/upstreams/new", {"provider": "anthropic"},
                           token_from="/admin/upstreams/new")
    assert missing.status_code == 200
    # A rejected key shows its reason; enabling it from the page clears it.
    accounts["c"].error(403, "permission_error", "key revoked")
    assert _post(client, key, {**BODY, "messages": [{"role": "user", "content": "new"}]}).status_code == 200
    listing = browser.get("/admin/upstreams").get_data(as_text=True)
    assert "credentials rejected, HTTP 403" in listing and "sk-fast" not in listing
    assert browser.post("/admin/upstreams/fast/enable", token_from="/admin/upstreams").status_code == 302
    assert "fast\tanthropic\tpriority=7" in _status_lines(runner)["fast"] and \
        _status_lines(runner)["fast"].endswith("healthy")
    # The environment account can be taken out of the pool and put back too.
    def act(path: str) -> int:
        return browser.post(path, token_from="/admin/upstreams").status_code

    assert act("/admin/upstreams/env-anthropic/disable") == 302
    assert _status_lines(runner)["env-anthropic"].endswith("disabled: disabled by the operator")
    assert act("/admin/upstreams/env-anthropic/enable") == 302
    assert _status_lines(runner)["env-anthropic"].endswith("healthy")
    assert act("/admin/upstreams/nobody/enable") == 404


def test_token_counting_fails_over_too_and_stays_free(client, accounts, funded, wallets):
    user_id, key = funded
    accounts["a"].error(529, "overloaded_error", "Overloaded")
    accounts["b"].reply({"input_tokens": 42})
    response = client.post("/v1/messages/count_tokens", headers={"x-api-key": key},
                           json={"model": "claude-sonnet-4-6", "messages": BODY["messages"]})
    assert response.status_code == 200 and response.json == {"input_tokens": 42}
    assert [len(f.requests) for f in accounts.values()] == [1, 1, 0]
    assert wallets.charges(user_id) == []
