"""Issue 13 item 9: the audit log of admin actions, through the real admin console and CLI."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from pagegrid import billing
from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import AuditEntry
from pagegrid.models import Upstream
from pagegrid.models import User
from tests.conftest import Browser
from tests.test_admin import HAIKU
from tests.test_admin import HAIKU_FORM

ADMIN = "auditor@example.com"
NEW_PASSWORD = "correct horse battery staple 7"
UPSTREAM_SECRET = "sk-ant-audit-must-never-see-this-0123456789"
CODE = re.compile(r'<code id="code-value">(PG-[0-9A-F-]+)</code>')


@pytest.fixture
def admin(wallets, browser) -> Browser:
    wallets.user("0", email=ADMIN, admin=True)
    assert browser.login(ADMIN).status_code == 302
    return browser


def entries(app) -> list[dict]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [{"actor": r.actor, "action": r.action, "target": r.target, "before": r.before,
                 "after": r.after, "ip": r.ip, "at": r.created_at} for r in rows]


def last(app, action: str) -> dict:
    return [e for e in entries(app) if e["action"] == action][-1]


def test_every_admin_action_is_recorded_with_before_and_after_and_no_secret(app, wallets, admin):
    customer = wallets.user("1", email="ada@example.com")
    detail = f"/admin/users/{customer}"
    key_secret = wallets.key(customer)
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == customer))

    created = admin.post("/admin/users/new", {"email": "bob@example.com", "password": NEW_PASSWORD},
                         token_from="/admin/users/new")
    assert created.status_code == 302
    assert admin.post(f"{detail}/credit", {"direction": "credit", "amount": "5.25", "note": "invoice 7"},
                      token_from=detail).status_code == 302
    assert admin.post(f"{detail}/credit", {"direction": "debit", "amount": "0.25", "note": "fix"},
                      token_from=detail).status_code == 302
    assert admin.post(f"{detail}/ceilings", {"max_rpm": "50", "max_concurrency": "",
                                             "may_lift_quotas": "y"}, token_from=detail).status_code == 302
    assert admin.post(f"{detail}/disable", token_from=detail).status_code == 302
    assert admin.post(f"{detail}/enable", token_from=detail).status_code == 302
    assert admin.post(f"{detail}/password", {"new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
                      token_from=detail).status_code == 302
    edit = f"/admin/keys/{key_id}/edit"
    assert admin.post(edit, {"rpm": "77", "concurrency": "5", "allowed_ips": "10.0.0.0/8"},
                      token_from=edit).status_code == 302
    assert admin.post(f"/admin/keys/{key_id}/revoke", token_from=detail).status_code == 302
    page = admin.post("/admin/topup-codes", {"amount": "20", "note": "promo"},
                      token_from="/admin/topup-codes")
    code = CODE.search(page.get_data(as_text=True)).group(1)
    model = f"/admin/models/{HAIKU}"
    assert admin.post(model, {**HAIKU_FORM, "input": "1.125"}, token_from=model).status_code == 302
    assert admin.post("/admin/upstreams/new", {"provider": "anthropic", "name": "primary",
                                               "base_url": "http://127.0.0.1:9", "api_key": UPSTREAM_SECRET},
                      token_from="/admin/upstreams/new").status_code == 302
    with app.app_context():
        upstream_id = db.session.scalar(select(Upstream.id))
    up = f"/admin/upstreams/{upstream_id}"
    assert admin.post(f"{up}/edit", {"provider": "anthropic", "name": "primary-2",
                                     "base_url": "http://127.0.0.1:9", "api_key": UPSTREAM_SECRET + "-new"},
                      token_from=f"{up}/edit").status_code == 302
    assert admin.post("/admin/upstreams/primary-2/enable", token_from="/admin/upstreams").status_code == 302
    assert admin.post(f"{up}/delete", token_from="/admin/upstreams").status_code == 302

    log = entries(app)
    assert [e["action"] for e in log] == [
        "user.create", "wallet.credit", "wallet.debit", "user.ceilings", "user.disable", "user.enable",
        "user.password_reset", "key.edit", "key.revoke", "topup_code.create", "catalog.edit",
        "upstream.create", "upstream.edit", "upstream.enable", "upstream.delete"]
    assert {e["actor"] for e in log} == {ADMIN}
    assert all(e["ip"] == "127.0.0.1" and e["at"] is not None for e in log)

    assert last(app, "user.create")["after"]["email"] == "bob@example.com"
    credit = last(app, "wallet.credit")
    assert credit["target"] == f"user {customer} ada@example.com"
    assert credit["before"] == {"balance_nanos": billing.usd_to_nanos("1")}
    assert credit["after"]["balance_nanos"] == billing.usd_to_nanos("6.25")
    assert credit["after"]["amount_nanos"] == billing.usd_to_nanos("5.25")
    assert credit["after"]["note"] == "invoice 7"
    assert last(app, "wallet.debit")["after"]["amount_nanos"] == -billing.usd_to_nanos("0.25")
    assert last(app, "user.ceilings")["before"] == {"max_rpm": None}
    assert last(app, "user.ceilings")["after"] == {"max_rpm": 50}
    assert last(app, "user.disable")["before"]["active"] is True
    assert last(app, "user.disable")["after"]["active"] is False
    reset = last(app, "user.password_reset")
    assert reset["before"]["password_hash"] == "[redacted]" and reset["after"]["password_hash"] == "[changed]"
    key_edit = last(app, "key.edit")
    assert key_edit["before"]["rpm"] == 10_000 and key_edit["after"]["rpm"] == 77
    assert key_edit["before"]["allowed_ips"] == [] and key_edit["after"]["allowed_ips"] == ["10.0.0.0/8"]
    assert "key_hash" not in key_edit["after"]  # unchanged columns are left out
    assert last(app, "key.revoke")["before"]["revoked_at"] is None
    assert last(app, "key.revoke")["after"]["revoked_at"]
    topup = last(app, "topup_code.create")
    assert topup["after"]["amount_nanos"] == billing.usd_to_nanos("20")
    assert topup["after"]["hint"] == code[-4:]
    catalog = last(app, "catalog.edit")
    assert catalog["target"] == f"model {HAIKU}"
    assert catalog["before"]["input_nanos"] == 1000 and catalog["after"]["input_nanos"] == 1125
    # A price the operator sets is no longer the price list's (auto-priced, its source).
    assert catalog["before"]["auto_priced"] is True and catalog["after"] == {
        "input_nanos": 1125, "auto_priced": False, "price_source": "set by the operator"}
    assert last(app, "upstream.create")["after"]["name"] == "primary"
    upstream_edit = last(app, "upstream.edit")
    assert upstream_edit["before"]["name"] == "primary" and upstream_edit["after"]["name"] == "primary-2"
    assert upstream_edit["after"]["api_key"] == "[changed]"
    assert last(app, "upstream.enable")["before"]["enabled"] is False
    assert last(app, "upstream.enable")["after"]["enabled"] is True
    deleted = last(app, "upstream.delete")
    assert deleted["before"]["name"] == "primary-2" and deleted["after"] is None

    dump = json.dumps([{k: v for k, v in e.items() if k != "at"} for e in log])
    for secret in (UPSTREAM_SECRET, key_secret, code, NEW_PASSWORD, key_secret[3:]):
        assert secret not in dump
    page = admin.get("/admin/audit").get_data(as_text=True)
    for secret in (UPSTREAM_SECRET, key_secret, code, NEW_PASSWORD):
        assert secret not in page
    wallets.assert_consistent(customer)


def test_cli_commands_are_recorded_as_cli(app, runner, wallets):
    email = wallets.email(wallets.user("0"))
    assert runner.invoke(args=["create-user", "carol@example.com", "--password", NEW_PASSWORD]).exit_code == 0
    assert runner.invoke(args=["credit", email, "2.5", "--note", "wire 9"]).exit_code == 0
    secret = runner.invoke(args=["create-key", email, "--name", "ci", "--allow-ips", "192.0.2.0/24"]).output
    with app.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.name == "ci"))
    assert runner.invoke(args=["set-key-limits", str(key_id), "--rpm", "9"]).exit_code == 0
    assert runner.invoke(args=["reset-password", email, "--password", NEW_PASSWORD]).exit_code == 0
    log = entries(app)
    assert [e["action"] for e in log] == ["user.create", "wallet.credit", "key.create", "key.edit",
                                          "user.password_reset"]
    assert {e["actor"] for e in log} == {"cli"} and {e["ip"] for e in log} == {None}
    assert log[1]["after"]["amount_nanos"] == billing.usd_to_nanos("2.5")
    assert log[2]["after"]["allowed_ips"] == ["192.0.2.0/24"] and log[2]["after"]["key_hash"] == "[changed]"
    assert log[3]["before"] == {"rpm": 10} and log[3]["after"] == {"rpm": 9}
    dump = json.dumps([{k: v for k, v in e.items() if k != "at"} for e in log])
    assert secret.strip() not in dump and NEW_PASSWORD not in dump
    wallets.assert_consistent(db_user_id(app, email))


def test_cli_upstream_commands_are_recorded_without_the_key(app, runner):
    added = runner.invoke(args=["add-upstream", "anthropic", "http://127.0.0.1:9", "--key", UPSTREAM_SECRET,
                                "--name", "spare", "--priority", "5"])
    assert added.exit_code == 0, added.output
    assert runner.invoke(args=["set-upstream", "spare", "--disable"]).exit_code == 0
    assert runner.invoke(args=["set-upstream", "spare", "--enable", "--weight", "3"]).exit_code == 0
    log = entries(app)
    assert [e["action"] for e in log[:2]] == ["upstream.create", "upstream.disable"]
    assert {e["actor"] for e in log} == {"cli"}
    assert log[0]["after"]["name"] == "spare" and log[0]["after"]["priority"] == 5
    assert log[0]["after"]["api_key"] == "[changed]"
    assert log[1]["before"]["enabled"] is True and log[1]["after"]["enabled"] is False
    assert {"upstream.enable", "upstream.edit"} <= {e["action"] for e in log[2:]}
    assert any(e["after"].get("weight") == 3 for e in log if e["action"] == "upstream.edit")
    assert UPSTREAM_SECRET not in json.dumps([{k: v for k, v in e.items() if k != "at"} for e in log])


def db_user_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def test_the_log_is_filterable_by_actor_action_target_and_time(app, runner, wallets, admin):
    customer = wallets.user("1", email="dora@example.com")
    detail = f"/admin/users/{customer}"
    admin.post(f"{detail}/credit", {"direction": "credit", "amount": "1", "note": "web"}, token_from=detail)
    runner.invoke(args=["credit", "dora@example.com", "3", "--note", "from the shell"])
    admin.post(f"{detail}/disable", token_from=detail)

    def rows(**query) -> list[str]:
        page = admin.get("/admin/audit", query_string=query)
        assert page.status_code == 200
        return re.findall(r"<td><code>([a-z_.0-9]+)</code></td>", page.get_data(as_text=True))

    assert rows() == ["user.disable", "wallet.credit", "wallet.credit"]  # newest first
    assert rows(actor="cli") == ["wallet.credit"]
    assert rows(actor=ADMIN[:7]) == ["user.disable", "wallet.credit"]
    assert rows(action="user.disable") == ["user.disable"]
    assert rows(target="dora@") == ["user.disable", "wallet.credit", "wallet.credit"]
    assert rows(target="nobody") == []
    today = entries(app)[0]["at"].date()
    assert len(rows(start=today.isoformat(), end=today.isoformat())) == 3
    assert rows(end="2000-01-01") == []
    # Nonsense filters are ignored, never a 500.
    assert admin.get("/admin/audit", query_string={"start": "yesterday", "page": "x",
                                                   "action": "<script>"}).status_code == 200


def test_customers_cannot_read_the_log(app, wallets, browser):
    assert browser.login(wallets.email(wallets.user("1"))).status_code == 302
    assert browser.get("/admin/audit").status_code == 403
