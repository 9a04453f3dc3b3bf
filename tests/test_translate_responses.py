"""Responses API <-> Messages API translation, driven by the cases in tests/data/responses_*.json.

Cases mark Claude thinking that PageGrid hands out in ``encrypted_content`` as ``{"$sealed": block}``.
Outputs are checked against the openai and anthropic SDKs' own models.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path

import httpx2
import openai
import pytest
from anthropic.types import Message
from anthropic.types import RawMessageStreamEvent
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from openai.types.responses import Response
from openai.types.responses import ResponseStreamEvent
from openai.types.responses.response_create_params import ResponseCreateParamsStreaming
from pydantic import TypeAdapter

from pagegrid.errors import InvalidRequest
from pagegrid.translate.messages_to_responses_stream import AnthropicToOpenAIResponsesStream
from pagegrid.translate.responses_to_messages import RESPONSES_FIELDS
from pagegrid.translate.responses_to_messages import anthropic_message_to_openai_response
from pagegrid.translate.responses_to_messages import openai_responses_request_to_anthropic
from pagegrid.translate.responses_to_messages_input import THINKING_PREFIX

DATA = Path(__file__).parent / "data"
UPSTREAM = "claude-sonnet-4-6"
MODEL = "claude-sonnet-4-6"
RESPONSE_ID = "resp_abc123"
CREATED_AT = 1790000000
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
ANTHROPIC_EVENT = TypeAdapter(RawMessageStreamEvent)
ANTHROPIC_REQUEST = TypeAdapter(MessageCreateParamsNonStreaming)
# anthropic 2.x no longer types temperature and top_p; the gateway still passes them (RESPONSES_FIELDS).
ANTHROPIC_REQUEST_KEYS = (MessageCreateParamsNonStreaming.__required_keys__
                          | MessageCreateParamsNonStreaming.__optional_keys__
                          | {"stream", "temperature", "top_p"})


def load(name: str) -> list[dict]:
    """The cases in one data file."""
    return json.loads((DATA / name).read_text())


REQUESTS = load("responses_requests.json")
MESSAGES = load("responses_messages.json")
STREAMS = load("responses_streams.json")


def by_name(cases: list[dict]) -> list:
    """Cases as pytest params named by their ``name``."""
    return [pytest.param(case, id=case["name"]) for case in cases]


def seal(value: object) -> object:
    """Replace ``{"$sealed": block}`` markers with the encrypted_content PageGrid hands out."""
    if isinstance(value, dict):
        if set(value) == {"$sealed"}:
            raw = json.dumps(value["$sealed"], separators=(",", ":")).encode()
            return THINKING_PREFIX + base64.urlsafe_b64encode(raw).decode()
        return {key: seal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [seal(item) for item in value]
    return value


def unseal(value: object) -> object:
    """Show the encrypted_content PageGrid hands out as the ``{"$sealed": block}`` marker."""
    if isinstance(value, dict):
        result = {key: unseal(item) for key, item in value.items()}
        sealed = value.get("encrypted_content")
        if isinstance(sealed, str) and sealed.startswith(THINKING_PREFIX):
            result["encrypted_content"] = {
                "$sealed": json.loads(base64.urlsafe_b64decode(sealed[len(THINKING_PREFIX):]))}
        return result
    if isinstance(value, list):
        return [unseal(item) for item in value]
    return value


def assert_contains(actual: object, expected: object, path: str = "$") -> None:
    """Every key ``expected`` names has that value in ``actual`` (lists compare whole)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} is missing"
            assert_contains(actual[key], value, f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def translate(body: object, default_max_tokens: int = 4096) -> tuple[dict, list[str]]:
    """Translate a request body the way the gateway does, to the test's upstream model."""
    return openai_responses_request_to_anthropic(body, upstream_model=UPSTREAM,
                                                 default_max_tokens=default_max_tokens)


def to_response(message: dict) -> dict:
    """Translate a Messages API message with the test's response id and clock."""
    return anthropic_message_to_openai_response(message, model=MODEL, response_id=RESPONSE_ID,
                                                created_at=CREATED_AT)


def check_anthropic_request(request: dict) -> None:
    """What the Messages API insists on, checked on a translated request."""
    assert set(request) <= ANTHROPIC_REQUEST_KEYS
    ANTHROPIC_REQUEST.validate_python({key: value for key, value in request.items()
                                       if key not in ("stream", "temperature", "top_p")})
    messages = request["messages"]
    assert messages and all(m["role"] in ("user", "assistant") and m["content"] for m in messages)
    assert all(a["role"] != b["role"] for a, b in zip(messages, messages[1:], strict=False))
    blocks = list(request.get("system", []))
    for message in messages:
        blocks += message["content"]
        if message["role"] == "user":
            kinds = [block["type"] for block in message["content"]]
            assert kinds == sorted(kinds, key=lambda kind: kind != "tool_result")
        for block in message["content"]:
            if block["type"] == "tool_result" and isinstance(block.get("content"), list):
                blocks += block["content"]
    assert all(block["text"] for block in blocks if block["type"] == "text"), "empty text block"
    for tool in request.get("tools", []):
        assert tool["input_schema"]["type"] == "object"
    if "thinking" in request:
        assert request["thinking"]["budget_tokens"] < request["max_tokens"]


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize("case", by_name([c for c in REQUESTS if "expected" in c]))
def test_request_translation(case: dict) -> None:
    """Each request case becomes exactly the expected Messages request, with its notes."""
    request, notes = translate(seal(case["input"]))
    assert request == seal(case["expected"])
    assert notes == case.get("notes", [])
    check_anthropic_request(request)


@pytest.mark.parametrize("case", by_name([c for c in REQUESTS if "error_param" in c]))
def test_request_rejected_with_400(case: dict) -> None:
    """Each error case is a 400 invalid_request_error naming the bad parameter."""
    with pytest.raises(InvalidRequest) as info:
        translate(seal(case["input"]))
    assert info.value.status == 400
    assert info.value.param == case["error_param"]
    assert case.get("error_match", "") in info.value.message
    assert info.value.to_openai()["error"]["type"] == "invalid_request_error"


def test_fields_table_documents_every_sdk_parameter() -> None:
    """RESPONSES_FIELDS covers every parameter the openai SDK can send."""
    sdk = ResponseCreateParamsStreaming.__required_keys__ | ResponseCreateParamsStreaming.__optional_keys__
    assert set(RESPONSES_FIELDS) - sdk == {"client_metadata"}
    assert sdk <= set(RESPONSES_FIELDS)


@pytest.mark.parametrize("field, verdict", RESPONSES_FIELDS.items())
def test_every_field_has_a_verdict_and_cases(field: str, verdict: str) -> None:
    """Each table row says what happens, and cases show it (ignored fields change nothing)."""
    assert verdict.split()[0].rstrip(":") in ("mapped", "passed", "ignored", "rejected")
    sent = [c for c in REQUESTS if isinstance(c["input"], dict) and c["input"].get(field) is not None]
    assert sent, f"no case sends {field}"
    if verdict.startswith("rejected"):
        assert any(c.get("error_param") == field for c in sent)
    if verdict.startswith("ignored"):
        kept = [c for c in sent if "expected" in c]
        assert kept
        for case in kept:
            body = seal(case["input"])
            assert translate(body) == translate({k: v for k, v in body.items() if k != field})


# ---------------------------------------------------------------- real client bodies


def captured_bodies() -> list:
    """The POST /v1/responses bodies real clients sent, from the captures."""
    params = []
    for name in ("codex_b4_custom_provider_responses", "codex_b6_ws_status_426", "sdk_d3_openai"):
        for number, line in enumerate((DATA / "captures" / f"{name}.jsonl").read_text().splitlines()):
            record = json.loads(line)
            if record["method"] == "POST" and record["path"] == "/v1/responses":
                params.append(pytest.param(record["body"], id=f"{name}:{number}"))
    return params


@pytest.mark.parametrize("body", captured_bodies())
def test_real_client_bodies_translate(body: dict) -> None:
    """Codex and SDK bodies translate: instructions in system, say hi last, hosted tools noted."""
    request, notes = translate(body, default_max_tokens=64000)
    check_anthropic_request(request)
    assert request["model"] == UPSTREAM
    messages = request["messages"]
    assert messages[0]["role"] == "user"
    assert messages[-1]["role"] == "user"
    assert messages[-1]["content"][-1] == {"type": "text", "text": "say hi"}
    items = body["input"] if isinstance(body["input"], list) else []
    developer = [part["text"] for item in items
                 if item.get("type", "message") == "message" and item["role"] in ("developer", "system")
                 for part in item["content"] if part["text"]]
    instructions = [body["instructions"]] if body.get("instructions") else []
    assert [block["text"] for block in request.get("system", [])] == instructions + developer
    tools = body.get("tools", []) + [tool for item in items if item.get("type") == "additional_tools"
                                     for tool in item["tools"]]
    functions = [tool["name"] for tool in tools if tool["type"] == "function"]
    assert [tool["name"] for tool in request.get("tools", [])] == functions
    dropped = [f"dropped tool {' '.join(filter(None, (t['type'], t.get('name'))))}: Claude cannot run it here"
               for t in tools if t["type"] != "function"]
    assert [note for note in notes if note.startswith("dropped tool ")] == dropped
    assert request.get("stream") is body.get("stream")


def test_codex_custom_provider_body() -> None:
    """The Codex custom-provider body in detail."""
    record = json.loads((DATA / "captures" / "codex_b4_custom_provider_responses.jsonl").read_text())
    request, notes = translate(record["body"], default_max_tokens=64000)
    assert request["system"][0]["text"].startswith("You are a coding agent running in the Codex CLI")
    assert notes == ["dropped tool namespace multi_agent_v1: Claude cannot run it here",
                     "dropped tool web_search: Claude cannot run it here"]
    assert [block["text"] for block in request["messages"][0]["content"]][-1] == "say hi"
    assert request["tool_choice"] == {"type": "auto"}
    assert "thinking" not in request


# ---------------------------------------------------------------- responses


@pytest.mark.parametrize("case", by_name(MESSAGES))
def test_message_translation(case: dict) -> None:
    """Each Messages API message becomes the expected response, valid for the openai SDK."""
    Message.model_validate(case["message"])
    response = to_response(case["message"])
    Response.model_validate(response)
    if case.get("exact"):
        assert unseal(response) == case["expected"]
    assert_contains(unseal(response), case["expected"])


@pytest.mark.parametrize("case", by_name(MESSAGES))
def test_response_output_goes_back_as_the_same_content(case: dict) -> None:
    """A response's output items, sent back as input, give Claude its own blocks again."""
    def kept(block: dict) -> bool:
        """Whether a content block comes back from its output item."""
        if block["type"] in ("thinking", "redacted_thinking"):
            return bool(block.get("signature") or block.get("data"))
        return block["type"] == "tool_use" or block["type"] == "text" and bool(block["text"])

    output = to_response(case["message"])["output"]
    results = [{"type": "function_call_output", "call_id": item["call_id"], "output": "ok"}
               for item in output if item["type"] == "function_call"]
    body = {"model": "gpt-5.1", "reasoning": {"effort": "low"}, "max_output_tokens": 8000,
            "input": [{"role": "user", "content": "go"}, *output, *results]}
    request, _ = translate(body)
    sent_back = request["messages"][1]["content"] if len(request["messages"]) > 1 else []
    assert sent_back == [block for block in case["message"]["content"] if kept(block)]


# ---------------------------------------------------------------- streams


def run_stream(events: list[dict]) -> tuple[AnthropicToOpenAIResponsesStream, list[dict]]:
    """Feed the events and finish; finish owes nothing a second time."""
    stream = AnthropicToOpenAIResponsesStream(model=MODEL, response_id=RESPONSE_ID, created_at=CREATED_AT)
    out = []
    for event in events:
        out += stream.feed(event)
    out += stream.finish()
    assert stream.finish() == []
    return stream, out


def check_stream(out: list[dict], stream: AnthropicToOpenAIResponsesStream) -> None:
    """Invariants every translated stream keeps."""
    assert [event["sequence_number"] for event in out] == list(range(len(out)))
    assert stream.sequence_number == len(out)
    assert [event["type"] for event in out[:2]] == ["response.created", "response.in_progress"]
    assert [event["type"] in TERMINAL for event in out].count(True) == 1 and out[-1]["type"] in TERMINAL
    for event in out:
        STREAM_EVENT.validate_python(event)
        if "response" in event:
            Response.model_validate(event["response"])
            assert event["response"]["id"] == RESPONSE_ID
    streamed: dict[str, str] = defaultdict(str)
    for event in out:
        kind = event["type"]
        if kind.endswith(".delta"):
            streamed[event["item_id"]] += event["delta"]
        elif kind in ("response.output_text.done", "response.reasoning_summary_text.done"):
            assert streamed[event["item_id"]] == event["text"]
        elif kind == "response.function_call_arguments.done":
            assert streamed[event["item_id"]] == event["arguments"]
    added = {e["output_index"]: e["item"] for e in out if e["type"] == "response.output_item.added"}
    done = {e["output_index"]: e["item"] for e in out if e["type"] == "response.output_item.done"}
    assert list(added) == list(range(len(added)))
    assert all(done[index]["id"] == added[index]["id"] for index in done)
    final = out[-1]["response"]
    assert final["output"] == [done[index] for index in sorted(done)]
    if final["status"] != "failed":
        assert set(done) == set(added)
    for item in final["output"]:
        if item["type"] == "message":
            assert item["content"][0]["text"] == streamed[item["id"]]
        elif item["type"] == "function_call":
            assert item["arguments"] == streamed[item["id"]]
        else:
            assert "".join(part["text"] for part in item["summary"]) == streamed[item["id"]]


@pytest.mark.parametrize("case", by_name(STREAMS))
def test_stream_translation(case: dict) -> None:
    """Each stream case gives the expected events, agreeing with the non-stream response."""
    for event in case["events"]:
        if event["type"] in ("message_start", "message_delta", "message_stop", "content_block_start",
                             "content_block_delta", "content_block_stop"):
            ANTHROPIC_EVENT.validate_python(event)
    stream, out = run_stream(case["events"])
    assert [event["type"] for event in out] == case["types"]
    for index, expected in case.get("fields", []):
        assert_contains(unseal(out[index]), expected)
    check_stream(out, stream)
    final = out[-1]["response"]
    if "message" in case:
        assert final == to_response(case["message"])
    assert_contains(unseal(final), case.get("final", {}))


@pytest.mark.parametrize("case", by_name(STREAMS))
def test_stream_through_the_openai_sdk(case: dict) -> None:
    """The openai SDK's own stream accumulator accepts the events and rebuilds the same response."""
    _, out = run_stream(case["events"])
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in out)

    def reply(request: httpx2.Request) -> httpx2.Response:
        """The translated stream as an HTTP response."""
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    with httpx2.Client(transport=httpx2.MockTransport(reply)) as http_client:
        client = openai.OpenAI(api_key="pg-test", base_url="http://pagegrid.test/v1", http_client=http_client,
                               max_retries=0)
        with client.responses.stream(model=MODEL, input="hi") as stream:
            events = list(stream)
            assert [event.type for event in events] == [e["type"] for e in out]
            if out[-1]["type"] == "response.completed":
                final, expected = stream.get_final_response(), out[-1]["response"]
                assert [item.id for item in final.output] == [item["id"] for item in expected["output"]]
                assert final.output_text == "".join(item["content"][0]["text"] for item in expected["output"]
                                                    if item["type"] == "message")
                assert final.usage.model_dump(exclude_none=True) == expected["usage"]


def test_streamed_thinking_and_tool_call_go_back_to_claude() -> None:
    """Codex's next request carries the streamed reasoning and call; Claude gets its signed thinking."""
    case = next(c for c in STREAMS if c["name"] == "thinking_then_tool_use")
    _, out = run_stream(case["events"])
    output = out[-1]["response"]["output"]
    body = {"model": "gpt-5.1-codex", "reasoning": {"effort": "low", "summary": "auto"}, "stream": True,
            "include": ["reasoning.encrypted_content"], "store": False,
            "input": [{"role": "user", "content": "list files"}, *output,
                      {"type": "function_call_output", "call_id": "toolu_01A", "output": "a.txt"}]}
    request, notes = translate(body, default_max_tokens=64000)
    assert notes == []
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert request["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "The user wants ls.", "signature": "EqQBCkYIBxgCKkB="},
            {"type": "tool_use", "id": "toolu_01A", "name": "exec_command", "input": {"cmd": "ls"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "a.txt"}]}]
