"""The customer dashboard over the Flask test client: auth, keys, wallet, usage, security."""

from __future__ import annotations

import csv
import io
import re
import threading

import pytest
from sqlalchemy import select
from sqlalchemy import update

from pagegrid import billing
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import TopUpCode
from pagegrid.models import User
from tests.conftest import PASSWORD
from tests.conftest import Browser
from tests.fake_upstream import message

BODY = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
SECRET = re.compile(r'<code id="secret-value">(pg-[0-9a-f]{64})</code>')


def call(client, key: str) -> int:
    return client.post("/v1/messages", json=BODY, headers={"x-api-key": key}).status_code


@pytest.fixture
def customer(app, wallets, browser):
    """A logged-in customer with $10: (user_id, browser)."""
    user_id = wallets.user("10")
    assert browser.login(wallets.email(user_id)).status_code == 302
    return user_id, browser


def new_key(browser: Browser, name: str = "laptop", **fields) -> str:
    page = browser.post("/keys", {"name": name, "rpm": 60, "daily_request_limit": 0,
                                  "monthly_token_limit": 0, **fields}, token_from="/keys",
                        follow_redirects=True)
    assert page.status_code == 200
    return SECRET.search(page.get_data(as_text=True)).group(1)


def test_login_logout_and_disabled_accounts(app, wallets, browser):
    user_id = wallets.user("1")
    email = wallets.email(user_id)
    assert browser.get("/dashboard").status_code == 302  # to the login page
    bad = browser.login(email, "wrong-password")
    assert b"Wrong email or password" in bad.data
    ok = browser.login(email.upper())
    assert ok.status_code == 302 and ok.headers["Location"] == "/dashboard"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert browser.get("/dashboard").status_code == 200
    assert browser.post("/logout").status_code == 302
    assert browser.get("/dashboard").status_code == 302
    with app.app_context():
        db.session.execute(update(User).where(User.id == user_id).values(active=False))
        db.session.commit()
    assert b"disabled" in browser.login(email).data


def test_open_redirects_are_refused(wallets, browser):
    user_id = wallets.user("1")
    token = browser.csrf()
    response = browser.client.post("/login?next=https://evil.example/x", data={
        "email": wallets.email(user_id), "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/dashboard"


def test_forms_without_csrf_token_are_refused(customer):
    _, browser = customer
    assert browser.client.post("/keys", data={"name": "x", "rpm": 10}).status_code == 400
    assert browser.client.post("/wallet/redeem", data={"code": "PG-1"}).status_code == 400


def test_login_is_rate_limited_per_account(wallets, browser):
    email = wallets.email(wallets.user("1"))
    codes = [browser.login(email, "wrong-password").status_code for _ in range(6)]
    assert codes[:5] == [200] * 5 and codes[5] == 429
    assert browser.login(email).status_code == 429  # even the right password waits


def test_key_is_shown_once_and_works(customer, client, fake_upstream):
    user_id, browser = customer
    secret = new_key(browser, allowed_models=["claude-haiku-4-5-20251001"])
    assert call(client, secret) == 200
    listing = browser.get("/keys").get_data(as_text=True)
    assert secret not in listing  # shown once: the next visit no longer has it
    assert f"{secret[:7]}\u2026{secret[-4:]}" in listing
    assert "claude-haiku-4-5-20251001" in listing
    opus = client.post("/v1/messages", json={**BODY, "model": "claude-opus-4-8"},
                       headers={"x-api-key": secret})
    assert opus.status_code == 403


def test_revoke_and_rotate(app, customer, client):
    _, browser = customer
    secret = new_key(browser)
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.last4 == secret[-4:]))
    rotated = browser.post(f"/keys/{key_id}/rotate", token_from="/keys", follow_redirects=True)
    fresh = SECRET.search(rotated.get_data(as_text=True)).group(1)
    assert fresh != secret
    assert call(client, secret) == 401
    assert call(client, fresh) == 200
    with app.app_context():
        assert db.session.get(ApiKey, key_id).rpm == 60  # same settings
    assert browser.post(f"/keys/{key_id}/revoke", token_from="/keys").status_code == 302
    assert call(client, fresh) == 401


def test_edit_limits_keeps_the_key(app, customer, client):
    _, browser = customer
    secret = new_key(browser)
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.last4 == secret[-4:]))
    response = browser.post(f"/keys/{key_id}/edit", {"rpm": 7, "daily_request_limit": 3,
                                                     "monthly_token_limit": 1000},
                            token_from=f"/keys/{key_id}/edit")
    assert response.status_code == 302
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        assert (key.rpm, key.daily_request_limit, key.monthly_token_limit) == (7, 3, 1000)
    assert call(client, secret) == 200


def test_users_touch_only_their_own_keys_and_ledger(app, wallets, customer, client):
    _, browser = customer
    other = wallets.user("5")
    other_key = wallets.key(other)
    assert call(client, other_key) == 200
    with app.app_context():
        other_key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == other))
    for path in (f"/keys/{other_key_id}/revoke", f"/keys/{other_key_id}/rotate"):
        assert browser.post(path, token_from="/keys").status_code == 404
    assert browser.get(f"/keys/{other_key_id}/edit").status_code == 404
    assert call(client, other_key) == 200  # untouched
    wallet = browser.get(f"/wallet?key={other_key_id}").get_data(as_text=True)
    assert all(charge.request_id not in wallet for charge in wallets.charges(other))
    export = browser.get(f"/wallet/transactions.csv?key={other_key_id}").get_data(as_text=True)
    assert len(export.strip().splitlines()) == 2  # header + this user's own top-up, never B's rows
    assert "test funds" in export


def test_user_supplied_text_is_escaped(customer):
    _, browser = customer
    new_key(browser, name="<script>alert(1)</script>")
    page = browser.get("/keys").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_csv_export_has_the_full_breakdown(customer, client, fake_upstream):
    user_id, browser = customer
    secret = new_key(browser, name="ci")
    fake_upstream.reply(message(input_tokens=11, output_tokens=7, cache_write=5, cache_read=3,
                                model="claude-haiku-4-5-20251001"))
    assert call(client, secret) == 200
    rows = list(csv.DictReader(io.StringIO(browser.get("/wallet/transactions.csv").get_data(as_text=True))))
    usage = next(r for r in rows if r["kind"] == "usage")
    assert (usage["input_tokens"], usage["output_tokens"], usage["cache_write_tokens"],
            usage["cache_read_tokens"]) == ("11", "7", "5", "3")
    assert usage["amount_usd"] == "-0.000052550"  # 11*1000 + 7*5000 + 5*1250 + 3*100 nano-USD
    assert usage["key"].startswith("ci (pg-")
    assert usage["model"] == "claude-haiku-4-5-20251001"
    only_usage = browser.get("/wallet/transactions.csv?model=claude-haiku-4-5-20251001").get_data(
        as_text=True)
    assert len(only_usage.strip().splitlines()) == 2


def test_top_up_code_is_single_use_under_concurrent_redemption(app, wallets):
    users = [wallets.user("0"), wallets.user("0")]
    with app.app_context():
        _, code = billing.create_topup_code(billing.usd_to_nanos("7.50"), note="promo")
    browsers = []
    for user_id in users:
        b = Browser(app)
        b.login(wallets.email(user_id))
        browsers.append((b, b.csrf("/wallet")))
    barrier = threading.Barrier(2)
    results = []

    def redeem(pair):
        b, token = pair
        barrier.wait()
        results.append(b.client.post("/wallet/redeem", data={"code": code, "csrf_token": token},
                                     follow_redirects=True).get_data(as_text=True))

    threads = [threading.Thread(target=redeem, args=(p,)) for p in browsers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum("Added $7.50" in r for r in results) == 1
    assert sum("already used" in r for r in results) == 1
    assert sorted(wallets.balance(u) for u in users) == [0, 7_500_000_000]
    for user_id in users:
        wallets.assert_consistent(user_id)
    with app.app_context():
        row = db.session.scalar(select(TopUpCode))
        assert row.code_hash != code and row.redeemed_by in users


def test_usage_page_totals_match_the_ledger(customer, client, fake_upstream):
    user_id, browser = customer
    secret = new_key(browser)
    for tokens in (10, 20, 30):
        fake_upstream.reply(message(input_tokens=tokens, output_tokens=tokens,
                                    model="claude-haiku-4-5-20251001"))
        assert call(client, secret) == 200
    page = browser.get("/usage").get_data(as_text=True)
    # 60 input + 60 output tokens: 60*1000 + 60*5000 = 360000 nano-USD
    assert 'id="total-tokens">120<' in page
    assert 'id="total-requests">3<' in page
    assert 'title="$0.000360000"' in page
    assert "<svg" in page and "claude-haiku-4-5-20251001" in page


def test_password_change(customer, wallets):
    user_id, browser = customer
    response = browser.post("/account/password", {"current": PASSWORD, "new": "a-new-password-1",
                                                   "confirm": "a-new-password-1"},
                            token_from="/account/password")
    assert response.status_code == 302
    browser.post("/logout")
    assert browser.login(wallets.email(user_id), "a-new-password-1").status_code == 302


@pytest.mark.parametrize("path", ["/dashboard", "/keys", "/wallet", "/usage"])
def test_pages_need_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_friendly_error_pages(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert b"<html" in response.data and b"Traceback" not in response.data
