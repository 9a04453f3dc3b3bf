"""Low-balance alerts: one email and one signed webhook when the available balance drops below the
threshold, not again until a top-up lifts it; sent after commit, off the request path, retried."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func
from sqlalchemy import select

from pagegrid import clock
from pagegrid import outbox
from pagegrid.extensions import db
from pagegrid.models import AuditEntry
from pagegrid.models import OutboxMessage
from pagegrid.models import PasswordReset
from pagegrid.models import User
from tests.conftest import Browser
from tests.fake_upstream import message
from tests.mailbox import Hooks
from tests.mailbox import Mailbox
from tests.serving import free_port

BODY = {"model": "claude-opus-4-6", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
SECRET = re.compile(r'id="secret-value">(pgwhsec_[0-9a-f]+)<')


@pytest.fixture
def mailbox():
    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def hooks():
    receiver = Hooks().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def alerting(app, mailbox):
    """Email on, webhooks allowed to loopback over http, quick retries."""
    app.config.update(PAGEGRID_SMTP_URL=mailbox.url, PAGEGRID_MAIL_FROM="alerts@gateway.test",
                      PAGEGRID_ALERT_WEBHOOK_ALLOW_PRIVATE=True, PAGEGRID_OUTBOX_RETRY_SECONDS=0.2,
                      PAGEGRID_PUBLIC_URL="https://gateway.test")
    yield app
    outbox.sender(app).stop()


def configure(browser, wallets, user_id: int, threshold: str, url: str = "") -> str | None:
    """Log in (once) and set the alert in the dashboard; the signing secret if one was shown."""
    if browser.get("/account/alerts").status_code != 200:
        browser.login(wallets.email(user_id))
    page = browser.post("/account/alerts", {"threshold": threshold, "webhook_url": url},
                        token_from="/account/alerts", follow_redirects=True)
    assert page.status_code == 200, page.get_data(as_text=True)
    found = SECRET.search(page.get_data(as_text=True))
    return found.group(1) if found else None


def call(client, key: str, fake_upstream, input_tokens: int = 100) -> None:
    fake_upstream.reply(message(input_tokens=input_tokens, output_tokens=10))
    reply = client.post("/v1/messages", json=BODY, headers={"x-api-key": key})
    assert reply.status_code == 200, reply.get_data(as_text=True)


def outbox_rows(app) -> list[OutboxMessage]:
    with app.app_context():
        rows = db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        db.session.expunge_all()
        return list(rows)


def wait_sent(app, timeout: float = 10.0) -> list[OutboxMessage]:
    """Wait until every outbox message is sent; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = outbox_rows(app)
        if all(r.sent_at is not None for r in rows):
            return rows
        time.sleep(0.02)
    raise AssertionError(f"unsent: {[(r.kind, r.attempts, r.last_error) for r in outbox_rows(app)]}")


def verify(secret: str, headers: dict[str, str], body: bytes) -> dict:
    """Check the PageGrid-Signature header the way a receiver should; the event."""
    fields = dict(part.split("=", 1) for part in headers["Pagegrid-Signature"].split(","))
    timestamp = int(fields["t"])
    assert abs(time.time() - timestamp) < 300
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    return json.loads(body)


def test_one_email_and_one_webhook_per_crossing_rearmed_only_by_a_top_up(
        alerting, client, runner, browser, wallets, fake_upstream, mailbox, hooks):
    user_id = wallets.user("1")
    key = wallets.key(user_id)
    email = wallets.email(user_id)
    secret = configure(browser, wallets, user_id, "0.999", hooks.url)
    assert secret is not None

    call(client, key, fake_upstream)  # 0.999250000 available: above
    assert outbox_rows(alerting) == []
    call(client, key, fake_upstream)  # 0.998500000: crosses below
    [mail] = mailbox.wait(1)
    [(headers, body)] = hooks.wait(1)
    assert mail["To"] == email and mail["From"] == "alerts@gateway.test"
    assert "below $1.00" in mail["Subject"]
    text = mail.get_content()
    assert "$0.998500000" in text and "$0.999000000" in text and "https://gateway.test/wallet" in text
    event = verify(secret, headers, body)
    assert event["type"] == "balance.low" and headers["Pagegrid-Event"] == "balance.low"
    assert event["data"] | {"email": email} == {
        "email": email, "available_nanos": 998_500_000, "threshold_nanos": 999_000_000,
        "available_usd": "0.998500000", "threshold_usd": "0.999000000"}

    call(client, key, fake_upstream)  # further below: nothing new
    assert runner.invoke(args=["credit", email, "0.0005"]).exit_code == 0  # 0.998250000: still below
    call(client, key, fake_upstream)
    assert runner.invoke(args=["credit", email, "0.01"]).exit_code == 0  # 1.007500000: re-armed
    call(client, key, fake_upstream)  # 1.006750000: above
    assert len(wait_sent(alerting)) == 2
    call(client, key, fake_upstream, input_tokens=2000)  # 0.996500000: below again
    mailbox.wait(2)
    hooks.wait(2)
    rows = wait_sent(alerting)
    assert [r.kind for r in rows] == ["email", "webhook", "email", "webhook"]
    assert all(r.body is None for r in rows)  # sent bodies are not kept
    assert len(mailbox.messages) == 2 and len(hooks.received) == 2
    wallets.assert_consistent(user_id)


def test_exactly_once_when_many_requests_cross_together(alerting, live_server, browser, wallets,
                                                       fake_upstream, mailbox, hooks):
    user_id = wallets.user("1")
    key = wallets.key(user_id)
    configure(browser, wallets, user_id, "0.9999", hooks.url)
    fake_upstream.reply(message(input_tokens=100, output_tokens=10))
    statuses: list[int] = []

    def one() -> None:
        statuses.append(requests.post(f"{live_server}/v1/messages", json=BODY, headers={"x-api-key": key},
                                      timeout=30).status_code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 12
    wallets.wait_settled(user_id)
    mailbox.wait(1)
    hooks.wait(1)
    time.sleep(0.5)  # time for a second one to show up, were there one
    assert len(mailbox.messages) == 1 and len(hooks.received) == 1
    assert [r.kind for r in wait_sent(alerting)] == ["email", "webhook"]
    assert len(wallets.charges(user_id)) == 12  # every one crossed below; one alert
    wallets.assert_consistent(user_id)


def test_a_failing_webhook_is_retried_with_the_same_event(alerting, client, browser, wallets, fake_upstream,
                                                         mailbox, hooks):
    user_id = wallets.user("1")
    key = wallets.key(user_id)
    secret = configure(browser, wallets, user_id, "1", hooks.url)
    hooks.fail_first = 1
    call(client, key, fake_upstream)
    first, second = hooks.wait(2)
    assert first[1] == second[1]  # the same event id and body, signed again
    verify(secret, *second)
    webhook = [r for r in wait_sent(alerting) if r.kind == "webhook"][0]
    assert webhook.attempts == 2 and webhook.last_error is None


def test_a_dead_mail_server_neither_fails_nor_delays_the_request(alerting, client, browser, wallets,
                                                                fake_upstream, mailbox):
    user_id = wallets.user("1")
    key = wallets.key(user_id)
    configure(browser, wallets, user_id, "1")
    alerting.config["PAGEGRID_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nobody listens
    started = time.monotonic()
    call(client, key, fake_upstream)
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 10
    while not (rows := outbox_rows(alerting)) or not rows[0].last_error:
        assert time.monotonic() < deadline, "the failed send was not recorded"
        time.sleep(0.02)
    assert rows[0].sent_at is None and "Connection" in rows[0].last_error
    alerting.config["PAGEGRID_SMTP_URL"] = mailbox.url  # the server is back: the retry delivers it
    mailbox.wait(1)
    [row] = wait_sent(alerting)
    assert row.attempts >= 2
    wallets.assert_consistent(user_id)


def test_send_outbox_sends_what_no_live_sender_picked_up(alerting, client, runner, browser, wallets,
                                                         fake_upstream, mailbox):
    user_id = wallets.user("1")
    key = wallets.key(user_id)
    configure(browser, wallets, user_id, "1")
    outbox.sender(alerting).stop()  # as if the worker that wrote it died before sending
    call(client, key, fake_upstream)
    time.sleep(0.3)
    assert mailbox.messages == [] and len(outbox_rows(alerting)) == 1
    result = runner.invoke(args=["send-outbox"])
    assert result.exit_code == 0 and "0 messages still waiting" in result.output
    assert len(mailbox.wait(1)) == 1
    assert wait_sent(alerting)[0].attempts == 1


def test_off_by_default_and_turned_off_with_an_empty_threshold(alerting, client, browser, wallets,
                                                               fake_upstream):
    user_id = wallets.user("0.01")
    key = wallets.key(user_id)
    call(client, key, fake_upstream)  # below any threshold a customer would set, but none is set
    configure(browser, wallets, user_id, "5")
    configure(browser, wallets, user_id, "")
    call(client, key, fake_upstream)
    with alerting.app_context():
        assert db.session.scalar(select(User.alert_threshold_nanos).where(User.id == user_id)) is None
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


@pytest.mark.parametrize(("threshold", "url", "error"), [
    ("abc", "", "Enter an amount"), ("-1", "", "above $0"), ("0.0000000001", "", "Enter an amount"),
    ("5", "http://example.com/hook", "https://"), ("5", "https://127.0.0.1/hook", "not a public address"),
    ("5", "https://user:pw@example.com/hook", "user name"), ("5", "ftp://example.com/", "https://"),
])
def test_bad_settings_are_refused_field_by_field(app, browser, wallets, threshold, url, error):
    user_id = wallets.user("1")
    browser.login(wallets.email(user_id))
    page = browser.post("/account/alerts", {"threshold": threshold, "webhook_url": url},
                        token_from="/account/alerts")
    assert page.status_code == 400
    assert error in page.get_data(as_text=True)
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.alert_threshold_nanos is None and user.alert_webhook_url is None


def test_the_signing_secret_is_shown_once_and_can_be_replaced(alerting, browser, wallets, hooks):
    user_id = wallets.user("1")
    first = configure(browser, wallets, user_id, "2", hooks.url)
    page = browser.get("/account/alerts").get_data(as_text=True)
    assert first is not None and first not in page  # shown once
    assert configure(browser, wallets, user_id, "3", hooks.url) is None  # same webhook: same secret
    replaced = browser.post("/account/alerts/secret", token_from="/account/alerts", follow_redirects=True)
    second = SECRET.search(replaced.get_data(as_text=True)).group(1)
    assert second != first
    with alerting.app_context():
        assert db.session.scalar(select(User.alert_webhook_secret).where(User.id == user_id)) == second
    assert browser.client.post("/account/alerts/secret").status_code == 400  # no CSRF token


# Forgot password -----------------------------------------------------------------------------------

LINK = re.compile(r"(https://gateway\.test/reset-password\?token=[\w-]+)")
NEW_PASSWORD = "quiet-lantern-orchard-71"
CSRF_FIELD = re.compile(r'<(?:input|meta)[^>]*csrf[^>]*>')


def ask_reset(browser, email: str):
    return browser.post("/forgot-password", {"email": email}, token_from="/forgot-password")


def reset_link(mailbox, count: int = 1) -> str:
    text = mailbox.wait(count)[count - 1].get_content()
    return LINK.search(text).group(1).replace("https://gateway.test", "")


def test_no_forgot_password_without_smtp(app, browser):
    assert "forgot-link" not in browser.get("/login").get_data(as_text=True)
    assert browser.get("/forgot-password").status_code == 404


def test_reset_link_by_email_works_once_and_ends_every_session(alerting, app, browser, wallets, mailbox):
    user_id = wallets.user("1")
    email = wallets.email(user_id)
    elsewhere = Browser(app)
    elsewhere.login(email)
    assert elsewhere.get("/dashboard").status_code == 200
    assert 'id="forgot-link"' in browser.get("/login").get_data(as_text=True)

    known = ask_reset(browser, email.upper())
    unknown = ask_reset(browser, "nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    same = [CSRF_FIELD.sub("", page.get_data(as_text=True)) for page in (known, unknown)]
    assert same[0] == same[1]
    link = reset_link(mailbox)
    [sent] = mailbox.messages
    assert sent["To"] == email and "30 minutes" in sent.get_content()
    token = link.partition("token=")[2]
    with alerting.app_context():
        [row] = db.session.scalars(select(PasswordReset)).all()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in row.token_hash
    wait_sent(alerting)
    assert len(mailbox.messages) == 1  # nothing for the unknown email

    page = browser.get(link)
    assert page.status_code == 200 and email in page.get_data(as_text=True)
    weak = browser.post("/reset-password", {"token": token, "new": "password1234", "confirm": "password1234"},
                        token_from=link)
    assert weak.status_code == 400 and "too easy to guess" in weak.get_data(as_text=True)
    forged = browser.client.post("/reset-password", data={"token": token, "new": NEW_PASSWORD,
                                                          "confirm": NEW_PASSWORD})
    assert forged.status_code == 400  # no CSRF token: refused, and the link still works
    done = browser.post("/reset-password", {"token": token, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
                        token_from=link)
    assert done.status_code == 302 and done.headers["Location"].endswith("/login")

    assert elsewhere.get("/dashboard").status_code == 302  # the other session ended
    assert browser.get(link).status_code == 400  # used
    again = browser.post("/reset-password", {"token": token, "new": "another-" + NEW_PASSWORD,
                                             "confirm": "another-" + NEW_PASSWORD}, token_from="/login")
    assert again.status_code == 400 and "reset-invalid" in again.get_data(as_text=True)
    assert browser.login(email, NEW_PASSWORD).status_code == 302
    with alerting.app_context():
        [entry] = db.session.scalars(select(AuditEntry)
                                     .where(AuditEntry.action == "user.password_reset_link"))
        assert entry.target.endswith(email) and token not in json.dumps(entry.after)


def test_an_expired_or_wrong_token_is_refused(alerting, browser, wallets, mailbox, monkeypatch):
    email = wallets.email(wallets.user("1"))
    ask_reset(browser, email)
    link = reset_link(mailbox)
    token = link.partition("token=")[2]
    assert browser.get(link[:-3] + "abc").status_code == 400
    assert browser.get("/reset-password").status_code == 400
    real = clock.now
    monkeypatch.setattr(clock, "now", lambda: real() + timedelta(minutes=31))
    assert browser.get(link).status_code == 400
    expired = browser.post("/reset-password", {"token": token, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
                           token_from="/login")
    assert expired.status_code == 400
    assert browser.login(email, NEW_PASSWORD).status_code == 200  # still the old password


def test_forgot_password_is_rate_limited_and_needs_csrf(alerting, browser, wallets, mailbox):
    email = wallets.email(wallets.user("1"))
    answers = [ask_reset(browser, email).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert [ask_reset(browser, "nobody@example.com").status_code for _ in range(4)] == [200, 200, 200, 429]
    mailbox.wait(3)
    wait_sent(alerting)
    assert len(mailbox.messages) == 3
    assert browser.client.post("/forgot-password", data={"email": email}).status_code == 400
