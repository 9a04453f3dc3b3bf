"""Issue 13 item 8: TOTP two-factor login with recovery codes, through the real dashboard."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy import text

from pagegrid import clock
from pagegrid import config
from pagegrid import crypto
from pagegrid.extensions import db
from pagegrid.models import AuditEntry
from pagegrid.models import RecoveryCode
from pagegrid.models import User
from tests.conftest import PASSWORD
from tests.conftest import Browser

SECRET = re.compile(r'<code id="totp-secret">([A-Z2-7 ]+)</code>')
CODES = re.compile(r'<pre id="recovery-codes">([^<]+)</pre>')


class Clock:
    """The clock PageGrid reads, moved by the test in whole TOTP steps."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta()
        real = clock.now
        monkeypatch.setattr(clock, "now", lambda: real() + self.offset)

    def step(self, n: int = 1) -> None:
        self.offset += timedelta(seconds=30 * n)


@pytest.fixture
def moving_clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


def code(secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=30 * steps))


def page(response) -> str:
    return response.get_data(as_text=True)


def enrol(b: Browser) -> tuple[str, list[str]]:
    """Turn two-factor on for the logged-in user; returns (secret, recovery codes)."""
    setup = b.get("/account/two-factor")
    assert setup.status_code == 200 and "<svg" in page(setup) and 'class="qr"' in page(setup)
    secret = SECRET.search(page(setup)).group(1).replace(" ", "")
    on = b.post("/account/two-factor/enable", {"password": PASSWORD, "code": code(secret)},
                token_from="/account/two-factor")
    assert on.status_code == 302
    shown = page(b.get("/account/two-factor"))
    codes = CODES.search(shown).group(1).split()
    assert len(codes) == 10 and 'id="two-factor-status">on' in shown
    return secret, codes


def login(b: Browser, email: str, code_text: str | None, next_path: str | None = None, **kwargs):
    token = b.csrf()
    first = b.client.post("/login", query_string={"next": next_path} if next_path else None,
                          data={"email": email, "password": PASSWORD, "csrf_token": token}, **kwargs)
    if code_text is None:
        return first
    assert first.status_code == 302 and first.headers["Location"] == "/login/code"
    return b.client.post("/login/code", data={"code": code_text, "csrf_token": b.csrf("/login/code")},
                         **kwargs)


def test_enrol_then_login_needs_the_code_and_refuses_a_replay(app, wallets, browser, moving_clock):
    user_id = wallets.user("1")
    email = wallets.email(user_id)
    browser.login(email)
    secret, codes = enrol(browser)
    assert CODES.search(page(browser.get("/account/two-factor"))) is None  # shown once
    with app.app_context():
        raw = db.session.execute(text("SELECT totp_secret FROM users WHERE id = :id"),
                                 {"id": user_id}).scalar()
        assert secret not in raw and crypto.decrypt(raw) == secret  # encrypted at rest
        hashes = db.session.scalars(select(RecoveryCode.code_hash)
                                    .where(RecoveryCode.user_id == user_id)).all()
        assert len(hashes) == 10 and not {c.replace("-", "") for c in codes} & set(hashes)
    browser.post("/logout")

    other = Browser(app)
    password_only = login(other, email, None, next_path="/usage")
    assert password_only.headers["Location"] == "/login/code"
    assert other.get("/dashboard").status_code == 302  # no session before the code
    moving_clock.step()
    current = code(secret)
    done = other.client.post("/login/code", data={"code": current, "csrf_token": other.csrf("/login/code")})
    assert done.status_code == 302 and done.headers["Location"] == "/usage"
    assert other.get("/dashboard").status_code == 200
    other.post("/logout")

    replay = login(Browser(app), email, current)  # the same step again: refused
    assert replay.status_code == 200 and "used already" in page(replay)
    wrong = login(Browser(app), email, "000000" if current != "000000" else "111111")
    assert wrong.status_code == 200 and "Wrong code" in page(wrong)
    moving_clock.step()
    assert login(Browser(app), email, code(secret)).status_code == 302


def test_enrolment_needs_the_password_and_a_good_code(app, wallets, browser):
    user_id = wallets.user("1")
    browser.login(wallets.email(user_id))
    setup = page(browser.get("/account/two-factor"))
    secret = SECRET.search(setup).group(1).replace(" ", "")
    assert SECRET.search(page(browser.get("/account/two-factor"))).group(1).replace(" ", "") == secret
    for data in ({"password": "wrong-password-1", "code": code(secret)},
                 {"password": PASSWORD, "code": "123456" if code(secret) != "123456" else "654321"},
                 {"password": PASSWORD}, {}):
        refused = browser.post("/account/two-factor/enable", data, token_from="/account/two-factor")
        assert refused.status_code == 302
    forged = browser.client.post("/account/two-factor/enable",
                                 data={"password": PASSWORD, "code": code(secret)})
    assert forged.status_code == 400  # no CSRF token
    with app.app_context():
        assert not db.session.get(User, user_id).totp_enabled


def test_recovery_codes_work_once(app, wallets, browser):
    email = wallets.email(wallets.user("1"))
    browser.login(email)
    _, codes = enrol(browser)
    browser.post("/logout")
    first = login(Browser(app), email, codes[0].upper())
    assert first.status_code == 302
    again = login(Browser(app), email, codes[0])
    assert again.status_code == 200 and "Wrong code" in page(again)
    b = Browser(app)
    assert login(b, email, codes[1].replace("-", " ")).status_code == 302
    assert "8 unused recovery codes left" in page(b.get("/account/two-factor"))


def wrong_code(b: Browser, **kwargs) -> int:
    return b.client.post("/login/code", data={"code": "999999", "csrf_token": b.csrf("/login/code")},
                         **kwargs).status_code


def test_code_attempts_are_throttled_per_ip_and_per_account(app, wallets, browser):
    app.config["PAGEGRID_2FA_ACCOUNT_LIMITS"] = "8/15 minutes"
    email = wallets.email(wallets.user("1"))
    browser.login(email)
    secret, _ = enrol(browser)
    browser.post("/logout")
    attacker = Browser(app)
    ip = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    assert login(attacker, email, None, **ip).status_code == 302
    tries = [wrong_code(attacker, **ip) for _ in range(6)]
    assert tries == [200] * 5 + [429]
    refused = attacker.client.post("/login/code", data={"code": code(secret, 1),
                                                        "csrf_token": attacker.csrf("/login/code")}, **ip)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0

    spread = Browser(app)  # 5 failures counted for the account so far; 3 more from elsewhere
    for n in range(3):
        other_ip = {"environ_base": {"REMOTE_ADDR": f"198.51.100.{n}"}}
        assert login(spread, email, None, **other_ip).status_code == 302
        assert wrong_code(spread, **other_ip) == 200
    blocked = login(Browser(app), email, code(secret, 1), environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert blocked.status_code == 429


def test_the_code_step_expires_and_ends_with_a_password_reset(app, wallets, browser, runner, moving_clock):
    email = wallets.email(wallets.user("1"))
    browser.login(email)
    secret, _ = enrol(browser)
    browser.post("/logout")
    late = Browser(app)
    login(late, email, None)
    moving_clock.step(11)  # 5.5 minutes
    expired = late.client.post("/login/code", data={"code": code(secret), "csrf_token": late.csrf("/login")})
    assert expired.status_code == 302 and expired.headers["Location"] == "/login"
    reset = Browser(app)
    login(reset, email, None)
    assert runner.invoke(args=["reset-password", email, "--password", "correct horse battery staple 7"]
                         ).exit_code == 0
    moving_clock.step()
    ended = reset.client.post("/login/code", data={"code": code(secret), "csrf_token": reset.csrf("/login")})
    assert ended.headers["Location"] == "/login"


def test_turning_it_off_needs_the_password_and_a_code(app, wallets, browser, moving_clock):
    email = wallets.email(wallets.user("1"))
    browser.login(email)
    secret, codes = enrol(browser)
    moving_clock.step()
    kept = browser.post("/account/two-factor/disable", {"password": "not-the-password", "code": code(secret)},
                        token_from="/account/two-factor")
    assert kept.status_code == 302 and 'status">on' in page(browser.get("/account/two-factor"))
    off = browser.post("/account/two-factor/disable", {"password": PASSWORD, "code": codes[3]},
                       token_from="/account/two-factor")
    assert off.status_code == 302 and 'status">off' in page(browser.get("/account/two-factor"))
    browser.post("/logout")
    assert login(Browser(app), email, None).headers["Location"] == "/dashboard"
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        # Back to a fresh pending secret (the old one is gone), no recovery codes.
        assert user.totp_secret != secret and not user.totp_enabled
        assert db.session.scalar(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id)) is None


def test_new_recovery_codes_replace_the_old_ones(app, wallets, browser, moving_clock):
    email = wallets.email(wallets.user("1"))
    browser.login(email)
    secret, old = enrol(browser)
    moving_clock.step()
    made = browser.post("/account/two-factor/recovery-codes", {"password": PASSWORD, "code": code(secret)},
                        token_from="/account/two-factor")
    assert made.status_code == 302
    new = CODES.search(page(browser.get("/account/two-factor"))).group(1).split()
    assert len(new) == 10 and not set(new) & set(old)
    browser.post("/logout")
    assert login(Browser(app), email, old[0]).status_code == 200
    assert login(Browser(app), email, new[0]).status_code == 302


def test_operator_can_require_two_factor_for_admins(app, wallets, browser, monkeypatch, tmp_path):
    monkeypatch.setenv("PAGEGRID_REQUIRE_ADMIN_2FA", "true")
    assert config.from_environ(tmp_path)["PAGEGRID_REQUIRE_ADMIN_2FA"] is True
    monkeypatch.delenv("PAGEGRID_REQUIRE_ADMIN_2FA")
    assert config.from_environ(tmp_path)["PAGEGRID_REQUIRE_ADMIN_2FA"] is False

    app.config["PAGEGRID_REQUIRE_ADMIN_2FA"] = True
    wallets.user("0", email="boss@example.com", admin=True)
    browser.login("boss@example.com")
    for path in ("/admin/", "/admin/audit", "/admin/upstreams"):
        sent = browser.get(path)
        assert sent.status_code == 302 and sent.headers["Location"] == "/account/two-factor", path
    refused = browser.post("/admin/users/new", {"email": "x@example.com", "password": PASSWORD},
                           token_from="/dashboard")
    assert refused.status_code == 302
    assert "requires two-factor login for admins" in page(browser.get("/account/two-factor"))
    assert browser.get("/dashboard").status_code == 200  # the rest of the dashboard still works
    enrol(browser)
    assert browser.get("/admin/").status_code == 200
    customer = Browser(app)
    customer.login(wallets.email(wallets.user("1")))
    assert customer.get("/dashboard").status_code == 200  # customers are not forced


def test_admin_and_cli_can_turn_a_users_two_factor_off_and_it_is_audited(app, wallets, browser, runner):
    ada_id = wallets.user("1", email="ada@example.com")
    ada = Browser(app)
    ada.login("ada@example.com")
    enrol(ada)
    wallets.user("0", email="boss@example.com", admin=True)
    browser.login("boss@example.com")
    detail = page(browser.get(f"/admin/users/{ada_id}"))
    assert 'id="two-factor">Two-factor login: <span class="badge ok">on' in detail
    assert browser.post(f"/admin/users/{ada_id}/two-factor/off", token_from=f"/admin/users/{ada_id}"
                        ).status_code == 302
    assert ada.get("/dashboard").status_code == 302  # her sessions ended
    assert login(Browser(app), "ada@example.com", None).headers["Location"] == "/dashboard"

    ada.login("ada@example.com")
    enrol(ada)
    result = runner.invoke(args=["disable-2fa", "ada@example.com"])
    assert result.exit_code == 0 and "is off" in result.output
    with app.app_context():
        log = db.session.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.before, AuditEntry.after)
            .where(AuditEntry.action == "user.2fa_disable").order_by(AuditEntry.id)).all()
    assert [(a, act) for a, act, _, _ in log] == [("boss@example.com", "user.2fa_disable"),
                                                   ("cli", "user.2fa_disable")]
    before, after = log[0][2], log[0][3]
    assert before["totp_enabled"] is True and after["totp_enabled"] is False
    assert before["totp_secret"] == "[redacted]" and after["totp_secret"] is None


def test_rotate_encryption_key_reencrypts_totp_secrets(app, wallets, browser, runner):
    user_id = wallets.user("1")
    browser.login(wallets.email(user_id))
    secret, _ = enrol(browser)
    old = app.config["PAGEGRID_ENCRYPTION_KEY"]
    new = crypto.generate_key()
    app.config["PAGEGRID_ENCRYPTION_KEY"] = f"{new},{old}"
    app.extensions.pop("pagegrid.fernet")
    assert runner.invoke(args=["rotate-encryption-key"]).exit_code == 0
    app.config["PAGEGRID_ENCRYPTION_KEY"] = new
    app.extensions.pop("pagegrid.fernet")
    with app.app_context():
        assert db.session.get(User, user_id).totp_secret == secret


def test_recovery_codes_wait_for_their_own_page_not_the_keys_page(app, wallets, browser):
    browser.login(wallets.email(wallets.user("1")))
    setup = page(browser.get("/account/two-factor"))
    secret = SECRET.search(setup).group(1).replace(" ", "")
    browser.post("/account/two-factor/enable", {"password": PASSWORD, "code": code(secret)},
                 token_from="/account/two-factor")
    keys = page(browser.get("/keys"))
    assert 'id="new-key"' not in keys and "recovery-codes" not in keys
    assert len(CODES.search(page(browser.get("/account/two-factor"))).group(1).split()) == 10
