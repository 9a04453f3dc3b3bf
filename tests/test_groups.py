"""Price groups: charges, holds and shown prices are list prices times the group's exact multiplier."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy import update

from pagegrid import billing
from pagegrid import keys
from pagegrid import pricegroups
from pagegrid.catalog import catalog
from pagegrid.extensions import db
from pagegrid.models import AuditEntry
from pagegrid.models import CatalogModel
from pagegrid.models import User
from pagegrid.models import utcnow
from pagegrid.pricegroups import Multiplier
from pagegrid.settlement import Journal
from pagegrid.settlement import settlements
from pagegrid.translate.usage import Usage
from tests.fake_upstream import chat_completion
from tests.fake_upstream import message

HAIKU = "claude-haiku-4-5"


def in_group(app, runner, wallets, multiplier: str, balance: str = "10") -> tuple[int, str]:
    """A funded user put in a new group through the CLI, and a key of theirs."""
    user_id = wallets.user(balance)
    name = f"group-{multiplier}"
    assert runner.invoke(args=["create-group", name, "--multiplier", multiplier]).exit_code == 0
    result = runner.invoke(args=["set-user-group", wallets.email(user_id), name])
    assert result.exit_code == 0, result.output
    return user_id, wallets.key(user_id)


def price_haiku_input(app, nanos_per_token: int) -> None:
    """An operator's price edit: haiku's input at an odd number of nano-USD per token."""
    with app.app_context():
        model_id = catalog().resolve(HAIKU).id
        db.session.execute(update(CatalogModel).where(CatalogModel.id == model_id)
                           .values(input_nanos=nanos_per_token))
        db.session.commit()
        catalog().invalidate()


@pytest.mark.parametrize(("multiplier", "charged"), [
    # list: 7 x 1,001 + 3 x 5,000 = 22,007 nano-USD
    ("0.8", 17_606),   # 17,605.6 rounded up
    ("1.25", 27_509),  # 27,508.75 rounded up
    ("1", 22_007),
])
def test_group_pays_list_cost_times_multiplier_rounded_up(app, runner, wallets, sdk, fake_upstream,
                                                          multiplier, charged):
    price_haiku_input(app, 1_001)
    user_id, key = in_group(app, runner, wallets, multiplier)
    fake_upstream.reply(message(model=HAIKU, input_tokens=7, output_tokens=3))
    sdk(key).messages.create(model=HAIKU, max_tokens=20, messages=[{"role": "user", "content": "hi"}])

    [charge] = wallets.charges(user_id)
    assert charge.amount_nanos == -charged
    assert wallets.balance(user_id) == 10 * 10**9 - charged
    if multiplier != "1":
        assert charge.detail["price_group"] == {"multiplier": multiplier, "list_nanos": 22_007}
    wallets.assert_consistent(user_id)


def test_openai_sdk_on_claude_pays_the_group_price(app, runner, wallets, openai_sdk, fake_upstream):
    price_haiku_input(app, 1_001)
    user_id, key = in_group(app, runner, wallets, "1.25")
    fake_upstream.reply(message(model=HAIKU, input_tokens=9, output_tokens=1))
    openai_sdk(key).chat.completions.create(model=HAIKU, max_tokens=20,
                                            messages=[{"role": "user", "content": "hi"}])
    [charge] = wallets.charges(user_id)
    # 9 x 1,001 + 5,000 = 14,009; x 1.25 = 17,511.25
    assert charge.amount_nanos == -17_512
    wallets.assert_consistent(user_id)


def test_hold_in_a_group_is_the_list_hold_times_the_multiplier_and_bounds_the_charge(
        app, runner, wallets, sdk, fake_upstream):
    price_haiku_input(app, 1_001)
    plain_id = wallets.user("10")
    plain_key = wallets.key(plain_id)
    group_id, group_key = in_group(app, runner, wallets, "1.25")
    request = {"model": HAIKU, "max_tokens": 300, "messages": [{"role": "user", "content": "same body"}]}
    for key in (plain_key, group_key):
        # The provider bills as much as it can: the whole output allowance.
        fake_upstream.reply(message(model=HAIKU, input_tokens=4_000, output_tokens=300))
        sdk(key).messages.create(**request)

    [plain] = wallets.charges(plain_id)
    [grouped] = wallets.charges(group_id)
    assert grouped.hold_nanos == Multiplier(5, 4).apply(plain.hold_nanos)
    assert -grouped.amount_nanos == Multiplier(5, 4).apply(-plain.amount_nanos)
    assert -grouped.amount_nanos <= grouped.hold_nanos
    assert not grouped.over_hold
    wallets.assert_consistent(group_id)


def test_openai_dialect_group_charge_on_gpt(app, runner, wallets, openai_sdk, fake_upstream):
    user_id, key = in_group(app, runner, wallets, "0.8")
    fake_upstream.reply(chat_completion(prompt_tokens=11, completion_tokens=3))
    openai_sdk(key).chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
    [charge] = wallets.charges(user_id)
    with app.app_context():
        price = catalog().resolve("gpt-5.4").price
    list_cost = 11 * price.input + 3 * price.output
    assert -charge.amount_nanos == Multiplier(4, 5).apply(list_cost) == list_cost * 4 // 5
    wallets.assert_consistent(user_id)


def test_models_list_shows_the_key_users_prices(app, runner, client, wallets, sdk):
    price_haiku_input(app, 1_001)
    _, key = in_group(app, runner, wallets, "1.25")
    listed = {a: m for m in client.get("/v1/models").json["data"] for a in m["accepted_ids"]}
    mine = {a: m for m in sdk(key).models.list().data for a in m.accepted_ids}
    assert listed[HAIKU]["pricing"]["input"] == 1.001
    assert mine[HAIKU].pricing["input"] == 1.25125  # exact: $1.001 x 1.25 per 1M tokens
    assert mine[HAIKU].pricing["output"] == 6.25
    assert mine[HAIKU].pricing["cache_read"] == 0.125
    assert mine[HAIKU].pricing["server_tools"]["web_search"] == 0.0125
    one = client.get(f"/v1/models/{HAIKU}", headers={"Authorization": f"Bearer {key}"}).json
    assert one["pricing"]["output"] == 6.25


def test_docs_pricing_shows_the_viewers_prices(app, runner, wallets, browser):
    user_id, _ = in_group(app, runner, wallets, "1.25")
    anonymous = browser.get("/docs/models").get_data(as_text=True)
    assert 'data-price="output">$5</td>' in anonymous.replace("\n", "")
    browser.login(wallets.email(user_id))
    mine = browser.get("/docs/models").get_data(as_text=True)
    assert 'data-price="output">$6.25</td>' in mine.replace("\n", "")
    assert "1.25" in mine


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "0.1234567", "1001", "nan"])
def test_create_group_refuses_bad_multipliers(runner, bad):
    result = runner.invoke(args=["create-group", "bad", "--multiplier", bad])
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_group_commands_are_audited_and_a_user_can_leave_a_group(app, runner, wallets):
    user_id = wallets.user("1")
    email = wallets.email(user_id)
    assert runner.invoke(args=["create-group", "resellers", "--multiplier", "0.75"]).exit_code == 0
    assert runner.invoke(args=["create-group", "resellers", "--multiplier", "2"]).exit_code != 0
    assert runner.invoke(args=["set-user-group", email, "resellers"]).exit_code == 0
    assert runner.invoke(args=["set-group", "resellers", "--multiplier", "0.7"]).exit_code == 0
    listed = runner.invoke(args=["list-groups"]).output
    assert "resellers\t×0.7\tusers=1" in listed
    assert runner.invoke(args=["set-user-group", email, "--none"]).exit_code == 0
    with app.app_context():
        assert db.session.get(User, user_id).price_group_id is None
        entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        actions = [(e.action, e.actor) for e in entries if e.action.startswith(("price_group", "user.price"))]
        assert actions == [("price_group.create", "cli"), ("user.price_group", "cli"),
                           ("price_group.edit", "cli"), ("user.price_group", "cli")]
        edit = next(e for e in entries if e.action == "price_group.edit")
        assert edit.before == {"multiplier_num": 3, "multiplier_den": 4}
        assert edit.after == {"multiplier_num": 7, "multiplier_den": 10}
        assert entries[-1].before == {"price_group": "resellers (×0.7)"}
        assert entries[-1].after == {"price_group": None}


def test_multiplier_is_exact():
    assert Multiplier.parse("0.8") == Multiplier(4, 5)
    assert Multiplier.parse("1.250000") == Multiplier(5, 4)
    assert Multiplier.parse("0.000001").apply(1) == 1  # never rounds a cost down to nothing
    assert Multiplier(1, 3).apply(3) == 1 and Multiplier(1, 3).apply(4) == 2
    assert pricegroups.LIST_PRICES.apply(12_345) == 12_345
    assert Multiplier.parse("2.000001").text() == "2.000001"


def test_admin_creates_edits_and_assigns_groups(app, browser, wallets, sdk, fake_upstream):
    admin_id = wallets.user("0", admin=True)
    customer_id = wallets.user("10")
    browser.login(wallets.email(admin_id))
    bad = browser.post("/admin/groups", {"name": "partners", "multiplier": "0"}, token_from="/admin/groups")
    assert bad.status_code == 200 and "greater than 0" in bad.get_data(as_text=True)
    made = browser.post("/admin/groups", {"name": "partners", "multiplier": "0.9"},
                        token_from="/admin/groups")
    assert made.status_code == 302
    page = browser.get("/admin/groups").get_data(as_text=True)
    assert "partners" in page and "×0.9" in page
    with app.app_context():
        group = pricegroups.find("partners")
        group_id = group.id
    edited = browser.post(f"/admin/groups/{group_id}/edit", {"name": "partners", "multiplier": "0.8"},
                          token_from=f"/admin/groups/{group_id}/edit")
    assert edited.status_code == 302
    assigned = browser.post(f"/admin/users/{customer_id}/price-group", {"group": str(group_id)},
                            token_from=f"/admin/users/{customer_id}")
    assert assigned.status_code == 302
    assert "×0.8" in browser.get(f"/admin/users/{customer_id}").get_data(as_text=True)
    # Without a CSRF token nothing changes.
    assert browser.client.post(f"/admin/users/{customer_id}/price-group", data={"group": ""}).status_code \
        in (302, 400)

    fake_upstream.reply(message(model=HAIKU, input_tokens=10, output_tokens=5))
    sdk(wallets.key(customer_id)).messages.create(model=HAIKU, max_tokens=20, messages=[
        {"role": "user", "content": "hi"}])
    [charge] = wallets.charges(customer_id)
    assert charge.amount_nanos == -28_000  # 35,000 x 0.8
    with app.app_context():
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.actor != "cli")
                                     .order_by(AuditEntry.id)).all()
        assert [e.action for e in entries] == ["price_group.create", "price_group.edit", "user.price_group"]
        assert all(e.actor == wallets.email(admin_id) for e in entries)
    wallets.assert_consistent(customer_id)


def test_customers_cannot_open_the_group_pages(browser, wallets):
    customer_id = wallets.user("1")
    browser.login(wallets.email(customer_id))
    assert browser.get("/admin/groups").status_code == 403


def test_a_journaled_settlement_keeps_its_multiplier(app, wallets, runner):
    user_id = wallets.user("1")
    key = wallets.key(user_id)
    with app.app_context():
        key_id = keys.key_context({"x-api-key": key}).key_id
        model = catalog().resolve(HAIKU)
        billing.reserve(user_id, "req_grouped", 1_000_000, api_key_id=key_id)
        db.session.commit()
    # Admitted at x1.25; the worker died before it could write the charge.
    charge = billing.Charge(request_id="req_grouped", user_id=user_id, api_key_id=key_id, model=model.id,
                            usage=Usage(7, 3), price=model.price, status="complete", started_at=utcnow(),
                            hold_nanos=1_000_000, multiplier=Multiplier(5, 4))
    journal = Journal(settlements(app).journal.directory)
    journal.append(charge)
    journal._file.close()
    assert runner.invoke(args=["settle-pending"]).exit_code == 0
    [row] = wallets.charges(user_id)
    assert row.amount_nanos == -27_500  # (7 x 1,000 + 3 x 5,000) x 1.25
    wallets.assert_consistent(user_id)
