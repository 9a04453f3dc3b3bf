"""Issue 14 item 6: the Usage page over a chosen range of UTC days and for one key, from the ledger."""

from __future__ import annotations

import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from sqlalchemy import select

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from tests.fake_upstream import message
from tests.test_dashboard import BODY

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HAIKU = "claude-haiku-4-5-20251001"  # $1 in, $5 out per 1M tokens: 1,000 / 5,000 nano-USD a token


@pytest.fixture
def history(app, wallets, sdk, fake_upstream, monkeypatch):
    """A customer with two keys used today, 10 days ago and 40 days ago; another customer's key.

    Returns (user_id, {name: key id}, other user's key id)."""
    user_id = wallets.user("10", email="usage@example.com")
    secrets = {name: wallets.key(user_id, name=name) for name in ("alpha", "beta")}
    calls = [(0, "alpha", 100), (0, "beta", 200), (10, "alpha", 1_000), (40, "beta", 10_000)]
    for days_ago, name, tokens in calls:
        monkeypatch.setattr(clock, "now", lambda d=days_ago: NOW - timedelta(days=d))
        fake_upstream.reply(message(model=HAIKU, input_tokens=tokens, output_tokens=tokens))
        sdk(secrets[name]).messages.create(**BODY)
    monkeypatch.setattr(clock, "now", lambda: NOW)
    other = wallets.user("1")
    wallets.key(other)
    with app.app_context():
        ids = {k.name: k.id for k in db.session.scalars(select(ApiKey).where(ApiKey.user_id == user_id))}
        other_key = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == other))
    wallets.assert_consistent(user_id)
    return user_id, ids, other_key


def _totals(page: str) -> tuple[int, int, str]:
    tokens = int(re.search(r'id="total-tokens">([\d,]+)<', page)[1].replace(",", ""))
    requests = int(re.search(r'id="total-requests">([\d,]+)<', page)[1].replace(",", ""))
    spend = re.search(r'id="total-spend" title="([^"]+)"', page)[1]
    return tokens, requests, spend


def _logged_in(browser):
    assert browser.login("usage@example.com").status_code == 302
    return browser


def _spend(tokens: int) -> int:
    return tokens * 1_000 + tokens * 5_000  # nano-USD of ``tokens`` in and as many out


def test_the_default_is_the_last_30_days(history, browser):
    page = _logged_in(browser).get("/usage").get_data(as_text=True)
    assert _totals(page) == (2 * 1_300, 3, f"${_spend(1_300) / 1e9:.9f}")
    assert "2026-11-07 to 2026-12-06" in page
    assert page.count('<rect class="bar"') == 2 * 30  # two charts


def test_a_range_reaches_older_usage_and_narrows_the_tables(history, browser):
    page = _logged_in(browser).get("/usage?start=2026-10-01&end=2026-11-30").get_data(as_text=True)
    assert _totals(page) == (2 * 11_000, 2, f"${_spend(11_000) / 1e9:.9f}")  # 40 and 10 days ago
    assert page.count('<rect class="bar"') == 2 * 61
    assert 'value="2026-10-01"' in page and 'value="2026-11-30"' in page
    by_key = page.split('id="by-key"', 1)[1].split("</table>", 1)[0]
    assert "alpha (pg-" in by_key and "beta (pg-" in by_key


def test_one_key_only(history, browser):
    _, ids, _ = history
    page = _logged_in(browser).get(f"/usage?key={ids['beta']}").get_data(as_text=True)
    assert _totals(page) == (400, 1, f"${_spend(200) / 1e9:.9f}")
    by_key = page.split('id="by-key"', 1)[1].split("</table>", 1)[0]
    assert "beta (pg-" in by_key and "alpha" not in by_key
    assert f'<option selected value="{ids["beta"]}">' in page
    ranged = browser.get(f"/usage?key={ids['beta']}&start=2026-10-01&end=2026-12-06").get_data(as_text=True)
    assert _totals(ranged)[:2] == (20_400, 2)


@pytest.mark.parametrize("key", ["other", "999999", "abc"])
def test_another_users_or_an_unknown_key_is_404(history, browser, key):
    _, _, other_key = history
    response = _logged_in(browser).get(f"/usage?key={other_key if key == 'other' else key}")
    assert response.status_code == 404


@pytest.mark.parametrize("query, error", [
    ("start=2026-12-01&end=2026-11-01", "is before"),
    ("start=2024-01-01&end=2026-12-06", "at most 366 days"),
    ("start=yesterday", "Not a valid date value"),
])
def test_an_invalid_range_says_so_and_shows_the_default(history, browser, query, error):
    response = _logged_in(browser).get(f"/usage?{query}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and error in page
    assert "2026-11-07 to 2026-12-06" in page and _totals(page)[1] == 3


def test_only_a_start_or_an_end(history, browser):
    page = _logged_in(browser).get("/usage?start=2026-10-27").get_data(as_text=True)
    assert "2026-10-27 to 2026-11-25" in page and _totals(page)[1] == 1  # 40 days ago, 30 days on
    page = browser.get("/usage?end=2026-11-26").get_data(as_text=True)
    assert "2026-10-28 to 2026-11-26" in page and _totals(page)[1] == 1  # 10 days ago
