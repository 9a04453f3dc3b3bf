"""The built-in demo upstream: what a fresh ``make run`` with no provider key serves."""

from __future__ import annotations

import pytest

from pagegrid import create_app
from pagegrid.extensions import db
from pagegrid.pool import pool
from pagegrid.pool import upstream_label


@pytest.fixture
def demo_app(app):
    """The test app with no Anthropic key configured."""
    app.config["PAGEGRID_ANTHROPIC_KEY"] = None
    pool(app).forget()
    return app


def test_demo_answers_both_modes_and_is_charged(demo_app, sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    client = sdk(key, base_url="http://gateway.test/v1")
    msg = client.messages.create(model="claude-sonnet-4-6", max_tokens=200,
                                 messages=[{"role": "user", "content": "ping"}])
    assert "demo" in msg.content[0].text and "ping" in msg.content[0].text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=200,
                                messages=[{"role": "user", "content": "pong"}]) as stream:
        streamed = "".join(stream.text_stream)
    assert "pong" in streamed
    assert fake_upstream.requests == []
    charges = wallets.charges(user_id)
    assert [c.status for c in charges] == ["complete", "complete"]
    assert all(c.amount_nanos < 0 for c in charges)
    wallets.assert_consistent(user_id)


def test_demo_reports_cache_writes_then_reads(demo_app, sdk, funded, wallets):
    user_id, key = funded
    client = sdk(key)
    request = dict(model="claude-haiku-4-5", max_tokens=100, system=[
        {"type": "text", "text": "A long shared system prompt. " * 40,
         "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hello"}])
    first = client.messages.create(**request)
    second = client.messages.create(**request)
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    writes, reads = wallets.charges(user_id)
    assert writes.cache_creation_input_tokens > 0 and reads.cache_read_input_tokens > 0
    wallets.assert_consistent(user_id)


def test_demo_counts_tokens_and_labels_itself(demo_app, client, funded):
    _, key = funded
    counted = client.post("/v1/messages/count_tokens", headers={"x-api-key": key},
                          json={"model": "claude-opus-4-8", "messages": [{"role": "user", "content": "hi"}]})
    assert counted.status_code == 200 and counted.json["input_tokens"] > 0
    labels = {m["id"]: m["upstream"] for m in client.get("/v1/models").json["data"]}
    assert labels["claude-opus-4-8"] == "demo"
    assert b"Demo upstream active" in client.get("/").data


def test_demo_stops_at_max_tokens(demo_app, sdk, funded):
    msg = sdk(funded[1]).messages.create(model="claude-haiku-4-5", max_tokens=3,
                                         messages=[{"role": "user", "content": "hi"}])
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens <= 3


def test_configured_key_turns_the_demo_off(database_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "PAGEGRID_ANTHROPIC_KEY": "sk-real"})
    with app.app_context():
        (account,), _, _ = pool(app).plan("anthropic", ["claude-opus-4-8"], lambda: None)
        assert (account.provider, account.api_key) == ("anthropic", "sk-real")
        assert upstream_label("anthropic") == "anthropic"
        db.session.remove()
        db.engine.dispose()
