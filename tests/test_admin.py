"""The admin console over the Flask test client: access, users and wallets, codes, catalog, upstreams."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.test import TestResponse

from pagegrid import billing
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import CatalogModel
from pagegrid.models import LedgerEntry
from pagegrid.models import TopUpCode
from pagegrid.models import Upstream
from pagegrid.models import User
from tests.conftest import UPSTREAM_KEY
from tests.conftest import Browser
from tests.conftest import Wallets

ADMIN = "root@example.com"
HAIKU = "claude-haiku-4-5-20251001"
BODY = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
CODE = re.compile(r'<code id="code-value">(PG-[0-9A-F-]+)</code>')
XSS = "<script>alert(1)</script>"
HAIKU_FORM = {"display_name": "Claude Haiku 4.5", "upstream_id": HAIKU, "aliases": "claude-haiku-4-5",
              "context_window": "200000", "max_output": "64000", "vision": "y", "tools": "y",
              "thinking": "y", "active": "y", "input": "1", "output": "5", "cache_write": "1.25",
              "cache_write_1h": "2", "cache_read": "0.1"}


def call(client: FlaskClient, key: str) -> int:
    return client.post("/v1/messages", json=BODY, headers={"x-api-key": key}).status_code


def html(response: TestResponse) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def admin(wallets: Wallets, browser: Browser) -> Browser:
    """A logged-in admin's browser."""
    wallets.user("0", email=ADMIN, admin=True)
    assert browser.login(ADMIN).status_code == 302
    return browser


@pytest.fixture
def upstream_id(app: Flask) -> int:
    """A disabled upstream account, so that routing stays on the environment key."""
    with app.app_context():
        row = Upstream(provider="anthropic", name="spare", base_url="http://127.0.0.1:9",
                       api_key="sk-ant-spare-key", enabled=False)
        db.session.add(row)
        db.session.commit()
        return row.id


def admin_requests(app: Flask, user_id: int, upstream_id: int) -> Iterator[tuple[str, str]]:
    """(method, path) for every admin route; fails if a route is added without a case here."""
    paths = {
        "admin.users": [("GET", "/admin/")],
        "admin.overview": [("GET", "/admin/overview")],
        "admin.request_log": [("GET", "/admin/requests")],
        "admin.user_new": [("GET", "/admin/users/new"), ("POST", "/admin/users/new")],
        "admin.user_detail": [("GET", f"/admin/users/{user_id}")],
        "admin.user_active": [("POST", f"/admin/users/{user_id}/disable"),
                              ("POST", f"/admin/users/{user_id}/enable")],
        "admin.user_password": [("POST", f"/admin/users/{user_id}/password")],
        "admin.user_credit": [("POST", f"/admin/users/{user_id}/credit")],
        "admin.user_ceilings": [("POST", f"/admin/users/{user_id}/ceilings")],
        "admin.key_edit": [("GET", "/admin/keys/1/edit"), ("POST", "/admin/keys/1/edit")],
        "admin.key_revoke": [("POST", "/admin/keys/1/revoke")],
        "admin.topup_codes": [("GET", "/admin/topup-codes"), ("POST", "/admin/topup-codes")],
        "admin.models": [("GET", "/admin/models")],
        "admin.model_edit": [("GET", f"/admin/models/{HAIKU}"), ("POST", f"/admin/models/{HAIKU}")],
        "admin.model_new": [("GET", "/admin/models/new"), ("POST", "/admin/models/new")],
        "admin.models_sync": [("POST", "/admin/models/sync")],
        "admin.models_rules": [("GET", "/admin/models/rules"), ("POST", "/admin/models/rules")],
        "admin.models_rule_delete": [("POST", "/admin/models/rules/1/delete")],
        "admin.reconcile_page": [("GET", "/admin/reconcile")],
        "admin.reconcile_csv": [("GET", "/admin/reconcile.csv")],
        "admin.upstreams": [("GET", "/admin/upstreams")],
        "admin.upstream_new": [("GET", "/admin/upstreams/new"), ("POST", "/admin/upstreams/new")],
        "admin.upstream_edit": [("GET", f"/admin/upstreams/{upstream_id}/edit"),
                                ("POST", f"/admin/upstreams/{upstream_id}/edit")],
        "admin.upstream_active": [("POST", "/admin/upstreams/spare/enable"),
                                  ("POST", "/admin/upstreams/spare/disable")],
        "admin.upstream_delete": [("POST", f"/admin/upstreams/{upstream_id}/delete")],
        "admin.audit": [("GET", "/admin/audit")],
        "admin.request_page": [("GET", "/admin/requests/req_x")],
        "admin.user_two_factor_off": [("POST", f"/admin/users/{user_id}/two-factor/off")],
        "admin.groups": [("GET", "/admin/groups"), ("POST", "/admin/groups")],
        "admin.group_edit": [("GET", "/admin/groups/1/edit"), ("POST", "/admin/groups/1/edit")],
        "admin.user_group": [("POST", f"/admin/users/{user_id}/price-group")],
    }
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint.startswith("admin.")}
    assert endpoints == set(paths)
    for requests in paths.values():
        yield from requests


# a form that would change something if it got through
ATTACK = {"email": "intruder@example.com", "password": "long-enough-pw", "admin": "y", "direction": "credit",
          "amount": "100", "note": "free money", "new": "long-enough-pw", "confirm": "long-enough-pw",
          "provider": "anthropic", "name": "evil", "base_url": "https://evil.example", "api_key": "sk-evil",
          **HAIKU_FORM, "input": "0"}


def test_non_admins_get_403_on_every_page_and_post(app, wallets, browser, upstream_id):
    customer = wallets.user("1")
    assert browser.login(wallets.email(customer)).status_code == 302
    for method, path in admin_requests(app, customer, upstream_id):
        if method == "GET":
            assert browser.get(path).status_code == 403, path
        else:
            assert browser.post(path, ATTACK).status_code == 403, path
    assert "Admin" not in html(browser.get("/dashboard"))
    assert wallets.balance(customer) == billing.usd_to_nanos("1")
    with app.app_context():
        assert db.session.get(Upstream, upstream_id) is not None
        assert db.session.scalar(select(func.count()).select_from(Upstream)) == 1
        assert db.session.scalar(select(User.id).where(User.email == "intruder@example.com")) is None
        assert db.session.get(User, customer).active
        assert db.session.get(CatalogModel, HAIKU).input_nanos == 1000


def test_anonymous_users_are_sent_to_login(app, wallets, browser, upstream_id):
    customer = wallets.user("1")
    for method, path in admin_requests(app, customer, upstream_id):
        if method == "GET":
            response = browser.get(path)
        else:
            response = browser.post(path, ATTACK, token_from="/login")
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next="), path


def test_admin_creates_a_user_who_can_log_in(app, admin):
    page = admin.post("/admin/users/new", {"email": " Ada@Example.com ", "password": "quiet-harbor-lamp-9"},
                      token_from="/admin/users/new")
    assert page.status_code == 302
    with app.app_context():
        ada = db.session.scalar(select(User).where(User.email == "ada@example.com"))
        assert ada is not None and not ada.is_admin and ada.active and ada.balance_nanos == 0
    assert page.headers["Location"] == f"/admin/users/{ada.id}"
    assert "ada@example.com" in html(admin.get("/admin/"))
    assert Browser(app).login("ada@example.com", "quiet-harbor-lamp-9").status_code == 302

    again = admin.post("/admin/users/new", {"email": "ADA@example.com", "password": "other-password"},
                       token_from="/admin/users/new")
    assert again.status_code == 200 and "exists already" in html(again)
    short = admin.post("/admin/users/new", {"email": "bo@example.com", "password": "short"},
                       token_from="/admin/users/new")
    assert "at least 12 characters" in html(short)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2


def test_admin_resets_a_password(app, wallets, admin):
    user_id = wallets.user("0")
    email = wallets.email(user_id)
    mismatch = admin.post(f"/admin/users/{user_id}/password", {"new": "new-password-1", "confirm": "x"},
                          token_from=f"/admin/users/{user_id}")
    assert "The passwords differ." in html(mismatch)
    done = admin.post(f"/admin/users/{user_id}/password", {"new": "new-password-1",
                                                           "confirm": "new-password-1"},
                      token_from=f"/admin/users/{user_id}")
    assert done.status_code == 302
    assert Browser(app).login(email).status_code == 200  # the old password no longer works
    assert Browser(app).login(email, "new-password-1").status_code == 302


def test_disable_stops_login_and_keys_and_enable_restores_them(app, client, wallets, admin, fake_upstream):
    user_id = wallets.user("5")
    email = wallets.email(user_id)
    key = wallets.key(user_id)
    session = Browser(app)
    assert session.login(email).status_code == 302
    assert call(client, key) == 200

    detail = f"/admin/users/{user_id}"
    assert admin.post(f"{detail}/disable", token_from=detail).status_code == 302
    assert "disabled" in html(admin.get(detail))
    reply = client.post("/v1/messages", json=BODY, headers={"x-api-key": key})
    assert reply.status_code == 401 and reply.json["error"]["type"] == "authentication_error"
    refused = Browser(app).login(email)
    assert refused.status_code == 200 and "This account is disabled." in html(refused)
    assert session.get("/dashboard").status_code == 302  # an open session ends as well

    assert admin.post(f"{detail}/enable", token_from=detail).status_code == 302
    assert call(client, key) == 200
    assert Browser(app).login(email).status_code == 302
    wallets.assert_consistent(user_id)


def test_admin_cannot_disable_itself(app, admin):
    with app.app_context():
        me = db.session.scalar(select(User.id).where(User.email == ADMIN))
    page = admin.post(f"/admin/users/{me}/disable", token_from="/admin/", follow_redirects=True)
    assert "You cannot disable your own account." in html(page)
    assert admin.get("/admin/").status_code == 200


def test_credit_and_debit_are_exact_ledger_rows(app, wallets, admin):
    user_id = wallets.user("0")
    detail = f"/admin/users/{user_id}"
    credited = admin.post(f"{detail}/credit", {"direction": "credit", "amount": "5.25",
                                               "note": "invoice 1041"},
                          token_from=detail, follow_redirects=True)
    assert "New balance: $5.250000000" in html(credited)
    debited = admin.post(f"{detail}/credit", {"direction": "debit", "amount": "0.000000150",
                                              "note": "rounding fix"},
                         token_from=detail, follow_redirects=True)
    page = html(debited)
    assert "Debited $0.000000150" in page and "New balance: $5.249999850" in page
    assert '<span id="balance-exact">$5.249999850</span>' in page
    assert "invoice 1041" in page and "rounding fix" in page

    assert wallets.balance(user_id) == 5_249_999_850
    with app.app_context():
        rows = db.session.execute(select(LedgerEntry.kind, LedgerEntry.amount_nanos, LedgerEntry.note)
                                  .where(LedgerEntry.user_id == user_id).order_by(LedgerEntry.id)).all()
    assert [tuple(r) for r in rows] == [("credit", 5_250_000_000, "invoice 1041"),
                                        ("credit", -150, "rounding fix")]
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize(("amount", "note", "error"), [
    ("1.0000000001", "too precise", "at most 9 decimals"),
    ("five dollars", "not a number", "at most 9 decimals"),
    ("NaN", "not a number", "at most 9 decimals"),
    ("0", "nothing", "more than $0"),
    ("-2", "sign belongs in the direction", "more than $0"),
    ("1000000.000000001", "too much", "at most $1,000,000"),
    ("5", "", "This field is required."),
])
def test_invalid_amounts_are_refused(app, wallets, admin, amount, note, error):
    user_id = wallets.user("1")
    detail = f"/admin/users/{user_id}"
    page = admin.post(f"{detail}/credit", {"direction": "credit", "amount": amount, "note": note},
                      token_from=detail)
    assert page.status_code == 200
    assert error in html(page) and "Nothing was saved" in html(page)
    assert wallets.balance(user_id) == billing.usd_to_nanos("1")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerEntry)
                                 .where(LedgerEntry.user_id == user_id)) == 1  # the test funds only
    wallets.assert_consistent(user_id)


def test_ledger_and_search_are_paginated_server_side(app, wallets, admin):
    user_id = wallets.user("0", email="ada@example.com")
    wallets.user("0", email="bob@example.com")
    with app.app_context():
        for n in range(55):
            billing.credit(user_id, n + 1, f"row {n + 1}")
    first = html(admin.get(f"/admin/users/{user_id}"))
    assert first.count("<code>cr_") == 50 and "row 55" in first and "row 5<" not in first
    assert "Page 1 of 2" in first
    second = html(admin.get(f"/admin/users/{user_id}?page=2"))
    assert second.count("<code>cr_") == 5 and "row 5<" in second

    found = html(admin.get("/admin/?q=ADA"))
    assert "ada@example.com" in found and "bob@example.com" not in found
    assert "bob@example.com" not in html(admin.get("/admin/?q=%25"))  # LIKE wildcards are literal
    wallets.assert_consistent(user_id)


def test_topup_code_is_shown_once_and_stored_hashed(app, wallets, admin):
    page = admin.post("/admin/topup-codes", {"amount": "20.5", "expires": "", "note": "promo"},
                      token_from="/admin/topup-codes")
    assert page.status_code == 200
    text = html(page)
    code = CODE.search(text).group(1)
    assert '<div class="secret"' in text
    assert '<button class="copy button small secondary" type="button" data-copy-target="code-value">' in text

    listing = html(admin.get("/admin/topup-codes"))
    assert code not in listing and f"…{code[-4:]}" in listing and "$20.50" in listing
    with app.app_context():
        row = db.session.scalars(select(TopUpCode)).one()
        assert row.code_hash == hashlib.sha256(code.encode()).hexdigest()
        assert code not in (row.code_hash, row.hint, row.note) and row.hint == code[-4:]
        assert row.amount_nanos == 20_500_000_000 and row.expires_at is None

    customer = wallets.user("0", email="cara@example.com")
    session = Browser(app)
    session.login("cara@example.com")
    session.post("/wallet/redeem", {"code": code}, token_from="/wallet")
    assert wallets.balance(customer) == 20_500_000_000
    listing = html(admin.get("/admin/topup-codes"))
    assert "cara@example.com" in listing and "redeemed" in listing
    wallets.assert_consistent(customer)


@pytest.mark.parametrize(("amount", "expires", "error"), [
    ("0", "", "more than $0"),
    ("1.0000000001", "", "at most 9 decimals"),
    ("5", "2001-01-01", "The date is in the past."),
    ("5", "not-a-date", "Not a valid date value."),
])
def test_invalid_topup_codes_are_refused(app, admin, amount, expires, error):
    page = admin.post("/admin/topup-codes", {"amount": amount, "expires": expires},
                      token_from="/admin/topup-codes")
    assert error in html(page) and not CODE.search(html(page))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TopUpCode)) == 0


def test_catalog_edit_reaches_v1_models_at_once(app, client, admin):
    def haiku() -> dict | None:
        return next((m for m in client.get("/v1/models").json["data"] if m["id"] == HAIKU), None)

    assert haiku()["pricing"]["input"] == 1.0  # the catalog cache is warm now
    path = f"/admin/models/{HAIKU}"
    assert 'value="1.25"' in html(admin.get(path))
    saved = admin.post(path, {**HAIKU_FORM, "input": "1.125", "aliases": "claude-haiku-4-5, haiku"},
                       token_from=path)
    assert saved.status_code == 302
    model = haiku()
    assert model["pricing"]["input"] == 1.125 and model["aliases"] == ["claude-haiku-4-5", "haiku"]
    assert model["capabilities"]["thinking"] is True

    refused = admin.post(path, {**HAIKU_FORM, "input": "1.1255"}, token_from=path)
    assert refused.status_code == 200 and "at most 3 decimals" in html(refused)
    clash = admin.post(path, {**HAIKU_FORM, "aliases": "claude-opus-4-8"}, token_from=path)
    assert "claude-opus-4-8 already names claude-opus-4-8." in html(clash)
    with app.app_context():
        assert db.session.get(CatalogModel, HAIKU).input_nanos == 1125

    off = {k: v for k, v in HAIKU_FORM.items() if k != "active"}
    assert admin.post(path, off, token_from=path).status_code == 302
    assert haiku() is None
    assert HAIKU in html(admin.get("/admin/models")) and "inactive" in html(admin.get("/admin/models"))


def test_upstream_key_is_never_rendered_and_kept_when_left_empty(app, client, wallets, admin, fake_upstream):
    secret = "sk-ant-admin-console-secret-0123456789"
    user_id = wallets.user("5")
    key = wallets.key(user_id)
    assert call(client, key) == 200  # the routes cache is warm, on the environment key
    assert fake_upstream.requests[-1].headers["X-Api-Key"] == UPSTREAM_KEY

    created = admin.post("/admin/upstreams/new", {"provider": "anthropic", "name": "primary",
                                                  "base_url": fake_upstream.url + "/", "api_key": secret,
                                                  "enabled": "y"},
                         token_from="/admin/upstreams/new")
    assert created.status_code == 302
    with app.app_context():
        row = db.session.scalars(select(Upstream)).one()
        assert (row.api_key, row.base_url) == (secret, fake_upstream.url)
    assert call(client, key) == 200
    assert fake_upstream.requests[-1].headers["X-Api-Key"] == secret  # routed at once

    edit = f"/admin/upstreams/{row.id}/edit"
    for path in ("/admin/", "/admin/upstreams", edit, "/admin/upstreams/new", "/admin/models",
                 "/admin/topup-codes", f"/admin/users/{user_id}"):
        page = admin.get(path)
        assert page.status_code == 200 and secret not in html(page), path
    listing = html(admin.get("/admin/upstreams"))
    assert "primary" in listing and "healthy" in listing and "env-anthropic" in listing

    kept = admin.post(edit, {"provider": "anthropic", "name": "renamed", "base_url": fake_upstream.url,
                             "api_key": "", "enabled": "y"}, token_from=edit)
    assert kept.status_code == 302 and secret not in html(kept)
    with app.app_context():
        row = db.session.get(Upstream, row.id)
        assert (row.name, row.api_key) == ("renamed", secret)
    bad = admin.post(edit, {"provider": "anthropic", "name": "x", "base_url": "ftp://nowhere", "api_key": ""},
                     token_from=edit)
    assert "http:// or https://" in html(bad) and secret not in html(bad)

    assert admin.post("/admin/upstreams/renamed/disable", token_from="/admin/upstreams").status_code == 302
    assert call(client, key) == 200
    assert fake_upstream.requests[-1].headers["X-Api-Key"] == UPSTREAM_KEY
    assert admin.post("/admin/upstreams/renamed/enable", token_from="/admin/upstreams").status_code == 302
    assert call(client, key) == 200
    assert fake_upstream.requests[-1].headers["X-Api-Key"] == secret
    assert admin.post(f"/admin/upstreams/{row.id}/delete", token_from="/admin/upstreams").status_code == 302
    assert call(client, key) == 200
    assert fake_upstream.requests[-1].headers["X-Api-Key"] == UPSTREAM_KEY
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Upstream)) == 0
    wallets.assert_consistent(user_id)


def test_a_new_upstream_needs_a_key(app, admin):
    page = admin.post("/admin/upstreams/new", {"provider": "anthropic", "name": "primary",
                                               "base_url": "https://api.anthropic.com", "api_key": ""},
                      token_from="/admin/upstreams/new")
    assert "Enter the account&#39;s API key." in html(page)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Upstream)) == 0


def test_user_supplied_text_is_escaped(app, wallets, admin):
    created = admin.post("/admin/users/new", {"email": f"{XSS}@example.com", "password": "long-enough-pw"},
                         token_from="/admin/users/new")
    assert created.status_code == 302
    detail = created.headers["Location"]
    admin.post(f"{detail}/credit", {"direction": "credit", "amount": "1", "note": XSS}, token_from=detail)
    admin.post("/admin/topup-codes", {"amount": "1", "note": XSS}, token_from="/admin/topup-codes")
    admin.post("/admin/upstreams/new", {"provider": "openai", "name": XSS, "base_url": "https://example.com",
                                        "api_key": "sk-x", "enabled": ""}, token_from="/admin/upstreams/new")
    path = f"/admin/models/{HAIKU}"
    admin.post(path, {**HAIKU_FORM, "display_name": XSS}, token_from=path)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for page in ("/admin/", "/admin/?q=script", detail, "/admin/topup-codes", "/admin/upstreams",
                 "/admin/models", path):
        text = html(admin.get(page))
        assert XSS not in text and escaped in text, page
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == f"{XSS}@example.com"))
    wallets.assert_consistent(user_id)


def test_posts_without_a_csrf_token_are_refused(app, wallets, admin):
    user_id = wallets.user("1")
    raw = admin.client
    assert raw.post(f"/admin/users/{user_id}/credit",
                    data={"direction": "credit", "amount": "5", "note": "x"}).status_code == 400
    assert raw.post("/admin/users/new", data={"email": "x@example.com", "password": "long-enough-pw"}
                    ).status_code == 400
    assert raw.post(f"/admin/users/{user_id}/disable").status_code == 400
    assert raw.post("/admin/topup-codes", data={"amount": "5", "csrf_token": "forged"}).status_code == 400
    assert wallets.balance(user_id) == billing.usd_to_nanos("1")
    with app.app_context():
        assert db.session.get(User, user_id).active
        assert db.session.scalar(select(func.count()).select_from(TopUpCode)) == 0
    wallets.assert_consistent(user_id)


def test_admin_ceilings_bind_the_customers_keys(app, admin, wallets):
    customer = wallets.user("1")
    key = wallets.key(customer, rpm=500, concurrency=40)
    page = admin.post(f"/admin/users/{customer}/ceilings", {"max_rpm": "20", "max_concurrency": "3"},
                      token_from=f"/admin/users/{customer}")
    assert page.status_code == 302
    with app.app_context():
        user = db.session.get(User, customer)
        assert (user.max_rpm, user.max_concurrency, user.may_lift_quotas) == (20, 3, False)
        from pagegrid.keys import authenticate
        context = authenticate({"x-api-key": key})
        assert (context.rpm, context.concurrency) == (20, 3)
    # The customer cannot set more than the ceiling, nor remove a daily limit.
    browser = Browser(app)
    assert browser.login(wallets.email(customer)).status_code == 302
    page = browser.post("/keys", {"name": "big", "rpm": "100", "concurrency": "2", "daily_request_limit": "0",
                                  "monthly_token_limit": "5"}, token_from="/keys")
    assert "at most 20 requests per minute" in html(page)
    assert "asks every key to carry this limit" in html(page)


def test_admin_edits_and_revokes_any_customer_key(app, admin, wallets, client):
    customer = wallets.user("1")
    key = wallets.key(customer)
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == customer))
    limits = {"rpm": "7", "concurrency": "2", "daily_request_limit": "9", "monthly_token_limit": "0"}
    page = admin.post(f"/admin/keys/{key_id}/edit", limits, token_from=f"/admin/keys/{key_id}/edit")
    assert page.status_code == 302
    with app.app_context():
        row = db.session.get(ApiKey, key_id)
        assert (row.rpm, row.concurrency, row.daily_request_limit) == (7, 2, 9)
    page = admin.post(f"/admin/keys/{key_id}/revoke", {}, token_from=f"/admin/users/{customer}")
    assert page.status_code == 302
    reply = client.post("/v1/messages", json={}, headers={"x-api-key": key})
    assert reply.status_code == 401
