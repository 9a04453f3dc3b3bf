"""Structured output on Claude models through the OpenAI endpoints, with the real openai SDK's
``.parse()`` and ``.stream()`` helpers: Claude's native structured outputs on current models, a
forced tool on older ones, the answer parsed into the client's Pydantic model either way."""

from __future__ import annotations

import enum
import json
from datetime import date

import anthropic
import openai
import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel
from pydantic import Field

from pagegrid import pricelist
from pagegrid.bounds import OVERHEAD_TOKENS
from pagegrid.catalog import catalog
from pagegrid.catalog_sync import new_model
from pagegrid.extensions import db
from pagegrid.pool import pool
from pagegrid.translate.json_schema import UnsupportedSchema
from pagegrid.translate.json_schema import anthropic_output_schema
from pagegrid.translate.messages_to_chat_stream import AnthropicToOpenAIChatStream
from pagegrid.translate.messages_to_responses_stream import AnthropicToOpenAIResponsesStream
from pagegrid.translate.structured import TOOL_DESCRIPTION
from pagegrid.translate.structured import native_structured_outputs
from tests.fake_upstream import message
from tests.fake_upstream import stream_events

CURRENT = "claude-sonnet-4-6"  # native structured outputs
OLDER = "claude-sonnet-4-20250514"  # before 4.5: a forced tool
SONNET_IN, SONNET_OUT = 3000, 15000  # both Sonnets, nano-USD per token
ASK = [{"role": "user", "content": "Who is Ada? Answer as JSON."}]
ADA = {"name": "Ada Lovelace", "age": 36, "tags": ["mathematician", "writer"]}


class Person(BaseModel):
    name: str
    age: int = Field(ge=0)
    tags: list[str]


# What the openai SDK sends for Person (strict), and what reaches Claude's output_config.format:
# the same schema with the constraint Claude's grammar cannot enforce moved into the description.
PERSON_NATIVE = {
    "type": "object", "title": "Person", "additionalProperties": False, "required": ["name", "age", "tags"],
    "properties": {"name": {"type": "string", "title": "Name"},
                   "age": {"type": "integer", "title": "Age", "description": "{minimum: 0}"},
                   "tags": {"type": "array", "title": "Tags", "items": {"type": "string"}}}}
PERSON_TOOL_SCHEMA = {
    "type": "object", "title": "Person", "additionalProperties": False, "required": ["name", "age", "tags"],
    "properties": {"name": {"type": "string", "title": "Name"},
                   "age": {"type": "integer", "title": "Age", "minimum": 0},
                   "tags": {"type": "array", "title": "Tags", "items": {"type": "string"}}}}
PERSON_TOOL = {"name": "Person", "description": TOOL_DESCRIPTION, "input_schema": PERSON_TOOL_SCHEMA}
FORCED = {"type": "tool", "name": "Person", "disable_parallel_tool_use": True}


@pytest.fixture
def older_claude(app) -> str:
    """A Claude model from before structured outputs, added as sync-models adds a listed model."""
    with app.app_context():
        row, source = new_model("anthropic", {"id": OLDER})
        assert source is not None and row.active
        db.session.add(row)
        db.session.commit()
        catalog().invalidate()
    return OLDER


def charged_exactly(wallets, user_id: int, input_tokens: int, output_tokens: int) -> None:
    [charge] = wallets.charges(user_id)
    assert (charge.status, charge.input_tokens, charge.output_tokens) == \
        ("complete", input_tokens, output_tokens)
    assert charge.amount_nanos == -(input_tokens * SONNET_IN + output_tokens * SONNET_OUT)
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("model, expected", [
    ("claude-opus-4-8", True), ("claude-opus-4-6", True), ("claude-sonnet-4-5-20250929", True),
    ("claude-haiku-4-5-20251001", True), ("claude-opus-4-5-20251101", True), ("claude-opus-5", True),
    ("claude-sonnet-5-5", True), ("claude-opus-4-1-20250805", False), ("claude-opus-4-20250514", False),
    ("claude-sonnet-4-20250514", False), ("claude-3-5-haiku-20241022", False),
    ("claude-3-haiku-20240307", False), ("claude-3-7-sonnet-latest", False), ("my-proxy-model", True)])
def test_the_model_family_rule_says_who_has_native_structured_outputs(model: str, expected: bool) -> None:
    assert native_structured_outputs(model) is expected


def test_only_the_older_claude_models_of_the_price_list_get_the_forced_tool() -> None:
    claude = [m for m in pricelist.load().models.values() if m.provider == "anthropic"]
    older = {m.id for m in claude if not native_structured_outputs(m.id)}
    assert older == {"claude-opus-4-1-20250805", "claude-opus-4-20250514", "claude-sonnet-4-20250514",
                     "claude-3-5-haiku-20241022", "claude-3-haiku-20240307"}


class Color(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Pet(BaseModel):
    kind: Color
    name: str | None = Field(description="Its name, if it has one")
    born: date
    weight_kg: float = Field(gt=0, le=500)


class Owner(BaseModel):
    pets: list[Pet] = Field(min_length=1, max_length=3)
    favourite: Pet | None
    mood: str = Field(pattern="^(happy|sad)$")
    nicknames: list[str] = Field(min_length=2)


class Draft(BaseModel):
    title: str
    notes: str | None = None
    owner: Owner | None = None


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("model", [Person, Pet, Owner, Draft])
def test_schemas_are_adapted_as_anthropics_own_sdk_adapts_them(model: type[BaseModel], strict: bool) -> None:
    """The schema the openai SDK (strict) or LangChain (Pydantic's own, with defaults and open
    objects) sends for a model reaches Claude as the anthropic SDK's transform_schema writes it."""
    schema = to_strict_json_schema(model) if strict else model.model_json_schema()
    assert anthropic_output_schema(schema) == anthropic.transform_schema(schema)


@pytest.mark.parametrize("schema, keyword, where", [
    ({"type": "object", "properties": {"a": {"type": "object", "additionalProperties": {"type": "string"}}}},
     "additionalProperties", "#/properties/a"),
    ({"type": "object"}, "additionalProperties", "#"),
    ({"type": "object", "properties": {}, "additionalProperties": False, "not": {"required": ["a"]}},
     "not", "#"),
    ({"type": "object", "properties": {"a": {"if": {"type": "string"}}}}, "if", "#/properties/a"),
    ({"type": "array", "items": [{"type": "string"}]}, "items", "#"),
    ({"enum": [{"a": 1}]}, "enum", "#"),
    ({"$ref": "https://example.com/schema.json"}, "$ref", "#"),
    ({"type": "object", "properties": {"next": {"$ref": "#"}}}, "$ref", "#"),
    ({"$defs": {"Node": {"type": "object", "properties": {"kids": {"type": "array",
                                                                   "items": {"$ref": "#/$defs/Node"}}}}},
      "$ref": "#/$defs/Node"}, "$ref", "#/$defs/Node"),
    ({"description": "no type"}, "type", "#"),
    ({"type": "strng"}, "type", "#")])
def test_what_claude_cannot_enforce_is_named(schema: dict, keyword: str, where: str) -> None:
    with pytest.raises(UnsupportedSchema) as info:
        anthropic_output_schema(schema)
    assert (info.value.keyword, info.value.where) == (keyword, where)


def test_chat_parse_on_a_current_model_uses_output_config(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.structured(ADA, input_tokens=40, output_tokens=12)
    completion = openai_sdk(key).chat.completions.parse(model=CURRENT, messages=ASK, response_format=Person,
                                                        max_completion_tokens=300)

    assert completion.choices[0].message.parsed == Person(**ADA)
    assert completion.choices[0].finish_reason == "stop"
    assert fake_upstream.requests[-1].body == {
        "model": CURRENT, "max_tokens": 300, "stream": False,  # the SDK's parse() sends stream: false
        "messages": [{"role": "user", "content": [{"type": "text", "text": ASK[0]["content"]}]}],
        "output_config": {"format": {"type": "json_schema", "schema": PERSON_NATIVE}}}
    charged_exactly(wallets, user_id, 40, 12)


def test_chat_stream_parse_on_a_current_model(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.structured(ADA, input_tokens=41, output_tokens=13)
    with openai_sdk(key).chat.completions.stream(model=CURRENT, messages=ASK, response_format=Person) as s:
        final = s.get_final_completion()

    assert final.choices[0].message.parsed == Person(**ADA)
    sent = fake_upstream.requests[-1].body
    assert sent["stream"] is True and sent["output_config"]["format"]["schema"] == PERSON_NATIVE
    assert "tools" not in sent and "tool_choice" not in sent
    charged_exactly(wallets, user_id, 41, 13)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_parse_on_an_older_model_forces_one_tool(openai_sdk, funded, wallets, fake_upstream,
                                                      older_claude, stream):
    user_id, key = funded
    fake_upstream.structured(ADA, input_tokens=50, output_tokens=20)
    client = openai_sdk(key)
    if stream:
        with client.chat.completions.stream(model=older_claude, messages=ASK, response_format=Person) as s:
            deltas = [event.delta for event in s if event.type == "content.delta"]
            completion = s.get_final_completion()
        assert len(deltas) > 3 and json.loads("".join(deltas)) == ADA  # the tool's JSON, as it streamed
    else:
        completion = client.chat.completions.parse(model=older_claude, messages=ASK, response_format=Person)

    choice = completion.choices[0]
    assert choice.message.parsed == Person(**ADA)
    assert json.loads(choice.message.content) == ADA
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    sent = fake_upstream.requests[-1].body
    assert sent["tools"] == [PERSON_TOOL]
    assert sent["tool_choice"] == FORCED
    assert "output_config" not in sent
    charged_exactly(wallets, user_id, 50, 20)


def test_a_client_tool_call_still_comes_back_as_a_tool_call(openai_sdk, funded, fake_upstream, older_claude):
    _, key = funded
    lookup = {"type": "function", "function": {
        "name": "lookup", "strict": True, "parameters": {
            "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
            "additionalProperties": False}}}
    fake_upstream.reply(message(model=older_claude, stop_reason="tool_use", content=[
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "Ada Lovelace"}}]))
    completion = openai_sdk(key).chat.completions.parse(model=older_claude, messages=ASK, tools=[lookup],
                                                        response_format=Person)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls[0].function.parsed_arguments == {"q": "Ada Lovelace"}
    sent = fake_upstream.requests[-1].body
    assert [tool["name"] for tool in sent["tools"]] == ["lookup", "Person"]
    assert sent["tool_choice"] == {"type": "any"}  # a client tool or the answer


def test_json_object_mode_answers_a_json_object(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.structured({"answer": 4}, input_tokens=9, output_tokens=6)
    completion = openai_sdk(key).chat.completions.create(
        model=CURRENT, messages=[{"role": "user", "content": "2+2 as JSON"}],
        response_format={"type": "json_object"}, max_tokens=100)

    assert json.loads(completion.choices[0].message.content) == {"answer": 4}
    assert completion.choices[0].finish_reason == "stop" and not completion.choices[0].message.tool_calls
    sent = fake_upstream.requests[-1].body
    assert sent["tools"] == [{"name": "json_object", "description": TOOL_DESCRIPTION,
                              "input_schema": {"type": "object"}}]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_object", "disable_parallel_tool_use": True}
    charged_exactly(wallets, user_id, 9, 6)


def test_responses_parse_on_a_current_model_uses_output_config(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.structured(ADA, input_tokens=30, output_tokens=11)
    response = openai_sdk(key).responses.parse(model=CURRENT, input=ASK[0]["content"], text_format=Person,
                                               max_output_tokens=400)

    assert response.output_parsed == Person(**ADA)
    assert fake_upstream.requests[-1].body == {
        "model": CURRENT, "max_tokens": 400,
        "messages": [{"role": "user", "content": [{"type": "text", "text": ASK[0]["content"]}]}],
        "output_config": {"format": {"type": "json_schema", "schema": PERSON_NATIVE}}}
    charged_exactly(wallets, user_id, 30, 11)


def test_responses_stream_parse_on_a_current_model(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.structured(ADA, input_tokens=31, output_tokens=12)
    with openai_sdk(key).responses.stream(model=CURRENT, input=ASK[0]["content"], text_format=Person) as s:
        final = s.get_final_response()

    assert final.output_parsed == Person(**ADA)
    assert fake_upstream.requests[-1].body["output_config"]["format"]["schema"] == PERSON_NATIVE
    charged_exactly(wallets, user_id, 31, 12)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_parse_on_an_older_model_forces_one_tool(openai_sdk, funded, wallets, fake_upstream,
                                                           older_claude, stream):
    user_id, key = funded
    fake_upstream.structured(ADA, input_tokens=52, output_tokens=21)
    client = openai_sdk(key)
    if stream:
        with client.responses.stream(model=older_claude, input=ASK[0]["content"], text_format=Person) as s:
            events = list(s)
            response = s.get_final_response()
        deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
        assert len(deltas) > 3 and json.loads("".join(deltas)) == ADA
        assert not [event for event in events if "function_call" in event.type]
    else:
        response = client.responses.parse(model=older_claude, input=ASK[0]["content"], text_format=Person)

    assert response.output_parsed == Person(**ADA)
    [item] = response.output
    assert item.type == "message" and item.content[0].type == "output_text"
    assert json.loads(item.content[0].text) == ADA
    assert response.status == "completed"
    sent = fake_upstream.requests[-1].body
    assert sent["tools"] == [PERSON_TOOL] and sent["tool_choice"] == FORCED
    charged_exactly(wallets, user_id, 52, 21)


@pytest.mark.parametrize("path, field, param", [
    ("/v1/chat/completions", "response_format", "response_format"),
    ("/v1/responses", "text", "text.format")])
def test_a_schema_claude_cannot_enforce_is_a_400_in_openai_dialect(client, funded, wallets, fake_upstream,
                                                                   path, field, param):
    user_id, key = funded
    schema = {"type": "object", "properties": {"scores": {"type": "object", "patternProperties": {
        "^[a-z]+$": {"type": "integer"}}}}, "required": ["scores"], "additionalProperties": False}
    spec = {"name": "scores", "strict": True, "schema": schema}
    body = {"model": CURRENT, "max_tokens": 50, "messages": ASK} if field == "response_format" \
        else {"model": CURRENT, "input": "scores?"}
    body[field] = {"type": "json_schema", "json_schema": spec} if field == "response_format" \
        else {"format": {"type": "json_schema", **spec}}
    reply = client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})

    assert reply.status_code == 400 and reply.is_json
    error = reply.get_json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert "'patternProperties' at #/properties/scores" in error["message"]
    assert fake_upstream.requests == []
    assert wallets.charges(user_id) == []
    wallets.assert_consistent(user_id)


def test_the_sdk_raises_its_bad_request_error(openai_sdk, funded, fake_upstream):
    _, key = funded
    with pytest.raises(openai.BadRequestError) as info:
        openai_sdk(key).chat.completions.create(model=CURRENT, messages=ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "bad name!", "schema": {"type": "object"}}})
    assert info.value.body["param"] == "response_format"
    assert fake_upstream.requests == []


def test_the_hold_covers_the_forced_tool(client, funded, wallets, fake_upstream, older_claude):
    """The hold is the bound of the body Claude receives, forced tool included, not of the client's."""
    user_id, key = funded
    fake_upstream.structured({"ok": True}, input_tokens=20, output_tokens=5)
    raw = json.dumps({"model": older_claude, "max_tokens": 100, "response_format": {"type": "json_object"},
                      "messages": [{"role": "user", "content": "Hi"}]}).encode()
    reply = client.post("/v1/chat/completions", data=raw, content_type="application/json",
                        headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.data

    sent = fake_upstream.requests[-1]
    assert sent.body["tools"][0]["name"] == "json_object" and len(sent.raw) > len(raw)
    price = pricelist.listed(older_claude).price
    dearest = max(price.input, price.cache_write, price.cache_write_1h)
    [charge] = wallets.charges(user_id)
    assert charge.hold_nanos == (len(sent.raw) + OVERHEAD_TOKENS) * dearest + 100 * price.output
    assert -charge.amount_nanos == 20 * price.input + 5 * price.output < charge.hold_nanos
    wallets.assert_consistent(user_id)


def test_gpt_models_pass_response_format_through(openai_sdk, funded, fake_upstream):
    _, key = funded
    fake_upstream.reply({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-5.4",
                         "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                             "role": "assistant", "content": json.dumps(ADA), "refusal": None}}],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}})
    completion = openai_sdk(key).chat.completions.parse(model="gpt-5.4", messages=ASK, response_format=Person)

    assert completion.choices[0].message.parsed == Person(**ADA)
    sent = fake_upstream.requests[-1].body
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "Person"
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["age"]["minimum"] == 0


def test_a_cut_answer_is_length_not_a_parse(openai_sdk, funded, fake_upstream, older_claude):
    _, key = funded
    fake_upstream.stream(stream_events(message(model=older_claude, stop_reason="max_tokens", content=[
        {"type": "tool_use", "id": "toolu_1", "name": "Person", "input": {"name": "Ada"}}])))
    with pytest.raises(openai.LengthFinishReasonError):
        with openai_sdk(key).chat.completions.stream(model=older_claude, messages=ASK,
                                                     response_format=Person) as s:
            s.get_final_completion()


def test_the_demo_upstream_answers_in_the_format_too(app, openai_sdk, funded, wallets, fake_upstream,
                                                     older_claude):
    app.config["PAGEGRID_ANTHROPIC_KEY"] = None
    pool(app).forget()
    user_id, key = funded
    client = openai_sdk(key)
    made_up = Person(name="demo", age=0, tags=["demo"])

    assert client.chat.completions.parse(model=CURRENT, messages=ASK, response_format=Person) \
        .choices[0].message.parsed == made_up
    with client.chat.completions.stream(model=older_claude, messages=ASK, response_format=Person) as s:
        assert s.get_final_completion().choices[0].message.parsed == made_up
    with client.responses.stream(model=older_claude, input="Ada?", text_format=Person) as s:
        assert s.get_final_response().output_parsed == made_up
    assert fake_upstream.requests == []
    assert [c.status for c in wallets.charges(user_id)] == ["complete"] * 3
    wallets.assert_consistent(user_id)


def test_an_answer_with_no_fields_streams_as_an_empty_object() -> None:
    """A forced tool called with no input streams no input_json_delta: the client still gets "{}"."""
    events = [e for e in stream_events(message(stop_reason="tool_use", content=[
        {"type": "tool_use", "id": "toolu_1", "name": "Empty", "input": {}}]))
              if e["type"] != "content_block_delta"]
    chat = AnthropicToOpenAIChatStream(model="m", completion_id="c", created=1, include_usage=False,
                                       output_tool="Empty")
    chunks = [chunk for event in events for chunk in chat.feed(event)] + chat.finish()
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "{}"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    responses = AnthropicToOpenAIResponsesStream(model="m", response_id="resp_1", created_at=1,
                                                 output_tool="Empty")
    out = [item for event in events for item in responses.feed(event)]
    assert [e["delta"] for e in out if e["type"] == "response.output_text.delta"] == ["{}"]
    assert out[-1]["response"]["output"][0]["content"][0]["text"] == "{}"
