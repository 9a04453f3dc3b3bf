"""POST /v1/messages through the real anthropic SDK: passthrough, streaming, tools, thinking, caching."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.fake_upstream import message
from tests.fake_upstream import stream_events

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"  # copied from shared/clients
HAIKU = "claude-haiku-4-5"
# nano-USD per token of the seeded Haiku 4.5 and Opus prices
HAIKU_IN, HAIKU_OUT, HAIKU_CW, HAIKU_CW1H, HAIKU_CR = 1000, 5000, 1250, 2000, 100
OPUS_IN, OPUS_OUT = 5000, 25000


@pytest.mark.parametrize("base_url", ["http://gateway.test", "http://gateway.test/v1"])
@pytest.mark.parametrize("bearer", [False, True])
def test_create_message_charges_reported_usage(sdk, funded, wallets, fake_upstream, base_url, bearer):
    user_id, key = funded
    fake_upstream.reply(message("Paris.", input_tokens=14, output_tokens=10))
    client = sdk(key, base_url=base_url, bearer=bearer)

    reply = client.messages.with_raw_response.create(
        model="claude-opus-4-6", max_tokens=1024,
        messages=[{"role": "user", "content": "What is the capital of France?"}])

    msg = reply.parse()
    assert msg.content[0].text == "Paris."
    sent = fake_upstream.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["X-Api-Key"] == "sk-ant-fake-upstream-key"
    assert key not in json.dumps(sent.headers)
    [charge] = wallets.charges(user_id)
    assert charge.request_id == reply.headers["request-id"]
    assert (charge.input_tokens, charge.output_tokens, charge.status) == (14, 10, "complete")
    assert charge.amount_nanos == -(14 * OPUS_IN + 10 * OPUS_OUT)
    assert wallets.balance(user_id) == 10 * 10**9 - (14 * OPUS_IN + 10 * OPUS_OUT)
    wallets.assert_consistent(user_id)


def test_alias_is_rewritten_and_everything_else_passes_through(sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.reply(message(model="claude-haiku-4-5-20251001"))
    body = {
        "model": HAIKU, "max_tokens": 300, "temperature": 0.2, "top_k": 5,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "mid"}],
        "metadata": {"user_id": json.dumps({"session": "x"})},
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "a_field_from_the_future": {"nested": [1, 2.5, None, "\u00e9"]},
    }
    client = sdk(key)
    client.post("/v1/messages", body=body, cast_to=object,
                options={"headers": {"anthropic-beta": "context-1m-2025-08-07,effort-2025-11-24",
                                     "anthropic-version": "2023-06-01"}})

    sent = fake_upstream.requests[-1]
    assert sent.body == {**body, "model": "claude-haiku-4-5-20251001"}
    assert sent.headers["Anthropic-Beta"] == "context-1m-2025-08-07,effort-2025-11-24"
    assert sent.headers["Anthropic-Version"] == "2023-06-01"
    [charge] = wallets.charges(user_id)
    assert charge.model == "claude-haiku-4-5-20251001"
    wallets.assert_consistent(user_id)


def test_stream_relays_events_and_charges_once(sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    msg = message("one two three four", input_tokens=25, output_tokens=7)
    fake_upstream.stream(stream_events(msg))
    client = sdk(key, base_url="http://gateway.test/v1")

    with client.messages.stream(model="claude-opus-4-8", max_tokens=100,
                                messages=[{"role": "user", "content": "count"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "one two three four"
    assert final.usage.output_tokens == 7
    assert fake_upstream.requests[-1].body["stream"] is True
    [charge] = wallets.charges(user_id)
    assert (charge.input_tokens, charge.output_tokens, charge.status) == (25, 7, "complete")
    assert charge.amount_nanos == -(25 * OPUS_IN + 7 * OPUS_OUT)
    wallets.assert_consistent(user_id)


def test_tool_use_round_trip(sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    tool = {"name": "get_weather", "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    use = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
    fake_upstream.stream(stream_events(message(content=[use], stop_reason="tool_use")))
    fake_upstream.reply(message("22 degrees in Paris."))
    client = sdk(key)

    with client.messages.stream(model=HAIKU, max_tokens=200, tools=[tool],
                                tool_choice={"type": "auto"},
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
        first = s.get_final_message()
    assert first.stop_reason == "tool_use"
    assert first.content[0].input == {"city": "Paris"}
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": [use]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                             "content": "22 degrees"}]}]
    second = client.messages.create(model=HAIKU, max_tokens=200, tools=[tool], messages=history)

    assert second.content[0].text == "22 degrees in Paris."
    assert fake_upstream.requests[-1].body["messages"] == history
    assert fake_upstream.requests[-1].body["tools"] == [tool]
    assert len(wallets.charges(user_id)) == 2
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("stream", [False, True])
def test_thinking_signature_survives_byte_for_byte(sdk, funded, wallets, fake_upstream, stream):
    user_id, key = funded
    signature = "EqQBCkYIBxgCKkD+/=" + base64.b64encode(bytes(range(256))).decode()
    thinking = {"type": "thinking", "thinking": "Let me think \u2026 carefully.", "signature": signature}
    msg = message(content=[thinking, {"type": "text", "text": "Done."}])
    if stream:
        fake_upstream.stream(stream_events(msg))
    else:
        fake_upstream.reply(msg)
    fake_upstream.reply(message("ok"))
    client = sdk(key)
    request = dict(model="claude-opus-4-8", max_tokens=2000,
                   thinking={"type": "enabled", "budget_tokens": 1024},
                   messages=[{"role": "user", "content": "Think."}])

    if stream:
        with client.messages.stream(**request) as s:
            got = s.get_final_message()
    else:
        got = client.messages.create(**request)
    assert got.content[0].signature == signature
    assert got.content[0].thinking == thinking["thinking"]
    # Sending the block back reaches the provider unchanged.
    history = request["messages"] + [{"role": "assistant", "content": [thinking]},
                                     {"role": "user", "content": "Go on."}]
    client.messages.create(**{**request, "messages": history})
    assert fake_upstream.requests[-1].body["messages"][1]["content"][0] == thinking
    assert fake_upstream.requests[-2].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    wallets.assert_consistent(user_id)


def test_image_and_document_blocks_pass_through(sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
        {"type": "text", "text": "Describe both."},
    ]
    sdk(key).messages.create(model=HAIKU, max_tokens=50, messages=[{"role": "user", "content": content}])
    assert fake_upstream.requests[-1].body["messages"][0]["content"] == content
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_caching_bills_writes_and_reads(sdk, funded, wallets, fake_upstream, stream):
    user_id, key = funded
    msg = message(input_tokens=3, output_tokens=20, cache_write=2000, cache_read=5000,
                  cache_creation={"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500})
    if stream:
        fake_upstream.stream(stream_events(msg))
    else:
        fake_upstream.reply(msg)
    client = sdk(key)
    request = dict(model=HAIKU, max_tokens=100, messages=[{"role": "user", "content": [
        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}])
    if stream:
        with client.messages.stream(**request) as s:
            s.until_done()
    else:
        client.messages.create(**request)

    [charge] = wallets.charges(user_id)
    assert (charge.cache_creation_input_tokens, charge.cache_creation_1h_input_tokens,
            charge.cache_read_input_tokens) == (2000, 500, 5000)
    expected = 3 * HAIKU_IN + 20 * HAIKU_OUT + 1500 * HAIKU_CW + 500 * HAIKU_CW1H + 5000 * HAIKU_CR
    assert charge.amount_nanos == -expected
    wallets.assert_consistent(user_id)


def _capture(name: str) -> list[dict]:
    return [json.loads(line) for line in (CAPTURES / name).read_text().splitlines()]


def test_claude_code_request_reaches_upstream_unchanged(client, funded, wallets, fake_upstream):
    user_id, key = funded
    head, post = _capture("claude_a1_baseurl_v1.jsonl")
    assert client.head(head["path"]).status_code == 200
    body = post["body"]
    raw = json.dumps(body).encode()
    fake_upstream.stream(stream_events(message(model=body["model"])))
    headers = {k: v for k, v in post["headers"].items()
               if k.lower() not in ("host", "content-length", "x-api-key", "connection", "accept-encoding")}

    response = client.post(post["path"], data=raw, headers={**headers, "x-api-key": key})

    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert b"event: message_stop" in response.data
    sent = fake_upstream.requests[-1]
    assert sent.raw == raw
    assert sent.path == "/v1/messages"
    assert sent.headers["Anthropic-Beta"] == post["headers"]["anthropic-beta"]
    assert sent.headers["Anthropic-Version"] == post["headers"]["anthropic-version"]
    assert len(wallets.charges(user_id)) == 1
    wallets.assert_consistent(user_id)


def test_count_tokens_is_forwarded_and_free(client, funded, wallets, fake_upstream):
    user_id, key = funded
    requests = [r for r in _capture("claude_a8_context_cmd.jsonl") if r["method"] == "POST"]
    for captured in requests:
        fake_upstream.reply({"input_tokens": 1234})
        response = client.post(captured["path"], json=captured["body"],
                               headers={"x-api-key": key, "anthropic-version": "2023-06-01",
                                        "anthropic-beta": captured["headers"]["anthropic-beta"]})
        assert response.status_code == 200, response.json
        assert response.json == {"input_tokens": 1234}
    assert fake_upstream.requests[-1].path == "/v1/messages/count_tokens"
    assert len(fake_upstream.requests) == len(requests)
    assert wallets.charges(user_id) == []
    assert wallets.balance(user_id) == 10 * 10**9
    wallets.assert_consistent(user_id)


def test_count_tokens_through_sdk(sdk, funded, fake_upstream):
    _, key = funded
    fake_upstream.reply({"input_tokens": 12})
    counted = sdk(key, base_url="http://gateway.test/v1").messages.count_tokens(
        model=HAIKU, messages=[{"role": "user", "content": "Hello, world!"}])
    assert counted.input_tokens == 12
    assert fake_upstream.requests[-1].body["model"] == "claude-haiku-4-5-20251001"


@pytest.mark.parametrize("path", ["/", "/v1"])
def test_head_probes_answer_200(client, path):
    assert client.head(path).status_code == 200


@pytest.mark.parametrize("name, status", [("anthropic/claude-haiku-4-5", 200),
                                          ("openai/claude-haiku-4-5", 404)])
def test_provider_prefixed_model_ids_resolve(client, funded, fake_upstream, name, status):
    _, key = funded
    fake_upstream.reply(message(model="claude-haiku-4-5-20251001"))
    body = {"model": name, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    reply = client.post("/v1/messages", headers={"x-api-key": key}, json=body)
    assert reply.status_code == status
    if status == 200:
        assert fake_upstream.requests[-1].body["model"] == "claude-haiku-4-5-20251001"
