"""POST /v1/chat/completions through the real openai SDK, for GPT (passthrough) and Claude (translated)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import openai
import pytest

from pagegrid.pool import pool
from tests.conftest import OPENAI_UPSTREAM_KEY
from tests.fake_upstream import chat_chunks
from tests.fake_upstream import chat_completion
from tests.fake_upstream import message
from tests.fake_upstream import stream_events

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
GPT_IN, GPT_OUT, GPT_CACHED = 2500, 15000, 250  # gpt-5.4, nano-USD per token
SONNET_IN, SONNET_OUT, SONNET_CR = 3000, 15000, 300
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                         "parameters": {"type": "object",
                                                        "properties": {"city": {"type": "string"}}}}}


def test_gpt_passthrough_bills_cached_tokens_at_the_read_rate(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.reply(chat_completion("4", prompt_tokens=100, completion_tokens=10, cached_tokens=40))
    reply = openai_sdk(key).chat.completions.with_raw_response.create(
        model="gpt-5.4", max_tokens=100, messages=[{"role": "user", "content": "2+2?"}])
    completion = reply.parse()

    assert completion.choices[0].message.content == "4"
    assert completion.usage.prompt_tokens_details.cached_tokens == 40
    sent = fake_upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert sent.body == {"model": "gpt-5.4", "max_completion_tokens": 100,  # reasoning model rule
                         "messages": [{"role": "user", "content": "2+2?"}]}
    assert reply.headers["x-ratelimit-limit-requests"] == "10000"
    assert "x-ratelimit-remaining-requests" in reply.headers
    [charge] = wallets.charges(user_id)
    assert (charge.input_tokens, charge.cache_read_input_tokens, charge.output_tokens) == (60, 40, 10)
    assert charge.amount_nanos == -(60 * GPT_IN + 40 * GPT_CACHED + 10 * GPT_OUT)
    assert charge.request_id == reply.headers["request-id"]
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("include_usage", [False, True])
def test_gpt_stream_is_always_metered(openai_sdk, funded, wallets, fake_upstream, include_usage):
    user_id, key = funded
    fake_upstream.stream(chat_chunks(chat_completion("one two three", prompt_tokens=12, completion_tokens=3)))
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(openai_sdk(key).chat.completions.create(
        model="gpt-5.4", stream=True, messages=[{"role": "user", "content": "count"}], **kwargs))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three "
    assert fake_upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == (1 if include_usage else 0)
    [charge] = wallets.charges(user_id)
    assert (charge.input_tokens, charge.output_tokens, charge.status) == (12, 3, "complete")
    wallets.assert_consistent(user_id)


def test_claude_through_chat_arrives_as_a_messages_request(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.reply(message("Paris.", model="claude-sonnet-4-6", input_tokens=20, output_tokens=3,
                                cache_read=100))
    completion = openai_sdk(key).chat.completions.create(
        model="claude-sonnet-4-6", max_completion_tokens=200, temperature=0.5, stop=["END"], user="u-1",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Capital of France?"}])

    sent = fake_upstream.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["X-Api-Key"] == "sk-ant-fake-upstream-key"
    assert sent.body["model"] == "claude-sonnet-4-6"
    assert sent.body["max_tokens"] == 200
    assert sent.body["stop_sequences"] == ["END"]
    assert sent.body["metadata"] == {"user_id": "u-1"}
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]}]
    assert "Be brief." in json.dumps(sent.body["system"])
    assert completion.choices[0].message.content == "Paris."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "claude-sonnet-4-6"
    assert completion.usage.prompt_tokens == 120
    assert completion.usage.prompt_tokens_details.cached_tokens == 100
    [charge] = wallets.charges(user_id)
    assert charge.amount_nanos == -(20 * SONNET_IN + 3 * SONNET_OUT + 100 * SONNET_CR)
    wallets.assert_consistent(user_id)


def test_claude_streamed_tool_calls_reassemble_in_the_sdk(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    use = {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}}
    fake_upstream.stream(stream_events(message("Let me check.", content=[
        {"type": "text", "text": "Let me check."}, use], stop_reason="tool_use", input_tokens=30)))
    with openai_sdk(key).chat.completions.stream(
            model="claude-haiku-4-5", tools=[TOOL], messages=[{"role": "user", "content": "Weather?"}]) as s:
        final = s.get_final_completion()

    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("toolu_9", "get_weather", {"city": "Paris"})
    assert fake_upstream.requests[-1].body["tools"][0]["name"] == "get_weather"
    [charge] = wallets.charges(user_id)
    assert (charge.status, charge.input_tokens) == ("complete", 30)
    wallets.assert_consistent(user_id)


def test_tool_results_go_back_as_one_user_turn(openai_sdk, funded, fake_upstream):
    _, key = funded
    fake_upstream.reply(message("It is 22 degrees.", model="claude-haiku-4-5-20251001"))
    call = {"id": "toolu_9", "type": "function", "function": {"name": "get_weather",
                                                            "arguments": '{"city":"Paris"}'}}
    openai_sdk(key).chat.completions.create(model="claude-haiku-4-5", tools=[TOOL], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "toolu_9", "content": "22 degrees"}])
    sent = fake_upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][-1] == {"type": "tool_use", "id": "toolu_9", "name": "get_weather",
                                      "input": {"city": "Paris"}}
    assert sent[2]["content"][0]["type"] == "tool_result"
    assert sent[2]["content"][0]["tool_use_id"] == "toolu_9"


def test_image_data_url_becomes_a_base64_block(openai_sdk, funded, fake_upstream):
    _, key = funded
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(32)).decode()
    fake_upstream.reply(message("A square.", model="claude-opus-4-8"))
    openai_sdk(key).chat.completions.create(model="claude-opus-4-8", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    blocks = fake_upstream.requests[-1].body["messages"][0]["content"]
    assert blocks[1] == {"type": "image",
                         "source": {"type": "base64", "media_type": "image/png", "data": png}}


@pytest.mark.parametrize("extra, param", [({"n": 2}, "n"), ({"temperature": 1.5}, "temperature"),
                                          ({"logprobs": True}, "logprobs")])
def test_unsupported_fields_get_400_and_cost_nothing(openai_sdk, funded, wallets, fake_upstream,
                                                      extra, param):
    user_id, key = funded
    with pytest.raises(openai.BadRequestError) as info:
        openai_sdk(key).chat.completions.create(model="claude-opus-4-8",
                                                messages=[{"role": "user", "content": "hi"}], **extra)
    assert info.value.body["param"] == param
    assert info.value.body["type"] == "invalid_request_error"
    assert fake_upstream.requests == []
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("status, error_class", [(401, openai.AuthenticationError),
                                                 (402, openai.APIStatusError),
                                                 (404, openai.NotFoundError)])
def test_refusals_use_the_openai_error_shape(openai_sdk, wallets, fake_upstream, status, error_class):
    user_id = wallets.user("0" if status == 402 else "1")
    key = "pg-" + "0" * 64 if status == 401 else wallets.key(user_id)
    model = "gpt-9" if status == 404 else "gpt-5.4"
    with pytest.raises(error_class) as info:
        openai_sdk(key).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == status
    assert set(info.value.body) == {"message", "type", "param", "code"}
    assert fake_upstream.requests == []


def test_upstream_error_mid_stream_becomes_an_error_chunk(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    events = stream_events(message("alpha beta", input_tokens=10))[:4]
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    fake_upstream.stream(events)
    with pytest.raises(openai.APIError, match="Overloaded"):
        for _ in openai_sdk(key).chat.completions.create(
                model="claude-opus-4-8", stream=True, messages=[{"role": "user", "content": "hi"}]):
            pass
    [charge] = wallets.charges(user_id)
    assert (charge.status, charge.input_tokens) == ("upstream_error", 10)
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("model", ["gpt-5.4", "claude-sonnet-4-6"])
def test_openclaw_capture_replays(client, funded, wallets, fake_upstream, model):
    user_id, key = funded
    body = json.loads((CAPTURES / "openclaw_c4_agent_exec_openai_chat.jsonl").read_text())["body"]
    body["model"] = model
    if model.startswith("gpt"):
        fake_upstream.stream(chat_chunks(chat_completion("ok", model=model)))
    else:
        fake_upstream.stream(stream_events(message("ok", model=model)))
    response = client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.data
    text = response.get_data(as_text=True)
    assert text.rstrip().endswith("data: [DONE]")
    assert '"usage"' in text  # OpenClaw asked for include_usage
    assert len(wallets.charges(user_id)) == 1
    wallets.assert_consistent(user_id)


def test_demo_serves_gpt_models_too(app, openai_sdk, funded, wallets, fake_upstream):
    app.config["PAGEGRID_OPENAI_KEY"] = None
    pool(app).forget()
    user_id, key = funded
    completion = openai_sdk(key).chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hello demo"}])
    assert "demo" in completion.choices[0].message.content
    chunks = list(openai_sdk(key).chat.completions.create(
        model="gpt-5.5", stream=True, messages=[{"role": "user", "content": "hello"}]))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert fake_upstream.requests == []
    assert len(wallets.charges(user_id)) == 2
    wallets.assert_consistent(user_id)


def test_harmless_openai_parameters_are_accepted_and_left_out(openai_sdk, funded, fake_upstream):
    _, key = funded
    fake_upstream.reply(message("ok", model="claude-opus-4-8"))
    openai_sdk(key).chat.completions.create(
        model="claude-opus-4-8", messages=[{"role": "user", "content": "hi"}], seed=7, n=1,
        logit_bias={"50256": -100}, presence_penalty=0.5, frequency_penalty=0.2, temperature=0.3, top_p=0.9)
    sent = fake_upstream.requests[-1].body
    assert sent["temperature"] == 0.3 and "top_p" not in sent
    assert not {"seed", "logit_bias", "presence_penalty", "frequency_penalty", "n"} & set(sent)


def test_max_tokens_becomes_max_completion_tokens_for_reasoning_models(client, funded, fake_upstream):
    _, key = funded
    fake_upstream.reply(chat_completion("ok"))
    body = {"model": "gpt-5.4", "max_tokens": 77, "messages": [{"role": "user", "content": "hi"}]}
    reply = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == reply.headers["request-id"]
    sent = fake_upstream.requests[-1].body
    assert sent["max_completion_tokens"] == 77 and "max_tokens" not in sent
