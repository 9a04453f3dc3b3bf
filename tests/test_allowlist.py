"""Issue 13 item 11: per-key IP allow-lists, through the real app and the real SDKs."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest
from sqlalchemy import select

from pagegrid import allowlist
from pagegrid import create_app
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.settlement import settlements
from tests.fake_upstream import message

BODY = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
CHAT = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("text", "ranges"), [
    ("10.0.0.0/8", ["10.0.0.0/8"]),
    (" 10.0.0.0/8,192.0.2.7 \n2001:DB8::/32, 10.0.0.0/8", ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]),
    ("::1", ["::1/128"]),
    ("", []),
])
def test_ranges_are_parsed_and_normalised(text, ranges):
    assert allowlist.parse(text) == ranges


@pytest.mark.parametrize(("text", "why"), [
    ("10.0.0.5/8", "did you mean 10.0.0.0/8"), ("10.0.0.0/33", "not an IP"), ("example.com", "not an IP"),
    ("300.1.1.1", "not an IP"), (",".join(f"10.0.{n}.0/24" for n in range(101)), "At most 100"),
])
def test_bad_ranges_are_refused_with_the_entry_named(text, why):
    with pytest.raises(ValueError, match=why):
        allowlist.parse(text)


def test_ipv4_clients_of_a_dual_stack_listener_match_ipv4_ranges():
    nets = allowlist.networks(("10.0.0.0/8", "2001:db8::/32"))
    assert allowlist.allows(nets, "::ffff:10.1.2.3")
    assert allowlist.allows(nets, "2001:db8::5")
    assert not allowlist.allows(nets, "::ffff:11.1.2.3")
    assert not allowlist.allows(nets, "not-an-ip")
    assert allowlist.allows((), "anything")


def sdk_from(app, ip: str, key: str) -> anthropic.Anthropic:
    http = httpx2.Client(transport=httpx2.WSGITransport(app=app, remote_addr=ip))
    return anthropic.Anthropic(api_key=key, base_url="http://gateway.test", http_client=http, max_retries=0)


def openai_from(app, ip: str, key: str) -> openai.OpenAI:
    http = httpx2.Client(transport=httpx2.WSGITransport(app=app, remote_addr=ip))
    return openai.OpenAI(api_key=key, base_url="http://gateway.test/v1", http_client=http, max_retries=0)


def test_cli_allow_ips_admits_inside_and_refuses_outside_in_each_dialect(app, runner, wallets, fake_upstream):
    user_id = wallets.user("5")
    result = runner.invoke(args=["create-key", wallets.email(user_id), "--rpm", "1000",
                                 "--allow-ips", "10.0.0.0/8,2001:db8::/32"])
    assert result.exit_code == 0, result.output
    key = result.output.strip()
    assert key.startswith("pg-") and "\n" not in key  # still only the key on stdout

    fake_upstream.reply(message("inside", input_tokens=5, output_tokens=2))
    assert sdk_from(app, "10.20.30.40", key).messages.create(**BODY).content[0].text == "inside"
    fake_upstream.reply(message("v6", input_tokens=5, output_tokens=2))
    assert sdk_from(app, "2001:db8::9", key).messages.create(**BODY).content[0].text == "v6"
    received = len(fake_upstream.requests)

    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        sdk_from(app, "203.0.113.9", key).messages.create(**BODY)
    assert refused.value.status_code == 403
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "permission_error"
    assert "203.0.113.9" in refused.value.body["error"]["message"]

    with pytest.raises(openai.PermissionDeniedError) as refused_openai:
        openai_from(app, "2001:db9::1", key).chat.completions.create(**CHAT)
    error = refused_openai.value.body
    assert refused_openai.value.status_code == 403
    assert error["type"] == "permission_error" and "2001:db9::1" in error["message"]
    assert len(fake_upstream.requests) == received  # a refused request never reaches the provider
    wallets.assert_consistent(user_id)
    assert len(wallets.charges(user_id)) == 2  # nothing charged for the refusals

    listed = runner.invoke(args=["list-keys", wallets.email(user_id)]).output
    assert "10.0.0.0/8,2001:db8::/32" in listed


def test_cli_refuses_a_bad_range_and_set_key_limits_changes_the_list(app, runner, wallets):
    email = wallets.email(wallets.user("1"))
    bad = runner.invoke(args=["create-key", email, "--allow-ips", "10.0.0.5/8"])
    assert bad.exit_code != 0 and "did you mean 10.0.0.0/8" in bad.output
    with app.app_context():
        assert db.session.scalar(select(ApiKey.id)) is None
    runner.invoke(args=["create-key", email, "--allow-ips", "10.0.0.0/8"])
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id))
    assert runner.invoke(args=["set-key-limits", str(key_id), "--allow-ips", "192.0.2.0/24"]).exit_code == 0
    with app.app_context():
        assert db.session.get(ApiKey, key_id).allowed_ips == ["192.0.2.0/24"]
    assert runner.invoke(args=["set-key-limits", str(key_id), "--allow-ips", ""]).exit_code == 0
    with app.app_context():
        assert db.session.get(ApiKey, key_id).allowed_ips == []


def test_the_client_ip_comes_through_trusted_proxies_only(app, database_url, wallets, fake_upstream):
    user_id = wallets.user("5")
    key = wallets.key(user_id, allowed_ips=["192.0.2.0/24"])
    forwarded = {"x-api-key": key, "X-Forwarded-For": "192.0.2.10"}
    # Nobody trusted: the header is the client's own word and is ignored.
    direct = app.test_client().post("/v1/messages", json=BODY, headers=forwarded,
                                    environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert direct.status_code == 403 and "10.1.2.3" in direct.json["error"]["message"]

    proxied = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url,
                          "PAGEGRID_ANTHROPIC_URL": fake_upstream.url, "PAGEGRID_ANTHROPIC_KEY": "sk-ant-x",
                          "PAGEGRID_JOURNAL_DIR": app.config["PAGEGRID_JOURNAL_DIR"],
                          "PAGEGRID_TRUSTED_PROXIES": "10.0.0.0/8"})
    proxied.test_client_class = app.test_client_class  # reads and closes, so the charge settles
    fake_upstream.reply(message("via proxy", input_tokens=5, output_tokens=2))
    ok = proxied.test_client().post("/v1/messages", json=BODY, headers=forwarded,
                                    environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert ok.status_code == 200, ok.json
    outside = proxied.test_client().post("/v1/chat/completions", json=CHAT,
                                         headers={**forwarded, "X-Forwarded-For": "198.51.100.4"},
                                         environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert outside.status_code == 403
    assert outside.json["error"]["type"] == "permission_error"
    assert "198.51.100.4" in outside.json["error"]["message"]
    wallets.wait_settled(user_id)
    with proxied.app_context():
        settlements(proxied).stop()
        db.session.remove()
        db.engine.dispose()


def test_the_dashboard_sets_and_edits_the_list(app, wallets, browser):
    user_id = wallets.user("1")
    browser.login(wallets.email(user_id))
    bad = browser.post("/keys", {"name": "ci", "rpm": 10, "concurrency": 4,
                                 "allowed_ips": "10.0.0.0/8, nope"}, token_from="/keys")
    assert bad.status_code == 200 and b"nope is not an IP address" in bad.data
    assert b'value="10.0.0.0/8, nope"' in bad.data  # shown back as typed
    made = browser.post("/keys", {"name": "ci", "rpm": 10, "concurrency": 4,
                                  "allowed_ips": "10.0.0.0/8\n2001:db8::/32"}, token_from="/keys")
    assert made.status_code == 302
    with app.app_context():
        key = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user_id)).one()
        assert key.allowed_ips == ["10.0.0.0/8", "2001:db8::/32"]
        key_id = key.id
    edit = browser.get(f"/keys/{key_id}/edit")
    assert b'value="10.0.0.0/8, 2001:db8::/32"' in edit.data
    saved = browser.post(f"/keys/{key_id}/edit", {"rpm": 10, "concurrency": 4, "allowed_ips": ""},
                         token_from=f"/keys/{key_id}/edit")
    assert saved.status_code == 302
    with app.app_context():
        assert db.session.get(ApiKey, key_id).allowed_ips == []
    # A form without the field at all keeps working (no 500) and clears nothing it should not.
    missing = browser.post(f"/keys/{key_id}/edit", {"rpm": 11, "concurrency": 4},
                           token_from=f"/keys/{key_id}/edit")
    assert missing.status_code == 302
    with app.app_context():
        assert db.session.get(ApiKey, key_id).rpm == 11


def test_keys_without_a_list_work_from_anywhere(app, wallets, fake_upstream):
    user_id = wallets.user("1")
    key = wallets.key(user_id)
    fake_upstream.reply(message("hi", input_tokens=5, output_tokens=2))
    assert sdk_from(app, "203.0.113.9", key).messages.create(**BODY).content[0].text == "hi"
