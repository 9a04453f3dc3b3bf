"""POST /v1/responses through the real openai SDK (what Codex CLI speaks), and GPT models on /v1/messages."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest

from tests.fake_upstream import chat_chunks
from tests.fake_upstream import chat_completion
from tests.fake_upstream import message
from tests.fake_upstream import openai_response
from tests.fake_upstream import openai_response_events
from tests.fake_upstream import stream_events

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
TOOL = {"type": "function", "name": "exec_command", "description": "Run a command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}}


def test_gpt_responses_pass_through(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.reply(openai_response("Hi!", input_tokens=50, output_tokens=4, cached_tokens=20))
    response = openai_sdk(key).responses.create(model="gpt-5.4", input="say hi")
    assert response.output_text == "Hi!"
    assert fake_upstream.requests[-1].path == "/v1/responses"
    assert fake_upstream.requests[-1].body == {"model": "gpt-5.4", "input": "say hi"}
    [charge] = wallets.charges(user_id)
    assert (charge.input_tokens, charge.cache_read_input_tokens, charge.output_tokens) == (30, 20, 4)
    assert charge.amount_nanos == -(30 * 2500 + 20 * 250 + 4 * 15000)
    wallets.assert_consistent(user_id)


def test_gpt_responses_stream_passes_through(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(openai_response_events(openai_response("streamed", input_tokens=9, output_tokens=2)))
    with openai_sdk(key).responses.stream(model="gpt-5.4", input="go") as stream:
        final = stream.get_final_response()
    assert final.output_text == "streamed"
    [charge] = wallets.charges(user_id)
    assert (charge.input_tokens, charge.output_tokens, charge.status) == (9, 2, "complete")
    wallets.assert_consistent(user_id)


def test_claude_responses_non_streaming(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.reply(message("Hello from Claude.", model="claude-sonnet-4-6", input_tokens=15,
                                output_tokens=5))
    response = openai_sdk(key).responses.create(model="claude-sonnet-4-6", instructions="Be kind.",
                                                input="say hi", max_output_tokens=300)
    assert response.output_text == "Hello from Claude."
    assert response.status == "completed"
    assert response.usage.input_tokens == 15 and response.usage.output_tokens == 5
    sent = fake_upstream.requests[-1].body
    assert sent["max_tokens"] == 300 and "Be kind." in json.dumps(sent["system"])
    assert wallets.charges(user_id)[0].amount_nanos == -(15 * 3000 + 5 * 15000)
    wallets.assert_consistent(user_id)


def test_claude_responses_stream_with_function_call_round_trip(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    use = {"type": "tool_use", "id": "toolu_1", "name": "exec_command", "input": {"cmd": "echo hi"}}
    fake_upstream.stream(stream_events(message(content=[{"type": "text", "text": "Running it."}, use],
                                               stop_reason="tool_use", model="claude-sonnet-4-6")))
    client = openai_sdk(key)
    with client.responses.stream(model="claude-sonnet-4-6", input="run echo hi", tools=[TOOL]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.function_call_arguments.delta" in kinds
    call = next(item for item in final.output if item.type == "function_call")
    assert (call.call_id, call.name, json.loads(call.arguments)) == \
        ("toolu_1", "exec_command", {"cmd": "echo hi"})

    fake_upstream.stream(stream_events(message("It printed hi.", model="claude-sonnet-4-6")))
    with client.responses.stream(model="claude-sonnet-4-6", tools=[TOOL], input=[
            {"role": "user", "content": "run echo hi"},
            {"type": "function_call", "call_id": "toolu_1", "name": "exec_command",
             "arguments": '{"cmd":"echo hi"}'},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "hi\n"}]) as stream:
        assert stream.get_final_response().output_text == "It printed hi."
    sent = fake_upstream.requests[-1].body["messages"]
    assert sent[1]["content"][-1]["type"] == "tool_use"
    assert sent[2]["content"][0]["type"] == "tool_result"
    assert sent[2]["content"][0]["tool_use_id"] == "toolu_1"
    assert len(wallets.charges(user_id)) == 2
    wallets.assert_consistent(user_id)


def test_max_tokens_ends_as_incomplete(openai_sdk, funded, fake_upstream):
    _, key = funded
    fake_upstream.stream(stream_events(message("cut", stop_reason="max_tokens", model="claude-opus-4-8")))
    with openai_sdk(key).responses.stream(model="claude-opus-4-8", input="long", max_output_tokens=16) as s:
        kinds = [event.type for event in s]
    assert kinds[-1] == "response.incomplete"


@pytest.mark.parametrize("model", ["gpt-5.4", "claude-sonnet-4-6"])
def test_codex_capture_replays(client, funded, wallets, fake_upstream, model):
    user_id, key = funded
    body = json.loads((CAPTURES / "codex_b4_custom_provider_responses.jsonl").read_text())["body"]
    body["model"] = model
    if model.startswith("gpt"):
        fake_upstream.stream(openai_response_events(openai_response("hi", model=model)))
    else:
        fake_upstream.stream(stream_events(message("hi", model=model)))
    response = client.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.data
    assert "event: response.completed" in response.get_data(as_text=True)
    sent = fake_upstream.requests[-1]
    if model.startswith("gpt"):
        # Codex's web_search tool bills per call: the gateway bounds the calls it may make.
        assert sent.body == {**body, "max_tool_calls": 10}
    else:
        assert {t["name"] for t in sent.body["tools"]} >= {"exec_command"}
        assert "multi_agent_v1" not in {t["name"] for t in sent.body["tools"]}
    assert len(wallets.charges(user_id)) == 1
    wallets.assert_consistent(user_id)


def test_websocket_upgrade_gets_426(client):
    captured = [json.loads(line) for line in
                (CAPTURES / "codex_b6_ws_status_426.jsonl").read_text().splitlines()][0]
    headers = {k: v for k, v in captured["headers"].items()
               if k.lower() in ("connection", "upgrade", "sec-websocket-version", "sec-websocket-key")}
    response = client.get(captured["path"], headers=headers)
    assert response.status_code == 426
    assert response.json["error"]["type"] == "invalid_request_error"


def test_gpt_model_on_the_messages_api(sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.reply(chat_completion("Hi from GPT.", prompt_tokens=10, completion_tokens=4))
    msg = sdk(key).messages.create(model="gpt-5.4", max_tokens=100, system="Be brief.",
                                   messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hi from GPT."
    assert msg.stop_reason == "end_turn"
    sent = fake_upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.body["max_completion_tokens"] == 100

    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    fake_upstream.stream(chat_chunks(chat_completion(None, tool_calls=[call], finish_reason="tool_calls")))
    tool = {"name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    with sdk(key).messages.stream(model="gpt-5.4", max_tokens=100, tools=[tool],
                                  messages=[{"role": "user", "content": "Weather in Oslo?"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].input == {"city": "Oslo"}
    assert fake_upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    assert len(wallets.charges(user_id)) == 2
    wallets.assert_consistent(user_id)


def test_gpt_top_k_is_refused_on_messages(sdk, funded, fake_upstream):
    with pytest.raises(anthropic.BadRequestError):
        sdk(funded[1]).messages.create(model="gpt-5.4", max_tokens=10, extra_body={"top_k": 5},
                                       messages=[{"role": "user", "content": "hi"}])
    assert fake_upstream.requests == []
