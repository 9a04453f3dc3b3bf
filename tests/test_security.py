"""Issue 13: the dashboard and admin against the findings of the security review."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pagegrid import clock
from pagegrid import config
from tests.conftest import PASSWORD
from tests.conftest import Browser

NEW_PASSWORD = "correct horse battery staple 7"


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
