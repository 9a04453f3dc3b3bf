"""GET /v1/models: the live catalog, parsed by both SDKs, prices straight from the database."""

from __future__ import annotations

import httpx2
import openai
import pytest
from sqlalchemy import update

from pagegrid.catalog import SEED
from pagegrid.extensions import db
from pagegrid.models import CatalogModel


@pytest.mark.parametrize("path", ["/v1/models", "/v1/v1/models"])
def test_models_need_no_key_and_list_every_seeded_model(client, path):
    response = client.get(path)
    assert response.status_code == 200
    ids = [m["id"] for m in response.json["data"]]
    assert sorted(ids) == sorted(s[0] for s in SEED)
    haiku = next(m for m in response.json["data"] if m["id"] == "claude-haiku-4-5-20251001")
    assert haiku["aliases"] == ["claude-haiku-4-5"]
    assert haiku["pricing"] == {"currency": "USD", "unit": "1M tokens", "input": 1.0, "output": 5.0,
                                "cache_write": 1.25, "cache_write_1h": 2.0, "cache_read": 0.1,
                                "server_tools": {"web_search": 0.01, "web_fetch": 0.0,
                                                 "code_execution": 0.05}}
    assert haiku["context_window"] == 200_000 and haiku["max_output_tokens"] == 64_000
    assert haiku["capabilities"] == {"vision": True, "tools": True, "thinking": True}
    assert haiku["upstream"] == "anthropic"


def test_anthropic_sdk_lists_and_retrieves_models(sdk, funded):
    client = sdk(funded[1], base_url="http://gateway.test/v1")
    models = list(client.models.list())
    assert {m.id for m in models} >= {"claude-opus-4-8", "gpt-5.5"}
    opus = client.models.retrieve("claude-opus-4-8")
    assert opus.display_name == "Claude Opus 4.8"
    assert opus.max_tokens == 128_000


def test_openai_sdk_lists_models(app, funded):
    http_client = httpx2.Client(transport=httpx2.WSGITransport(app=app))
    client = openai.OpenAI(api_key=funded[1], base_url="http://gateway.test/v1",
                           http_client=http_client, max_retries=0)
    models = list(client.models.list())
    by_id = {m.id: m for m in models}
    assert by_id["gpt-5.4"].owned_by == "openai"
    assert by_id["claude-sonnet-4-6"].created > 0
    http_client.close()


def test_price_edits_show_up_live(app, client):
    with app.app_context():
        db.session.execute(update(CatalogModel).where(CatalogModel.id == "claude-sonnet-4-6")
                           .values(input_nanos=3125))
        db.session.commit()
    app.extensions["pagegrid.catalog"].invalidate()
    sonnet = client.get("/v1/models/claude-sonnet-4-6").json
    assert sonnet["pricing"]["input"] == 3.125


def test_a_key_with_an_allow_list_sees_only_its_models(client, wallets):
    key = wallets.key(wallets.user("1"), allowed_models=["claude-haiku-4-5", "gpt-5.4"])
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert [m["id"] for m in response.json["data"]] == ["claude-haiku-4-5-20251001", "gpt-5.4"]
    assert client.get("/v1/models/claude-haiku-4-5", headers={"x-api-key": key}).status_code == 200
    assert client.get("/v1/models/claude-opus-4-8", headers={"x-api-key": key}).status_code == 404


def test_init_db_is_safe_to_run_twice_and_keeps_edits(app, runner):
    with app.app_context():
        db.session.execute(update(CatalogModel).where(CatalogModel.id == "gpt-5.5").values(output_nanos=1))
        db.session.commit()
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    assert "0 catalog models added" in result.output
    with app.app_context():
        assert db.session.get(CatalogModel, "gpt-5.5").output_nanos == 1
