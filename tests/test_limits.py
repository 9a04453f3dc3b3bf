"""Per-key limits: RPM (memory and Redis, across workers), daily requests, monthly tokens."""

from __future__ import annotations

import math
import os
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from datetime import datetime

import anthropic
import pytest
import requests
from sqlalchemy import select

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.models import KeyUsage
from tests.fake_upstream import json_response
from tests.fake_upstream import message
from tests.test_live import start_gunicorn

BODY = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
WINDOW = 2
REDIS_URL = os.environ.get("PAGEGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def short_window(app):
    app.config["PAGEGRID_RPM_WINDOW_SECONDS"] = WINDOW
    return app


def post(client, key, body=BODY, path="/v1/messages"):
    return client.post(path, json=body, headers={"x-api-key": key})


def test_rpm_burst_admits_exactly_the_limit(short_window, client, wallets, fake_upstream):
    user_id = wallets.user("1")
    key = wallets.key(user_id, rpm=5)
    responses = [post(client, key) for _ in range(12)]

    assert [r.status_code for r in responses] == [200] * 5 + [429] * 7
    refused = responses[5]
    assert refused.json["error"]["type"] == "rate_limit_error"
    assert "5 requests per 2 seconds" in refused.json["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= WINDOW
    assert [r.headers["anthropic-ratelimit-requests-remaining"] for r in responses[:5]] == \
        ["4", "3", "2", "1", "0"]
    assert responses[0].headers["anthropic-ratelimit-requests-limit"] == "5"
    assert "anthropic-ratelimit-requests-reset" in responses[0].headers
    assert len(fake_upstream.requests) == 5
    assert len(wallets.charges(user_id)) == 5

    time.sleep(int(refused.headers["retry-after"]) + 0.1)
    assert post(client, key).status_code == 200
    wallets.assert_consistent(user_id)


def test_rpm_is_per_key(short_window, client, wallets):
    user_id = wallets.user("1")
    first, second = wallets.key(user_id, rpm=1), wallets.key(user_id, rpm=1)
    assert post(client, first).status_code == 200
    assert post(client, first).status_code == 429
    assert post(client, second).status_code == 200


@pytest.mark.live
def test_burst_against_two_gunicorn_workers_sharing_redis(database_url, fake_server, wallets,
                                                         tmp_path):
    user_id = wallets.user("1")
    key = wallets.key(user_id, rpm=5)
    env = {"PAGEGRID_WORKERS": "2", "PAGEGRID_REDIS_URL": REDIS_URL,
           "PAGEGRID_RATELIMIT_PREFIX": f"pagegrid-test-{secrets.token_hex(4)}"}
    with start_gunicorn(database_url, fake_server, tmp_path, env) as url:
        with ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(lambda _: requests.post(
                f"{url}/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=20).status_code,
                range(12)))
        wallets.wait_settled(user_id)
    assert codes.count(200) == 5, codes
    assert codes.count(429) == 7, codes
    assert len(wallets.charges(user_id)) == 5
    wallets.assert_consistent(user_id)


def test_gunicorn_refuses_several_workers_without_redis(database_url, fake_server, tmp_path):
    with pytest.raises(RuntimeError, match="PAGEGRID_REDIS_URL"):
        with start_gunicorn(database_url, fake_server, tmp_path, {"PAGEGRID_WORKERS": "3"}):
            pass


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_daily_limit_resets_at_utc_midnight(client, wallets, monkeypatch, fake_upstream):
    user_id = wallets.user("1")
    key = wallets.key(user_id, daily_request_limit=2)
    monkeypatch.setattr(clock, "now", lambda: at(2026, 11, 25, 23, 59, 58))
    assert [post(client, key).status_code for _ in range(3)] == [200, 200, 429]
    refused = post(client, key)
    assert "Daily request limit" in refused.json["error"]["message"]
    assert refused.headers["retry-after"] == "2"  # two seconds to midnight: worth the wait
    assert len(fake_upstream.requests) == 2

    monkeypatch.setattr(clock, "now", lambda: at(2026, 11, 26, 0, 0, 1))
    assert post(client, key).status_code == 200
    wallets.assert_consistent(user_id)


def test_monthly_tokens_count_settled_usage_including_cache(app, client, wallets, monkeypatch,
                                                             fake_upstream):
    user_id = wallets.user("1")
    key = wallets.key(user_id, monthly_token_limit=100)
    monkeypatch.setattr(clock, "now", lambda: at(2026, 11, 30, 12, 0, 0))
    fake_upstream.reply(message(input_tokens=30, output_tokens=20, cache_write=10, cache_read=50))
    assert post(client, key).status_code == 200  # admitted under the limit, finished over it
    refused = post(client, key)
    assert refused.status_code == 429
    assert "110 of its 100 tokens" in refused.json["error"]["message"]
    assert "resets at 2026-12-01 00:00 UTC" in refused.json["error"]["message"]
    # Twelve hours away: no client should sleep that long before retrying.
    assert "retry-after" not in refused.headers
    assert refused.headers["x-should-retry"] == "false"
    with app.app_context():
        assert db.session.scalar(select(KeyUsage.tokens).where(KeyUsage.period == "2026-11")) == 110
    [charge] = wallets.charges(user_id)
    assert charge.input_tokens + charge.output_tokens + charge.cache_creation_input_tokens \
        + charge.cache_read_input_tokens == 110

    monkeypatch.setattr(clock, "now", lambda: at(2026, 12, 1, 0, 0, 0))
    assert post(client, key).status_code == 200
    wallets.assert_consistent(user_id)


def test_count_tokens_does_not_use_the_request_budget(short_window, live_server, wallets,
                                                      fake_upstream):
    user_id = wallets.user("1")
    key = wallets.key(user_id, rpm=10)
    fake_upstream.default = lambda req: json_response({"input_tokens": 5})
    barrier = threading.Barrier(20)

    def count(_: int) -> int:
        barrier.wait()
        return requests.post(f"{live_server}/v1/v1/messages/count_tokens?beta=true", timeout=20,
                             json={"model": "claude-opus-4-8", "messages": []},
                             headers={"x-api-key": key}).status_code
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(count, range(20)))
    assert codes == [200] * 20
    fake_upstream.reply(message())
    first = requests.post(f"{live_server}/v1/messages", json=BODY, headers={"x-api-key": key}, timeout=20)
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "9"


def test_anthropic_sdk_retries_after_retry_after(short_window, sdk, wallets):
    user_id = wallets.user("1")
    client = sdk(wallets.key(user_id, rpm=1), max_retries=1)
    client.messages.create(**BODY)
    start = time.monotonic()
    reply = client.messages.with_raw_response.create(**BODY)
    assert reply.http_response.status_code == 200
    assert reply.retries_taken == 1
    assert time.monotonic() - start >= 0.5
    wallets.wait_settled(user_id)
    assert len(wallets.charges(user_id)) == 2
    wallets.assert_consistent(user_id)


def test_sdk_without_retries_sees_429(short_window, sdk, wallets):
    client = sdk(wallets.key(wallets.user("1"), rpm=1))
    client.messages.create(**BODY)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(**BODY)
    retry = int(info.value.response.headers["retry-after"])
    assert 1 <= retry <= math.ceil(WINDOW)



def test_limits_are_editable_without_changing_the_key(short_window, client, runner, wallets):
    user_id = wallets.user("1", email="edit@example.com")
    key = wallets.key(user_id, rpm=1)
    listing = runner.invoke(args=["list-keys", "edit@example.com"]).output
    key_id = listing.split("\t")[0]
    assert f"{key[:7]}\u2026{key[-4:]}" in listing and "rpm=1" in listing
    assert post(client, key).status_code == 200
    assert post(client, key).status_code == 429
    result = runner.invoke(args=["set-key-limits", key_id, "--rpm", "50", "--models", "claude-opus-4-8"])
    assert result.exit_code == 0, result.output
    assert post(client, key).status_code == 403  # haiku is no longer allowed
    assert post(client, key, {**BODY, "model": "claude-opus-4-8"}).status_code == 200


@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {**BODY, "model": "gpt-5.4"}),
    ("/v1/chat/completions", {"model": "claude-opus-4-8", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", {"model": "gpt-5.5", "input": "hi"}),
])
def test_allow_list_refuses_other_models_in_every_dialect(client, wallets, fake_upstream, path, body):
    user_id = wallets.user("1")
    key = wallets.key(user_id, allowed_models=["claude-haiku-4-5"])
    response = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    error = response.json["error"]
    assert error["type"] == "permission_error"
    assert fake_upstream.requests == []
    wallets.assert_consistent(user_id)
