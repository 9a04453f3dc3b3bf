"""sync-models against fake provider accounts on loopback, and the admin's catalog tools."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from pagegrid import pricelist
from pagegrid.billing import cost_nanos
from pagegrid.catalog_sync import sync_accounts
from pagegrid.extensions import db
from pagegrid.models import AuditEntry
from pagegrid.models import CatalogModel
from pagegrid.models import LedgerEntry
from pagegrid.models import PriceRule
from pagegrid.models import Upstream
from pagegrid.translate.usage import Usage
from tests.conftest import OPENAI_UPSTREAM_KEY
from tests.conftest import UPSTREAM_KEY
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream import message
from tests.test_admin import ADMIN
from tests.test_admin import admin  # noqa: F401 - the logged-in admin fixture
from tests.test_admin import html

NEWEST_CLAUDE_CODE_DEFAULT = "claude-opus-5-5"  # Claude Code 2.1.332's default model
SEEDED_ANTHROPIC = ["claude-opus-4-8", "claude-sonnet-4-6", "claude-haiku-4-5-20251001"]


def anthropic_lists(fake: FakeUpstream, ids: list[str], page_size: int = 2) -> None:
    """Script Anthropic's paginated GET /v1/models: pages of ``page_size``, after_id cursors."""
    pages = max(1, -(-len(ids) // page_size))

    def page(req: Request) -> Response:
        after = req.args.get("after_id")
        start = ids.index(after) + 1 if after else 0
        chunk = ids[start:start + page_size]
        body = {"data": [{"type": "model", "id": m, "display_name": m.upper(),
                          "created_at": "2026-11-01T00:00:00Z"} for m in chunk],
                "has_more": start + page_size < len(ids), "first_id": chunk[0] if chunk else None,
                "last_id": chunk[-1] if chunk else None}
        return Response(json.dumps(body), mimetype="application/json")

    for _ in range(pages):
        fake.respond_with(page)


def openai_lists(fake: FakeUpstream, ids: list[str]) -> None:
    """Script OpenAI's GET /v1/models: every model in one list."""
    fake.reply({"object": "list", "data": [{"id": m, "object": "model", "created": 1, "owned_by": "openai"}
                                            for m in ids]})


def model_requests(fake: FakeUpstream) -> list:
    return [r for r in fake.requests if r.method == "GET" and r.path.startswith("/v1/models")]


def row(app, model_id: str) -> CatalogModel | None:
    with app.app_context():
        found = db.session.get(CatalogModel, model_id)
        if found is not None:
            db.session.expunge(found)
        return found


def test_the_accounts_are_the_enabled_rows_then_the_environment(app):
    with app.app_context():
        db.session.add_all([
            Upstream(provider="anthropic", name="team-a", base_url="http://127.0.0.1:9/", api_key="k1"),
            Upstream(provider="anthropic", name="off", base_url="http://127.0.0.1:9", api_key="k2",
                     enabled=False)])
        db.session.commit()
        targets = sync_accounts()
    assert [(t.name, t.provider) for t in targets] == [
        ("team-a", "anthropic"), ("env-anthropic", "anthropic"), ("env-openai", "openai")]
    assert targets[0].base_url == "http://127.0.0.1:9" and targets[0].api_key == "k1"


def test_sync_adds_listed_models_priced_by_list_or_rule_else_inactive(app, runner, fake_upstream):
    anthropic_lists(fake_upstream, [*SEEDED_ANTHROPIC, NEWEST_CLAUDE_CODE_DEFAULT, "claude-sonnet-5-5",
                                    "claude-opus-6", "acme-reasoner-1"])
    openai_lists(fake_upstream, ["gpt-5.5", "gpt-7", "text-embedding-3-small"])
    result = runner.invoke(args=["sync-models"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "env-anthropic (anthropic): 7 models listed, 3 added, 1 need a price" in out
    assert f"  added {NEWEST_CLAUDE_CODE_DEFAULT}: price list: https://platform.claude.com" in out
    assert "  added claude-opus-6: priced like claude-opus-5-5 by rule claude-opus-*" in out
    assert "  added acme-reasoner-1 INACTIVE: needs a price" in out
    assert "env-openai (openai): 3 models listed, 1 added, 0 need a price" in out
    assert "  added gpt-7: priced like gpt-5.5 by rule gpt-*" in out
    assert "text-embedding" not in out

    newest = row(app, NEWEST_CLAUDE_CODE_DEFAULT)
    assert newest.active and newest.auto_priced and not newest.needs_price
    assert (newest.input_nanos, newest.output_nanos, newest.cache_read_nanos) == (4000, 20000, 400)
    assert newest.context_window == 1_000_000 and newest.max_output == 128_000
    assert newest.display_name == NEWEST_CLAUDE_CODE_DEFAULT.upper()  # the provider's own name
    assert "not fully confirmed" in newest.price_source
    ruled = row(app, "claude-opus-6")
    assert ruled.active and ruled.auto_priced and ruled.input_nanos == 4000
    assert ruled.price_source == "priced like claude-opus-5-5 by rule claude-opus-*"
    unpriced = row(app, "acme-reasoner-1")
    assert not unpriced.active and unpriced.needs_price and not unpriced.auto_priced
    assert row(app, "text-embedding-3-small") is None

    with app.app_context():
        (entry,) = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "catalog.sync"))
        assert entry.actor == "cli" and entry.after["env-anthropic"]["needs_price"] == ["acme-reasoner-1"]
    calls = model_requests(fake_upstream)
    anthropic_calls = [c for c in calls if c.headers.get("X-Api-Key") == UPSTREAM_KEY]
    assert len(anthropic_calls) == 4  # 7 models, 2 per page
    assert all(c.headers.get("Anthropic-Version") == "2023-06-01" for c in anthropic_calls)
    assert "after_id=claude-sonnet-4-6" in anthropic_calls[1].path
    assert "after_id=claude-haiku-4-5-20251001" not in anthropic_calls[0].path
    openai_call = [c for c in calls if c.headers.get("Authorization") == f"Bearer {OPENAI_UPSTREAM_KEY}"]
    assert len(openai_call) == 1


def test_sync_never_overwrites_the_operator_and_adds_nothing_twice(app, runner, fake_upstream):
    anthropic_lists(fake_upstream, ["claude-sonnet-5-5"])
    openai_lists(fake_upstream, [])
    assert runner.invoke(args=["sync-models"]).exit_code == 0
    with app.app_context():
        model = db.session.get(CatalogModel, "claude-sonnet-5-5")
        model.input_nanos, model.display_name = 2500, "Our Sonnet"
        seeded = db.session.get(CatalogModel, "claude-opus-4-8")
        seeded.output_nanos = 30000
        db.session.commit()
    anthropic_lists(fake_upstream, ["claude-sonnet-5-5", "claude-opus-4-8"])
    openai_lists(fake_upstream, [])
    again = runner.invoke(args=["sync-models"])
    assert "env-anthropic (anthropic): 2 models listed, 0 added, 0 need a price" in again.output
    assert row(app, "claude-sonnet-5-5").input_nanos == 2500
    assert row(app, "claude-sonnet-5-5").display_name == "Our Sonnet"
    assert row(app, "claude-opus-4-8").output_nanos == 30000


def test_a_failing_account_is_reported_and_skipped(app, runner, fake_upstream):
    with app.app_context():
        db.session.add_all([
            Upstream(provider="anthropic", name="dead", base_url="http://127.0.0.1:9", api_key="k-dead"),
            Upstream(provider="anthropic", name="banned", base_url=fake_upstream.url, api_key="k-banned")])
        db.session.commit()
    fake_upstream.error(401, "authentication_error", "invalid x-api-key")
    anthropic_lists(fake_upstream, ["claude-sonnet-5-5"])
    fake_upstream.error(500, "api_error", "the model list is down")
    result = runner.invoke(args=["sync-models"])
    assert result.exit_code == 0, result.output
    assert "dead (anthropic): skipped: Could not reach the upstream provider." in result.output
    assert "banned (anthropic): skipped: credentials rejected (HTTP 401)" in result.output
    assert "env-anthropic (anthropic): 1 models listed, 1 added" in result.output
    assert "env-openai (openai): skipped: HTTP 500: the model list is down" in result.output
    assert row(app, "claude-sonnet-5-5").active


def test_the_newest_claude_code_default_works_after_sync_at_its_list_price(app, runner, fake_upstream,
                                                                           funded, sdk, wallets):
    user_id, key = funded
    client = sdk(key)
    body = {"model": NEWEST_CLAUDE_CODE_DEFAULT, "max_tokens": 100,
            "messages": [{"role": "user", "content": "say hi"}]}
    before = app.test_client().post("/v1/messages", json=body, headers={"x-api-key": key})
    assert before.status_code == 404  # what made Claude Code 2.1.332 exit
    assert not fake_upstream.requests

    anthropic_lists(fake_upstream, [*SEEDED_ANTHROPIC, NEWEST_CLAUDE_CODE_DEFAULT])
    openai_lists(fake_upstream, [])
    assert runner.invoke(args=["sync-models"]).exit_code == 0

    fake_upstream.reply(message("hi", model=NEWEST_CLAUDE_CODE_DEFAULT, input_tokens=1200, output_tokens=300,
                                cache_write=1000, cache_read=5000))
    reply = client.messages.create(**body)
    assert reply.content[0].text == "hi"
    sent = [r for r in fake_upstream.requests if r.method == "POST"][-1]
    assert sent.body["model"] == NEWEST_CLAUDE_CODE_DEFAULT
    wallets.wait_settled(user_id)
    charge = wallets.charges(user_id)[-1]
    usage = Usage(input_tokens=1200, output_tokens=300, cache_creation_input_tokens=1000,
                  cache_read_input_tokens=5000)
    expected = cost_nanos(usage, pricelist.list_price(NEWEST_CLAUDE_CODE_DEFAULT))
    assert expected == 1200 * 4000 + 300 * 20000 + 1000 * 5000 + 5000 * 400
    assert charge.model == NEWEST_CLAUDE_CODE_DEFAULT and -charge.amount_nanos == expected
    wallets.assert_consistent(user_id)


def test_a_model_no_account_lists_stays_404(app, runner, fake_upstream, funded):
    anthropic_lists(fake_upstream, SEEDED_ANTHROPIC)
    openai_lists(fake_upstream, [])
    assert runner.invoke(args=["sync-models"]).exit_code == 0
    response = app.test_client().post("/v1/messages", headers={"x-api-key": funded[1]}, json={
        "model": "claude-sonnet-5-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404
    assert row(app, "claude-sonnet-5-5") is None


def test_a_needs_a_price_model_is_404_until_the_operator_prices_it(app, runner, fake_upstream, admin):  # noqa: F811
    anthropic_lists(fake_upstream, ["acme-reasoner-1"])
    openai_lists(fake_upstream, [])
    assert runner.invoke(args=["sync-models"]).exit_code == 0
    page = html(admin.get("/admin/models"))
    assert "acme-reasoner-1" in page and "needs a price" in page
    path = "/admin/models/acme-reasoner-1"
    form = {"display_name": "Acme", "upstream_id": "acme-reasoner-1", "aliases": "",
            "context_window": "200000", "max_output": "64000", "tools": "y", "active": "y",
            "input": "1", "output": "4",
            "cache_write": "1.25", "cache_write_1h": "2", "cache_read": "0.1"}
    assert admin.post(path, form, token_from=path).status_code == 302
    priced = row(app, "acme-reasoner-1")
    assert priced.active and not priced.needs_price and not priced.auto_priced
    assert priced.price_source == "set by the operator"


def test_admin_sync_button_needs_csrf_and_reports(app, fake_upstream, admin):  # noqa: F811
    assert admin.client.post("/admin/models/sync").status_code == 400  # no CSRF token
    assert not model_requests(fake_upstream)
    anthropic_lists(fake_upstream, ["claude-sonnet-5-5"])
    fake_upstream.error(401, "authentication_error", "bad key")
    done = admin.post("/admin/models/sync", token_from="/admin/models", follow_redirects=True)
    page = html(done)
    assert done.status_code == 200
    assert "env-anthropic (anthropic): 1 models listed, 1 added, 0 need a price" in page
    assert "env-openai (openai): skipped: credentials rejected (HTTP 401)" in page
    source = "price list: https://platform.claude.com/docs/en/models/sonnet-5-5"
    assert f'<span class="badge ok" title="{source}' in page
    edit = html(admin.get("/admin/models/claude-sonnet-5-5"))
    assert "Prices: auto-priced, price list: https://platform.claude.com/docs/en/models/sonnet-5-5" in edit


NEW_MODEL = {"model_id": "claude-opus-9", "provider": "anthropic", "display_name": "Claude Opus 9",
             "upstream_id": "claude-opus-9-20270101", "aliases": "opus-next", "context_window": "1000000",
             "max_output": "128000", "vision": "y", "tools": "y", "thinking": "y", "active": "y",
             "input": "6", "output": "30", "cache_write": "7.5", "cache_write_1h": "12", "cache_read": "0.6"}


def test_admin_add_model_form(app, admin, client):  # noqa: F811
    assert 'name="model_id"' in html(admin.get("/admin/models/new"))
    assert admin.client.post("/admin/models/new", data=NEW_MODEL).status_code == 400  # no CSRF
    saved = admin.post("/admin/models/new", NEW_MODEL, token_from="/admin/models/new")
    assert saved.status_code == 302
    added = row(app, "claude-opus-9")
    assert (added.provider, added.upstream_id, added.aliases) == ("anthropic", "claude-opus-9-20270101",
                                                                   ["opus-next"])
    assert (added.input_nanos, added.output_nanos, added.cache_write_nanos, added.cache_write_1h_nanos,
            added.cache_read_nanos) == (6000, 30000, 7500, 12000, 600)
    assert not added.auto_priced and added.price_source == "set by the operator"
    with app.app_context():
        (entry,) = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "catalog.create"))
        assert entry.actor == ADMIN and entry.target == "model claude-opus-9"
    listed = client.get("/v1/models/opus-next").json
    assert listed["id"] == "claude-opus-9" and listed["pricing"]["cache_write_1h"] == 12.0


@pytest.mark.parametrize("change, message_text", [
    ({"input": "1.0001"}, "at most 3 decimals"),
    ({"input": "-1"}, "at most 3 decimals"),
    ({"output": ""}, "This field is required"),
    ({"model_id": "claude opus"}, "letters, digits"),
    ({"model_id": "claude-opus-4-8"}, "claude-opus-4-8 already names claude-opus-4-8."),
    ({"aliases": "claude-haiku-4-5"}, "claude-haiku-4-5 already names claude-haiku-4-5-20251001."),
    ({"provider": "mistral"}, "Not a valid choice"),
    ({"max_output": "2000000"}, "Max output cannot exceed the context window."),
    ({"context_window": "lots"}, "This field is required"),
    ({"model_id": "x" * 101}, "Field cannot be longer than 100 characters."),
])
def test_admin_add_model_refuses_bad_input_without_a_500(app, admin, change, message_text):  # noqa: F811
    response = admin.post("/admin/models/new", {**NEW_MODEL, **change}, token_from="/admin/models/new")
    assert response.status_code == 200
    assert message_text in html(response), re.findall(r"var\(--bad\)\">([^<]*)", html(response))
    with app.app_context():
        assert db.session.scalar(select(CatalogModel.id).where(CatalogModel.id == "claude-opus-9")) is None


RULES = "/admin/models/rules"


def test_admin_price_rules_page(app, admin):  # noqa: F811
    page = html(admin.get("/admin/models/rules"))
    assert "claude-opus-*" in page and "like the family&#39;s current model (claude-opus-5-5)" in page
    saved = admin.post("/admin/models/rules", {"pattern": "claude-opus-*", "like_model": "claude-opus-4-8"},
                       token_from="/admin/models/rules")
    assert saved.status_code == 302
    five = {"input": "2", "output": "6", "cache_write": "2", "cache_write_1h": "2", "cache_read": "0.2"}
    explicit = admin.post("/admin/models/rules", {"pattern": "mistral-*", **five}, token_from=RULES)
    assert explicit.status_code == 302
    for bad, text in [({"pattern": "mistral-*", "input": "2"}, "Give all five prices"),
                      ({"pattern": "bad pattern"}, "wildcards"),
                      ({"pattern": "acme-*", "like_model": "nope-1"}, "neither in the catalog nor"),
                      ({"pattern": "acme-*"}, "no current model for acme-*")]:
        refused = admin.post("/admin/models/rules", bad, token_from="/admin/models/rules")
        assert refused.status_code == 200 and text in html(refused), bad
    with app.app_context():
        rules = {r.pattern: r for r in db.session.scalars(select(PriceRule))}
        assert rules["claude-opus-*"].like_model == "claude-opus-4-8"
        assert rules["mistral-*"].output_nanos == 6000
        rule_id = rules["mistral-*"].id
    assert admin.client.post(f"/admin/models/rules/{rule_id}/delete").status_code == 400  # no CSRF
    assert admin.post(f"/admin/models/rules/{rule_id}/delete", token_from=RULES).status_code == 302
    assert admin.post("/admin/models/rules/999999/delete", token_from=RULES).status_code == 404
    with app.app_context():
        assert db.session.get(PriceRule, rule_id) is None


def test_ledger_rows_are_untouched_by_sync(app, runner, fake_upstream):
    anthropic_lists(fake_upstream, ["claude-sonnet-5-5"])
    openai_lists(fake_upstream, [])
    assert runner.invoke(args=["sync-models"]).exit_code == 0
    with app.app_context():
        assert db.session.scalar(select(LedgerEntry.id).limit(1)) is None


def test_ids_the_gateway_cannot_serve_are_skipped(app, runner, fake_upstream):
    anthropic_lists(fake_upstream, ["claude-opus-6/../../admin", "claude-" + "x" * 120, " claude-opus-6"])
    openai_lists(fake_upstream, [])
    result = runner.invoke(args=["sync-models"])
    assert "env-anthropic (anthropic): 3 models listed, 0 added, 0 need a price" in result.output
    with app.app_context():
        assert not db.session.scalars(select(CatalogModel.id).where(CatalogModel.id.like("%opus-6%"))).all()
