"""Per-key dollar budgets per UTC day, ISO week, month or all time, and ``GET /v1/key``."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from datetime import datetime

import anthropic
import openai
import pytest
import requests
from sqlalchemy import select

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import KeyUsage
from tests.conftest import Browser
from tests.fake_upstream import json_response
from tests.fake_upstream import message

HAIKU = "claude-haiku-4-5"
# Haiku at $1 / $5 per 1M tokens: 10 input + 5 output tokens cost 35,000 nano-USD.
COST = 35_000
HI = [{"role": "user", "content": "hi"}]


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def budget_key(runner, wallets, usd: str, period: str, balance: str = "10") -> tuple[int, str]:
    """A key with a budget, made by the operator's command."""
    user_id = wallets.user(balance)
    result = runner.invoke(args=["create-key", wallets.email(user_id), "--rpm", "10000",
                                 "--concurrency", "1000", "--budget-usd", usd, "--budget-period", period])
    assert result.exit_code == 0, result.output
    return user_id, result.output.strip()


def call(sdk, key: str) -> None:
    sdk(key).messages.create(model=HAIKU, max_tokens=50, messages=HI)


def test_budget_refuses_the_next_request_once_spent(runner, wallets, sdk, openai_sdk, monkeypatch,
                                                   fake_upstream):
    monkeypatch.setattr(clock, "now", lambda: at(2026, 12, 2, 12, 0, 0))  # a Wednesday
    user_id, key = budget_key(runner, wallets, "0.00006", "day")
    call(sdk, key)
    call(sdk, key)  # 35,000 spent < 60,000: admitted, and it may finish over the budget
    with pytest.raises(anthropic.RateLimitError) as refused:
        call(sdk, key)
    error = refused.value
    assert error.body["error"]["type"] == "rate_limit_error"
    assert "spent $0.000070000 of its $0.000060000 budget this day (UTC)" in error.message
    assert "resets at 2026-12-03 00:00 UTC" in error.message
    assert "retry-after" not in error.response.headers  # hours away: clients must not sleep on it
    assert error.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.RateLimitError) as refused_openai:
        openai_sdk(key).chat.completions.create(model=HAIKU, max_tokens=50, messages=HI)
    assert refused_openai.value.type == "rate_limit_error"
    assert len(fake_upstream.requests) == 2
    assert [c.amount_nanos for c in wallets.charges(user_id)] == [-COST, -COST]

    monkeypatch.setattr(clock, "now", lambda: at(2026, 12, 2, 23, 59, 30))
    with pytest.raises(anthropic.RateLimitError) as soon:
        call(sdk, key)
    assert soon.value.response.headers["retry-after"] == "30"  # worth the wait, like the daily limit
    monkeypatch.setattr(clock, "now", lambda: at(2026, 12, 3, 0, 0, 1))
    call(sdk, key)
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize(("period", "spent_at", "still_refused", "reset_at", "resets"), [
    ("week", at(2026, 12, 6, 10), at(2026, 12, 6, 23), at(2026, 12, 7, 0, 0, 1), "2026-12-07 00:00 UTC"),
    ("month", at(2026, 12, 1, 10), at(2026, 12, 31, 23), at(2027, 1, 1, 0, 0, 1), "2027-01-01 00:00 UTC"),
])
def test_week_and_month_budgets_reset_at_their_utc_boundary(runner, wallets, sdk, monkeypatch,
                                                             period, spent_at, still_refused, reset_at,
                                                             resets):
    monkeypatch.setattr(clock, "now", lambda: spent_at)
    user_id, key = budget_key(runner, wallets, "0.00003", period)
    call(sdk, key)
    monkeypatch.setattr(clock, "now", lambda: still_refused)
    with pytest.raises(anthropic.RateLimitError) as refused:
        call(sdk, key)
    assert f"this {period} (UTC)" in refused.value.message
    assert f"resets at {resets}" in refused.value.message
    monkeypatch.setattr(clock, "now", lambda: reset_at)
    call(sdk, key)
    wallets.assert_consistent(user_id)


def test_total_budget_never_resets(app, runner, wallets, sdk, monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: at(2026, 12, 31, 23, 59, 59))
    user_id, key = budget_key(runner, wallets, "0.00003", "total")
    call(sdk, key)
    monkeypatch.setattr(clock, "now", lambda: at(2027, 3, 1))
    with pytest.raises(anthropic.RateLimitError) as refused:
        call(sdk, key)
    assert "in total" in refused.value.message and "never resets" in refused.value.message
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in refused.value.response.headers
    with app.app_context():
        counters = dict(db.session.execute(select(KeyUsage.period, KeyUsage.spent_nanos)).all())
    assert counters == {"2026-12-31": COST, "2026-W53": COST, "2026-12": COST, "total": COST}

    # Raising the budget lets it spend again, without a new key.
    key_id = wallets_key_id(app, user_id)
    assert runner.invoke(args=["set-key-limits", str(key_id), "--budget-usd", "1"]).exit_code == 0
    call(sdk, key)
    wallets.assert_consistent(user_id)


def wallets_key_id(app, user_id: int) -> int:
    with app.app_context():
        return db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == user_id))


@pytest.mark.parametrize("overdraft", ["one-hold", "none"])
def test_concurrent_requests_overshoot_by_at_most_one_hold(app, runner, live_server, wallets,
                                                          fake_upstream, overdraft):
    app.config["PAGEGRID_OVERDRAFT"] = overdraft

    def slow(req):
        time.sleep(0.2)  # long enough for the other threads' requests to be admitted meanwhile
        # The provider bills about half of what the hold allows, so an overshoot would show.
        return json_response(message(model=HAIKU, input_tokens=4_000, output_tokens=50))

    fake_upstream.default = slow
    user_id, key = budget_key(runner, wallets, "0.03", "day")

    def post(_: int) -> requests.Response:
        return requests.post(f"{live_server}/v1/messages", headers={"x-api-key": key}, timeout=30,
                             json={"model": HAIKU, "max_tokens": 50, "messages": HI})

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, range(24)))
    wallets.wait_settled(user_id)
    codes = [a.status_code for a in answers]
    assert set(codes) == {200, 429}, codes
    assert all(a.json()["error"]["type"] == "rate_limit_error" for a in answers if a.status_code == 429)
    charges = wallets.charges(user_id)
    spent = -sum(c.amount_nanos for c in charges)
    hold = max(c.hold_nanos for c in charges)
    assert len(charges) == codes.count(200) >= 2
    budget = 30_000_000
    assert spent <= budget + (hold if overdraft == "one-hold" else 0)
    with app.app_context():
        counted = db.session.scalar(select(KeyUsage.spent_nanos).where(KeyUsage.period == "total"))
    assert counted == spent
    wallets.assert_consistent(user_id)


def test_key_reports_limits_usage_budget_and_wallet(app, runner, wallets, sdk, openai_sdk, monkeypatch,
                                                   fake_upstream):
    monkeypatch.setattr(clock, "now", lambda: at(2026, 12, 2, 12, 0, 0))
    user_id = wallets.user("10")
    assert runner.invoke(args=["create-group", "vip", "--multiplier", "1.25"]).exit_code == 0
    assert runner.invoke(args=["set-user-group", wallets.email(user_id), "vip"]).exit_code == 0
    key = runner.invoke(args=["create-key", wallets.email(user_id), "--name", "ci", "--rpm", "7",
                              "--concurrency", "3", "--daily-limit", "100", "--monthly-token-limit",
                              "5000", "--budget-usd", "1", "--budget-period", "week"]).output.strip()
    fake_upstream.reply(message(model=HAIKU, input_tokens=7, output_tokens=3))
    call(sdk, key)
    spent = 27_500  # (7 x 1,000 + 3 x 5,000) x 1.25

    info = sdk(key).get("/v1/key", cast_to=object)
    assert info == openai_sdk(key).get("/key", cast_to=object)  # Bearer, as the OpenAI SDK sends it
    assert info["name"] == "ci" and info["key"].startswith("pg-")
    assert info["price_group"] == {"name": "vip", "multiplier": "1.25"}
    assert info["limits"] == {"requests_per_minute": 7, "concurrency": 3, "requests_per_day": 100,
                              "tokens_per_month": 5000, "models": None, "allowed_ips": None}
    assert info["usage"]["requests_today"] == 1
    assert info["usage"]["in_flight"] == 0
    assert info["usage"]["tokens"] == {"day": 10, "week": 10, "month": 10, "total": 10}
    assert info["usage"]["spent"]["week"] == {"nanos": spent, "usd": "0.000027500"}
    assert info["usage"]["resets_at"] == {"day": "2026-12-03T00:00:00Z", "week": "2026-12-07T00:00:00Z",
                                          "month": "2027-01-01T00:00:00Z", "total": None}
    assert info["budget"] == {
        "period": "week", "limit": {"nanos": 10**9, "usd": "1.000000000"},
        "spent": {"nanos": spent, "usd": "0.000027500"}, "held": {"nanos": 0, "usd": "0.000000000"},
        "left": {"nanos": 10**9 - spent, "usd": "0.999972500"}, "resets_at": "2026-12-07T00:00:00Z"}
    assert info["wallet"] == {"balance": {"nanos": 10 * 10**9 - spent, "usd": "9.999972500"},
                              "held": {"nanos": 0, "usd": "0.000000000"},
                              "available": {"nanos": 10 * 10**9 - spent, "usd": "9.999972500"}}
    assert wallets.balance(user_id) == 10 * 10**9 - spent
    wallets.assert_consistent(user_id)


def test_key_errors_follow_the_headers_dialect(client, wallets):
    bad = "pg-" + "0" * 64
    anthropic_style = client.get("/v1/key", headers={"x-api-key": bad})
    assert anthropic_style.status_code == 401
    assert anthropic_style.json["type"] == "error"
    assert anthropic_style.json["error"]["type"] == "authentication_error"
    openai_style = client.get("/v1/key", headers={"Authorization": f"Bearer {bad}"})
    assert openai_style.status_code == 401
    assert openai_style.json["error"]["type"] == "authentication_error"
    assert "type" not in openai_style.json or openai_style.json.get("type") != "error"
    missing = client.get("/key")
    assert missing.status_code == 401 and missing.json["error"]["message"].startswith("Missing API key")
    # A key without a budget says so.
    user_id = wallets.user("1")
    info = client.get("/v1/key", headers={"x-api-key": wallets.key(user_id)}).json
    assert info["budget"] is None and info["price_group"] is None
    # The dashboard's /keys stays the dashboard's.
    assert client.get("/keys").status_code in (302, 401)


@pytest.mark.parametrize(("usd", "period"), [("-1", "day"), ("abc", "day"), ("1.0000000001", "week"),
                                             ("1", "year")])
def test_create_key_refuses_bad_budgets(runner, wallets, usd, period):
    user_id = wallets.user("1")
    result = runner.invoke(args=["create-key", wallets.email(user_id), "--budget-usd", usd,
                                 "--budget-period", period])
    assert result.exit_code == 2
    assert "pg-" not in result.output


def test_dashboard_sets_and_edits_a_keys_budget(app, browser, wallets, sdk):
    user_id = wallets.user("5")
    browser.login(wallets.email(user_id))
    base = {"name": "budgeted", "rpm": 60, "concurrency": 4, "daily_request_limit": 0,
            "monthly_token_limit": 0}
    refused = browser.post("/keys", {**base, "budget_nanos": "-3", "budget_period": "week"},
                           token_from="/keys")
    assert refused.status_code == 200 and "A budget is not negative." in refused.get_data(as_text=True)
    typo = browser.post("/keys", {**base, "budget_nanos": "2.5.1", "budget_period": "week"},
                        token_from="/keys")
    assert "at most 9 decimals" in typo.get_data(as_text=True)
    made = browser.post("/keys", {**base, "budget_nanos": "2.5", "budget_period": "week"}, token_from="/keys",
                        follow_redirects=True)
    secret = re.search(r"(pg-[0-9a-f]{64})", made.get_data(as_text=True)).group(1)
    assert "$2.50</span> / week" in made.get_data(as_text=True)
    info = sdk(secret).get("/v1/key", cast_to=object)
    assert info["budget"]["limit"] == {"nanos": 2_500_000_000, "usd": "2.500000000"}
    assert info["budget"]["period"] == "week"

    key_id = wallets_key_id(app, user_id)
    form = browser.get(f"/keys/{key_id}/edit").get_data(as_text=True)
    assert 'value="2.5"' in form
    tiny = {**base, "budget_nanos": "0.000000001", "budget_period": "total"}
    saved = browser.post(f"/keys/{key_id}/edit", tiny, token_from=f"/keys/{key_id}/edit")
    assert saved.status_code == 302
    assert sdk(secret).get("/v1/key", cast_to=object)["budget"]["limit"]["nanos"] == 1
    removed = browser.post(f"/keys/{key_id}/edit", {**base, "budget_nanos": "0", "budget_period": "total"},
                           token_from=f"/keys/{key_id}/edit")
    assert removed.status_code == 302
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        assert (key.budget_nanos, key.budget_period) == (None, None)
    # Another user's key is not there to edit.
    stranger = Browser(app)
    stranger.login(wallets.email(wallets.user("1")))
    assert stranger.get(f"/keys/{key_id}/edit").status_code == 404
