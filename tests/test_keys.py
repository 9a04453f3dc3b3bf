"""Issue 14 item 6: keys get a name and an expiry (dashboard, admin, CLI), expire at once for the
real SDKs, and each key's page carries the docs' tool setups with this deployment's URL."""

from __future__ import annotations

import html
import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import anthropic
import openai
import pytest
from sqlalchemy import select

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import AuditEntry
from tests.fake_upstream import message
from tests.test_dashboard import BODY
from tests.test_dashboard import SECRET

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen(monkeypatch):
    """The clock at ``NOW``; ``frozen(hours=…)`` moves it."""
    def move(**delta: float) -> None:
        monkeypatch.setattr(clock, "now", lambda: NOW + timedelta(**delta))

    move()
    return move


@pytest.fixture
def customer(app, wallets, browser):
    """A logged-in customer with $10 and one key: (user_id, browser, key id, secret)."""
    user_id = wallets.user("10")
    assert browser.login(wallets.email(user_id)).status_code == 302
    secret = wallets.key(user_id, name="laptop")
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.last4 == secret[-4:]))
    return user_id, browser, key_id, secret


def _key(app, key_id: int) -> ApiKey:
    with app.app_context():
        key = db.session.get(ApiKey, key_id)
        db.session.expunge(key)
        return key


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def test_an_expired_key_fails_at_once_in_both_dialects_and_reaches_no_provider(
        runner, wallets, sdk, openai_sdk, fake_upstream, frozen):
    user_id = wallets.user("5", email="expiring@example.com")
    made = runner.invoke(args=["create-key", "expiring@example.com", "--expires-in-days", "2"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip()
    assert re.fullmatch(r"pg-[0-9a-f]{64}", secret)  # the key and nothing else on stdout
    fake_upstream.reply(message(model="claude-haiku-4-5-20251001", input_tokens=10, output_tokens=2))
    assert sdk(secret).messages.create(**BODY).content
    listed = runner.invoke(args=["list-keys", "expiring@example.com"]).output
    assert "expires=2026-12-08T12:00Z" in listed and "\tactive\t" in listed

    frozen(days=2)  # the very moment it expires
    received = len(fake_upstream.requests)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        sdk(secret).messages.create(**BODY)
    assert refused.value.status_code == 401
    assert refused.value.body["error"]["type"] == "authentication_error"
    assert "expired at 2026-12-08 12:00 UTC" in refused.value.body["error"]["message"]
    with pytest.raises(openai.AuthenticationError) as refused_openai:
        openai_sdk(secret).chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user",
                                                                                      "content": "hi"}])
    assert refused_openai.value.body["type"] == "authentication_error"
    assert "expired" in refused_openai.value.body["message"]
    assert len(fake_upstream.requests) == received
    assert "\texpired\t" in runner.invoke(args=["list-keys", "expiring@example.com"]).output
    assert len(wallets.charges(user_id)) == 1  # the refusals charge nothing
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("args, error", [
    (["--expires-in-days", "0"], "0 is not in the range"),
    (["--expires-at", "2026-12-05"], "is in the past"),
    (["--expires-at", "next tuesday"], "expected a date"),
    (["--expires-in-days", "3", "--expires-at", "2027-01-01"], "not both"),
])
def test_create_key_refuses_a_bad_expiry(runner, wallets, frozen, args, error):
    wallets.user("1", email="bad-expiry@example.com")
    result = runner.invoke(args=["create-key", "bad-expiry@example.com", *args])
    assert result.exit_code == 2 and error in result.output
    assert "pg-" not in result.output


def test_cli_expires_at_a_day_or_a_moment_renames_and_clears(app, runner, wallets, frozen):
    user_id = wallets.user("1", email="cli-expiry@example.com")
    day = runner.invoke(args=["create-key", "cli-expiry@example.com", "--expires-at", "2026-12-31"])
    moment = runner.invoke(args=["create-key", "cli-expiry@example.com", "--expires-at", "2027-01-02T08:30"])
    with app.app_context():
        keys = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)).all()
        assert [k.last4 for k in keys] == [day.output.strip()[-4:], moment.output.strip()[-4:]]
        assert [_aware(k.expires_at) for k in keys] == [datetime(2027, 1, 1, tzinfo=UTC),
                                                         datetime(2027, 1, 2, 8, 30, tzinfo=UTC)]
        first = keys[0].id
    changed = runner.invoke(args=["set-key-limits", str(first), "--name", "ci runner", "--never-expires"])
    assert changed.exit_code == 0, changed.output
    key = _key(app, first)
    assert (key.name, key.expires_at) == ("ci runner", None)
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "key.edit")).one()
        assert entry.actor == "cli" and entry.after["name"] == "ci runner"
        assert entry.after["expires_at"] is None
    clash = runner.invoke(args=["set-key-limits", str(first), "--never-expires", "--expires-in-days", "1"])
    assert clash.exit_code == 2


def test_rename_and_expiry_on_the_key_page_are_audited(app, frozen, customer, client, wallets):
    # ``frozen`` comes before ``customer``: the login is stamped at NOW, so the 12 hours below
    # end it whatever the wall clock's time of day.
    user_id, browser, key_id, secret = customer
    page = f"/keys/{key_id}/edit"
    saved = browser.post(page, {"name": "  build server  ", "expires": "2026-12-20", "rpm": 10,
                                "concurrency": 16}, token_from=page)
    assert saved.status_code == 302
    key = _key(app, key_id)
    assert key.name == "build server"
    assert _aware(key.expires_at) == datetime(2026, 12, 21, tzinfo=UTC)  # through the whole day
    listing = browser.get("/keys").get_data(as_text=True)
    assert "build server</a>" in listing and "2026-12-21 00:00 UTC" in listing
    assert 'value="2026-12-20"' in browser.get(page).get_data(as_text=True)
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "key.edit")).one()
        assert entry.before["name"] == "laptop" and entry.after["name"] == "build server"
        assert entry.before["expires_at"] is None and entry.after["expires_at"].startswith("2026-12-21")
        assert entry.actor_id == user_id and secret not in str(entry.before) + str(entry.after)

    # A form without the field keeps the expiry; a past day is refused; an empty one clears it.
    assert browser.post(page, {"rpm": 11, "concurrency": 16}, token_from=page).status_code == 302
    assert _aware(_key(app, key_id).expires_at) == datetime(2026, 12, 21, tzinfo=UTC)
    refused = browser.post(page, {"name": "x", "expires": "2026-12-01", "rpm": 10, "concurrency": 16},
                           token_from=page)
    assert refused.status_code == 200 and "The date is in the past" in refused.get_data(as_text=True)
    assert _key(app, key_id).name == "build server"
    assert browser.post(page, {"name": "build server", "expires": "", "rpm": 10, "concurrency": 16},
                        token_from=page).status_code == 302
    assert _key(app, key_id).expires_at is None

    # Expired through the page: the next request is refused at once.
    browser.post(page, {"name": "build server", "expires": "2026-12-06", "rpm": 10, "concurrency": 16},
                 token_from=page)
    frozen(hours=12)
    refused_call = client.post("/v1/messages", json=BODY, headers={"x-api-key": secret})
    assert refused_call.status_code == 401 and "expired" in refused_call.json["error"]["message"]
    browser.login(wallets.email(user_id))  # 12 idle hours ended the session
    assert ">expired<" in browser.get("/keys").get_data(as_text=True)


def test_another_users_key_page_is_404(app, customer, wallets):
    _, browser, _, _ = customer
    other = wallets.user("1")
    wallets.key(other, name="theirs")
    with app.app_context():
        theirs = db.session.scalar(select(ApiKey).where(ApiKey.user_id == other))
        theirs_id = theirs.id
    assert browser.get(f"/keys/{theirs_id}/edit").status_code == 404
    assert browser.post(f"/keys/{theirs_id}/edit", {"name": "mine now", "rpm": 10, "concurrency": 16},
                        token_from="/keys").status_code == 404
    assert _key(app, theirs_id).name == "theirs"


def test_the_admin_renames_and_extends_any_key(app, wallets, browser, frozen):
    wallets.user("0", email="keys-admin@example.com", admin=True)
    owner = wallets.user("1")
    wallets.key(owner, name="old")
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == owner))
    browser.login("keys-admin@example.com")
    page = f"/admin/keys/{key_id}/edit"
    assert browser.post(page, {"name": "renamed by ops", "expires": "2027-03-31", "rpm": 10,
                               "concurrency": 16}, token_from=page).status_code == 302
    key = _key(app, key_id)
    assert key.name == "renamed by ops" and _aware(key.expires_at) == datetime(2027, 4, 1, tzinfo=UTC)
    detail = browser.get(f"/admin/users/{owner}").get_data(as_text=True)
    assert "renamed by ops" in detail and "2027-04-01" in detail


def _snippets(page: str) -> dict[str, str]:
    return {ident: html.unescape(code) for ident, code in
            re.findall(r'<pre id="([^"]+)" data-lang="[^"]+"><code>(.*?)</code></pre>', page, re.S)}


def test_the_key_page_shows_the_docs_setups_with_this_deployment_and_never_the_secret(
        app, customer, client):
    _, browser, key_id, secret = customer
    app.config["PAGEGRID_PUBLIC_URL"] = "https://gw.example.com/"
    page = browser.get(f"/keys/{key_id}/edit").get_data(as_text=True)
    assert secret not in page
    display = f"{secret[:7]}\u2026{secret[-4:]}"
    found = _snippets(page)
    docs = {**_snippets(client.get("/docs/claude-code").get_data(as_text=True)),
            **_snippets(client.get("/docs/codex-cli").get_data(as_text=True)),
            **_snippets(client.get("/docs/openclaw").get_data(as_text=True)),
            **_snippets(client.get("/docs/sdk-examples").get_data(as_text=True)),
            **_snippets(client.get("/docs/getting-started").get_data(as_text=True))}
    expected = ["claude-code-env", "codex-cli-env", "codex-cli-config", "openclaw-config",
                "sdk-python-anthropic", "sdk-js-anthropic", "sdk-python-openai", "sdk-js-openai",
                "getting-started-curl"]
    assert list(found) == [f"key-{ident}" for ident in expected]
    for ident in expected:  # the docs' text, with the key's display in place of the placeholder
        assert found[f"key-{ident}"] == docs[ident].replace("pg-your-key-here", display), ident
    assert 'export ANTHROPIC_BASE_URL="https://gw.example.com/v1"' in found["key-claude-code-env"]
    assert 'base_url = "https://gw.example.com/v1"' in found["key-codex-cli-config"]


def test_the_creation_page_setups_carry_the_whole_secret_once(app, wallets, browser):
    user_id = wallets.user("1")
    browser.login(wallets.email(user_id))
    made = browser.post("/keys", {"name": "fresh", "rpm": 10, "concurrency": 16, "expires": "2099-01-01"},
                        token_from="/keys", follow_redirects=True).get_data(as_text=True)
    secret = SECRET.search(made).group(1)
    found = _snippets(made)
    assert found["new-claude-code-env"].endswith(f'export ANTHROPIC_API_KEY="{secret}"')
    assert f'"x-api-key: {secret}"' in found["new-getting-started-curl"]
    assert "2099-01-02 00:00 UTC" in made
    assert secret not in browser.get("/keys").get_data(as_text=True)  # shown once
