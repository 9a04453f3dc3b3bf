"""Chat Completions ⇄ Anthropic Messages translation: table-driven cases, checked with the SDKs' own types."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from anthropic.types import MessageParam
from anthropic.types import RawMessageStreamEvent
from anthropic.types.message_create_params import MessageCreateParamsBase
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from anthropic.types.message_create_params import MessageCreateParamsStreaming
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming
from pydantic import BaseModel
from pydantic import TypeAdapter

from pagegrid.errors import InvalidRequest
from pagegrid.translate.chat_to_messages import CHAT_FIELDS
from pagegrid.translate.chat_to_messages import anthropic_message_to_openai_chat
from pagegrid.translate.chat_to_messages import openai_chat_request_to_anthropic
from pagegrid.translate.chat_to_messages_stream import OpenAIChatToAnthropicStream
from pagegrid.translate.messages_to_chat import ANTHROPIC_FIELDS
from pagegrid.translate.messages_to_chat import ANTHROPIC_IGNORED_FIELDS
from pagegrid.translate.messages_to_chat import anthropic_request_to_openai_chat
from pagegrid.translate.messages_to_chat import openai_chat_to_anthropic_message
from pagegrid.translate.messages_to_chat_stream import AnthropicToOpenAIChatStream

DATA = Path(__file__).parent / "data"
CLAUDE = "claude-up"
GPT = "gpt-up"
MAX_TOKENS = 4096
COMPLETION = {"model": "claude-x", "completion_id": "chatcmpl-1", "created": 1700000000}


def to_anthropic(body: object) -> dict:
    return openai_chat_request_to_anthropic(body, upstream_model=CLAUDE, default_max_tokens=MAX_TOKENS)


def load(name: str) -> list:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def cases(name: str) -> pytest.MarkDecorator:
    items = load(name)
    return pytest.mark.parametrize("case", items, ids=[item["name"] for item in items])


def capture(name: str, path_end: str) -> dict:
    for line in (DATA / "captures" / name).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["method"] == "POST" and record["path"].split("?")[0].endswith(path_end):
            return record["body"]
    raise LookupError(name)


@functools.cache
def adapter(kind: object) -> TypeAdapter:
    return TypeAdapter(kind)


def consume(value: object) -> object:
    """Walk a validated value: pydantic validates Iterable fields lazily, as they are read."""
    if isinstance(value, dict):
        return {key: consume(item) for key, item in value.items()}
    if isinstance(value, str | bytes | int | float | BaseModel) or value is None:
        return value
    return [consume(item) for item in value]


def check_anthropic_request(request: dict) -> None:
    """What the Messages API itself would refuse, plus the SDK's own request types."""
    allowed = set(MessageCreateParamsBase.__annotations__) | {"temperature", "top_p", "stream"}
    assert set(request) <= allowed
    params = MessageCreateParamsStreaming if request.get("stream") else MessageCreateParamsNonStreaming
    consume(adapter(params).validate_python(request))
    roles = [message["role"] for message in request["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), roles
    for message in request["messages"]:
        assert message["content"], message
        kinds = [block["type"] for block in message["content"]]
        assert kinds == sorted(kinds, key=lambda kind: kind != "tool_result"), kinds
        for block in message["content"]:
            if block["type"] == "text":
                assert block["text"].strip()
    for block in request.get("system", []):
        assert block["type"] == "text" and block["text"].strip()
    for tool in request.get("tools", []):
        assert tool["input_schema"]["type"] == "object"
    if "thinking" in request:
        assert request["thinking"]["budget_tokens"] < request["max_tokens"]


def check_openai_request(request: dict) -> None:
    """The SDK's own request types, no Anthropic-only markers, and tool answers right after their calls."""
    assert set(request) <= set(CompletionCreateParamsBase.__annotations__) | {"stream"}
    params = CompletionCreateParamsStreaming if request.get("stream") else CompletionCreateParamsNonStreaming
    consume(adapter(params).validate_python(request))
    assert "cache_control" not in json.dumps(request)
    calls: set[str] = set()
    for message in request["messages"]:
        if message["role"] == "tool":
            assert message["tool_call_id"] in calls, message
        else:
            calls = {call["id"] for call in message.get("tool_calls", [])}


@cases("chat_requests.json")
def test_openai_chat_request_to_anthropic(case: dict) -> None:
    body = copy.deepcopy(case["input"])
    if "error_param" in case:
        with pytest.raises(InvalidRequest) as raised:
            to_anthropic(body)
        assert raised.value.param == case["error_param"]
        assert raised.value.status == 400 and raised.value.message
        return
    request = to_anthropic(body)
    assert request == case["expected"]
    assert body == case["input"]
    check_anthropic_request(request)


@cases("chat_upstream_requests.json")
def test_anthropic_request_to_openai_chat(case: dict) -> None:
    body = copy.deepcopy(case["input"])
    if "error_param" in case:
        with pytest.raises(InvalidRequest) as raised:
            anthropic_request_to_openai_chat(body, upstream_model=GPT)
        assert raised.value.param == case["error_param"]
        assert raised.value.status == 400 and raised.value.message
        return
    request = anthropic_request_to_openai_chat(body, upstream_model=GPT)
    assert request == case["expected"]
    assert body == case["input"]
    check_openai_request(request)


@cases("chat_responses.json")
def test_anthropic_message_to_openai_chat(case: dict) -> None:
    Message.model_validate(case["input"])
    completion = anthropic_message_to_openai_chat(case["input"], **COMPLETION)
    assert completion == case["expected"]
    ChatCompletion.model_validate(completion)


@cases("chat_upstream_responses.json")
def test_openai_chat_to_anthropic_message(case: dict) -> None:
    ChatCompletion.model_validate(case["input"])
    message = openai_chat_to_anthropic_message(case["input"], model="gpt-x")
    assert message == case["expected"]
    Message.model_validate(message)


def run_anthropic_stream(events: list[dict], include_usage: bool) -> list[dict]:
    translator = AnthropicToOpenAIChatStream(include_usage=include_usage, **COMPLETION)
    chunks = [chunk for event in events for chunk in translator.feed(event)] + translator.finish()
    assert translator.feed({"type": "message_stop"}) == []
    assert translator.finish() == []
    return chunks


def run_openai_stream(chunks: list[dict]) -> list[list]:
    translator = OpenAIChatToAnthropicStream(model="gpt-x", message_id="msg_1")
    events = [list(pair) for chunk in chunks for pair in translator.feed(chunk)]
    events += [list(pair) for pair in translator.finish()]
    assert translator.feed({"choices": [{"index": 0, "delta": {"content": "late"}}]}) == []
    assert translator.finish() == []
    return events


@cases("chat_streams.json")
def test_anthropic_to_openai_chat_stream(case: dict) -> None:
    for event in case["events"]:
        if event["type"] not in ("ping", "error"):
            adapter(RawMessageStreamEvent).validate_python(event)
    chunks = run_anthropic_stream(case["events"], case["include_usage"])
    assert chunks == case["expected"]
    for chunk in chunks:
        if "error" not in chunk:
            ChatCompletionChunk.model_validate(chunk)


@cases("chat_upstream_streams.json")
def test_openai_chat_to_anthropic_stream(case: dict) -> None:
    for chunk in case["chunks"]:
        if "error" not in chunk:
            ChatCompletionChunk.model_validate(chunk)
    events = run_openai_stream(case["chunks"])
    assert events == case["expected"]
    for name, data in events:
        assert name == data["type"]
        if name != "error":
            adapter(RawMessageStreamEvent).validate_python(data)


def block_delta(index: int, kind: str, field: str, value: str) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: value}}


def json_delta(index: int, fragment: str) -> dict:
    return block_delta(index, "input_json_delta", "partial_json", fragment)


TOOL_STREAM = [
    {"type": "message_start", "message": {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-6", "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 472, "output_tokens": 2, "cache_creation_input_tokens": 1000,
                  "cache_read_input_tokens": 2000}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    block_delta(0, "text_delta", "text", "Okay, let's check "),
    block_delta(0, "text_delta", "text", "the weather."),
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1,
     "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                       "input": {}}},
    json_delta(1, ""),
    json_delta(1, "{\"locat"),
    json_delta(1, "ion\": \"San Fra"),
    json_delta(1, "ncisco, CA\", \"note\": \"caf\\u00"),
    json_delta(1, "e9 \\\"quoted\\\"\", \"unit\": \"fah"),
    json_delta(1, "renheit\"}"),
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2,
     "content_block": {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}},
    json_delta(2, "{}"),
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 89}},
    {"type": "message_stop"},
]


def anthropic_message_from(events: list[dict]) -> Message:
    """The Message the Anthropic SDK builds from a stream."""
    snapshot, json_bufs = None, {}
    for event in events:
        snapshot = accumulate_event(event=adapter(RawMessageStreamEvent).validate_python(event),
                                    current_snapshot=snapshot, json_bufs=json_bufs)
    return snapshot


@pytest.mark.parametrize("include_usage", [False, True])
def test_tool_use_stream_reassembles_in_the_openai_sdk(include_usage: bool) -> None:
    state = ChatCompletionStreamState()
    for chunk in run_anthropic_stream(TOOL_STREAM, include_usage):
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    final = state.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Okay, let's check the weather."
    calls = choice.message.tool_calls
    assert [(call.id, call.function.name) for call in calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"), ("toolu_02", "get_time")]
    assert json.loads(calls[0].function.arguments) == {
        "location": "San Francisco, CA", "note": "café \"quoted\"", "unit": "fahrenheit"}
    assert calls[1].function.arguments == "{}"
    assert final.usage.prompt_tokens == 3472
    assert final.usage.completion_tokens == 89
    assert final.usage.prompt_tokens_details.cached_tokens == 2000
    # Streamed and whole replies agree once each side's own SDK has put the stream together.
    whole = anthropic_message_to_openai_chat(anthropic_message_from(TOOL_STREAM).model_dump(), **COMPLETION)
    assert choice.message.content == whole["choices"][0]["message"]["content"]
    assert [json.loads(call.function.arguments) for call in calls] == [
        json.loads(call["function"]["arguments"]) for call in whole["choices"][0]["message"]["tool_calls"]]
    assert final.usage.model_dump(exclude_none=True) == whole["usage"]


def test_openai_tool_stream_reassembles_in_the_anthropic_sdk() -> None:
    chunks = [
        {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-5.5",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        for delta, finish in [
            ({"role": "assistant", "content": "", "refusal": None}, None),
            ({"content": "Let me look."}, None),
            ({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                              "function": {"name": "Read", "arguments": ""}}]}, None),
            ({"tool_calls": [{"index": 0, "function": {"arguments": "{\"file_path\": \"/tmp/caf"}}]}, None),
            ({"tool_calls": [{"index": 0, "function": {"arguments": "\\u00e9.txt\"}"}}]}, None),
            ({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                              "function": {"name": "Bash", "arguments": "{\"command\": \"ls\"}"}}]}, None),
            ({}, "tool_calls"),
        ]
    ] + [{"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-5.5",
          "choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940,
                                   "prompt_tokens_details": {"cached_tokens": 512}}}]
    events = run_openai_stream(chunks)
    message = anthropic_message_from([data for _, data in events])
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me look."
    assert (message.content[1].id, message.content[1].name, message.content[1].input) == (
        "call_a", "Read", {"file_path": "/tmp/café.txt"})
    assert (message.content[2].id, message.content[2].input) == ("call_b", {"command": "ls"})
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (388, 512, 40)
    # The same reply, put together by the OpenAI SDK and translated whole, gives the same message.
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    whole = openai_chat_to_anthropic_message(state.get_final_completion().model_dump(), model="gpt-x")
    streamed = message.model_dump(exclude_none=True)
    assert streamed["content"] == whole["content"]
    assert (streamed["stop_reason"], streamed["usage"]) == (whole["stop_reason"], whole["usage"])


def test_openclaw_capture_becomes_a_valid_messages_request() -> None:
    body = capture("openclaw_c4_agent_exec_openai_chat.jsonl", "/chat/completions")
    request = to_anthropic(body)
    check_anthropic_request(request)
    assert request["messages"][0]["role"] == "user"
    consume(adapter(list[MessageParam]).validate_python(request["messages"]))
    assert [block["text"] for block in request["system"]] == [body["messages"][0]["content"]]
    assert len(request["messages"]) == 1  # openclaw's two user messages make one turn
    assert [tool["name"] for tool in request["tools"]] == [tool["function"]["name"] for tool in body["tools"]]
    assert request["max_tokens"] == body["max_completion_tokens"]
    assert request["stream"] is True and "stream_options" not in request
    assert request["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize("name", ["sdk_d3_openai.jsonl"])
def test_sdk_capture_becomes_a_valid_messages_request(name: str) -> None:
    for line in (DATA / "captures" / name).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["path"].endswith("/chat/completions"):
            request = to_anthropic(record["body"])
            check_anthropic_request(request)
            assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "say hi"}]}]


@pytest.mark.parametrize("name", ["claude_a1_baseurl_v1.jsonl", "claude_a4_model_haiku45.jsonl",
                                  "openclaw_c2_agent_exec_anthropic.jsonl", "sdk_d2_anthropic_env_v1.jsonl"])
def test_messages_captures_become_valid_chat_requests(name: str) -> None:
    body = capture(name, "/messages")
    request = anthropic_request_to_openai_chat(body, upstream_model=GPT)
    check_openai_request(request)
    assert request["max_completion_tokens"] == body["max_tokens"]
    assert len(request.get("tools", [])) == len(body.get("tools", []))
    if "system" in body:
        assert request["messages"][0]["role"] == "system"


def test_every_request_field_is_documented() -> None:
    verbs = ("mapped", "passed", "ignored", "rejected")
    assert set(CompletionCreateParamsBase.__annotations__) | {"stream"} <= set(CHAT_FIELDS)
    assert set(MessageCreateParamsBase.__annotations__) <= set(ANTHROPIC_FIELDS)
    for table in (CHAT_FIELDS, ANTHROPIC_FIELDS):
        assert all(what.startswith(verbs) for what in table.values())
    claude_code_extras = {"context_management", "output_config", "container", "service_tier"}
    assert claude_code_extras <= set(ANTHROPIC_IGNORED_FIELDS)


@pytest.mark.parametrize(("table", "name"), [(CHAT_FIELDS, "chat_requests.json"),
                                             (ANTHROPIC_FIELDS, "chat_upstream_requests.json")])
def test_every_rejected_and_ignored_field_has_a_case(table: dict, name: str) -> None:
    items = load(name)
    refused = {item["error_param"] for item in items if "error_param" in item}
    sent = {field for item in items if "expected" in item for field in item["input"]}
    for field, what in table.items():
        if what.startswith("rejected"):
            assert field in refused, field
        if what.startswith("ignored"):
            assert field in sent, field


HOSTILE = [None, [], {}, "", "x", 0, -1, 1.5, True, [1], [None], [{}], {"type": "text"}]


def paths(value: object, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        children = list(value.items())
    else:
        children = list(enumerate(value)) if isinstance(value, list) else []
    return [path, *(found for key, child in children for found in paths(child, (*path, key)))]


def replaced(value: object, path: tuple, new: object) -> object:
    if not path:
        return new
    value = copy.deepcopy(value)
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = new
    return value


@pytest.mark.parametrize(("name", "translate"), [
    ("chat_requests.json", to_anthropic),
    ("chat_upstream_requests.json", lambda body: anthropic_request_to_openai_chat(body, upstream_model=GPT)),
])
def test_malformed_requests_only_raise_invalid_request(name: str, translate: object) -> None:
    """Any value in any place of a valid request gives a translation or a 400, never a crash (a 500)."""
    for item in load(name):
        if "expected" in item:
            for path in paths(item["input"]):
                for value in HOSTILE:
                    try:
                        translate(replaced(item["input"], path, value))
                    except InvalidRequest:
                        pass
