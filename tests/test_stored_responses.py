"""Stored Responses for Claude models (store, previous_response_id, item_reference, GET/DELETE,
input_items, retention) through the real openai SDK, and GPT models' stored responses at OpenAI."""

from __future__ import annotations

from datetime import timedelta

import openai
import pytest
from sqlalchemy import func
from sqlalchemy import select

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.models import StoredResponse
from tests.fake_upstream import message
from tests.fake_upstream import openai_response
from tests.fake_upstream import stream_events

MODEL = "claude-sonnet-4-6"  # $3 in, $15 out, $6 per 1M for a 1-hour cache write (the dearest input)


def _script(fake_upstream, text: str, stream: bool, **usage: int) -> None:
    reply = message(text, model=MODEL, **usage)
    if stream:
        fake_upstream.stream(stream_events(reply))
    else:
        fake_upstream.reply(reply)


def _create(client: openai.OpenAI, stream: bool, **params):
    if not stream:
        return client.responses.create(model=MODEL, **params)
    with client.responses.stream(model=MODEL, **params) as events:
        return events.get_final_response()


def _stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(StoredResponse))


def _texts(messages: list[dict]) -> list[tuple[str, str]]:
    return [(turn["role"], block["text"]) for turn in messages for block in turn["content"]
            if block["type"] == "text"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_previous_response_id_sends_the_stored_conversation(openai_sdk, funded, wallets, fake_upstream,
                                                            stream):
    user_id, key = funded
    client = openai_sdk(key)
    _script(fake_upstream, "Paris.", stream)
    first = _create(client, stream, instructions="Answer in one word.", input="Capital of France?")
    _script(fake_upstream, "About 2.1 million.", stream)
    second = _create(client, stream, previous_response_id=first.id, input="And its population?")

    assert second.output_text == "About 2.1 million."
    sent = fake_upstream.requests[-1].body
    assert _texts(sent["messages"]) == [("user", "Capital of France?"), ("assistant", "Paris."),
                                        ("user", "And its population?")]
    assert "system" not in sent  # instructions are not carried over (OpenAI's rule)
    # The stored object is the one the client got, with the same output item ids.
    kept = client.responses.retrieve(second.id)
    assert kept.id == second.id and kept.previous_response_id == first.id
    assert [item.id for item in kept.output] == [item.id for item in second.output]
    assert client.responses.retrieve(first.id).instructions == "Answer in one word."
    assert len(wallets.charges(user_id)) == 2
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_item_references_resolve_to_stored_items(openai_sdk, funded, fake_upstream, stream):
    _, key = funded
    client = openai_sdk(key)
    _script(fake_upstream, "Blue.", stream)
    first = _create(client, stream, input=[{"role": "user", "content": "Pick a colour."}])
    [asked] = client.responses.input_items.list(first.id).data
    _script(fake_upstream, "Green.", stream)
    _create(client, stream, input=[{"type": "item_reference", "id": asked.id},
                                   {"type": "item_reference", "id": first.output[0].id},
                                   {"role": "user", "content": "Another one."}])
    assert _texts(fake_upstream.requests[-1].body["messages"]) == [
        ("user", "Pick a colour."), ("assistant", "Blue."), ("user", "Another one.")]


def test_a_chain_of_three_turns_keeps_every_turn(openai_sdk, funded, fake_upstream):
    _, key = funded
    client = openai_sdk(key)
    previous = None
    for number in range(3):
        fake_upstream.reply(message(f"answer {number}", model=MODEL))
        previous = client.responses.create(model=MODEL, input=f"question {number}",
                                           **({"previous_response_id": previous.id} if previous else {}))
    assert [text for _, text in _texts(fake_upstream.requests[-1].body["messages"])] == [
        "question 0", "answer 0", "question 1", "answer 1", "question 2"]


def test_retrieve_input_items_and_delete(openai_sdk, funded, fake_upstream):
    _, key = funded
    client = openai_sdk(key)
    fake_upstream.reply(message("Done.", model=MODEL))
    created = client.responses.create(model=MODEL, metadata={"ticket": "42"}, input=[
        {"role": "developer", "content": "Be terse."}, {"role": "user", "content": "one"},
        {"role": "user", "content": "two"}])
    kept = client.responses.retrieve(created.id)
    assert (kept.output_text, kept.status, kept.metadata) == ("Done.", "completed", {"ticket": "42"})

    newest = client.responses.input_items.list(created.id)
    assert newest.object == "list" and newest.has_more is False
    assert [item.role for item in newest.data] == ["user", "user", "developer"]
    assert (newest.first_id, newest.last_id) == (newest.data[0].id, newest.data[-1].id)
    page = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [item.content[0].text for item in page.data] == ["Be terse.", "one"] and page.has_more
    assert [item.content[0].text for item in page.get_next_page().data] == ["two"]
    assert [item.id for item in client.responses.input_items.list(created.id, order="asc")] == \
        [item.id for item in newest.data][::-1]  # the SDK's auto-paging follows ``after``

    deleted = client.with_raw_response.responses.delete(created.id)
    assert deleted.http_response.json() == {"id": created.id, "object": "response.deleted", "deleted": True}
    for lookup in (client.responses.retrieve, client.responses.input_items.list, client.responses.delete):
        with pytest.raises(openai.NotFoundError) as err:
            lookup(created.id)
        assert err.value.body["message"] == f"Response with id '{created.id}' not found."


def test_another_users_response_is_not_found(openai_sdk, wallets, fake_upstream):
    owner, stranger = wallets.user("5"), wallets.user("5")
    fake_upstream.reply(message("Secret plan.", model=MODEL))
    mine = openai_sdk(wallets.key(owner)).responses.create(model=MODEL, input="Keep this private.")
    their_client = openai_sdk(wallets.key(stranger))
    for lookup in (their_client.responses.retrieve, their_client.responses.input_items.list,
                   their_client.responses.delete):
        with pytest.raises(openai.NotFoundError):
            lookup(mine.id)
    with pytest.raises(openai.BadRequestError) as err:
        their_client.responses.create(model=MODEL, previous_response_id=mine.id, input="What was it?")
    assert err.value.code == "previous_response_not_found"
    assert err.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        their_client.responses.create(model=MODEL,
                                      input=[{"type": "item_reference", "id": mine.output[0].id}])
    assert len(fake_upstream.requests) == 1  # neither reached the provider
    assert wallets.charges(stranger) == []
    # The owner's other keys see it: responses belong to the user, not the key.
    assert openai_sdk(wallets.key(owner)).responses.retrieve(mine.id).output_text == "Secret plan."
    wallets.assert_consistent(stranger)


def test_unknown_ids_answer_like_openai(openai_sdk, funded, fake_upstream):
    _, key = funded
    client = openai_sdk(key)
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, previous_response_id="resp_" + "0" * 24, input="hi")
    assert err.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=MODEL, input=[{"type": "item_reference", "id": "msg_nothing_here"}])
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, store="yes", input="hi")
    assert fake_upstream.requests == []


def test_store_false_stores_nothing(app, openai_sdk, funded, fake_upstream):
    _, key = funded
    client = openai_sdk(key)
    fake_upstream.reply(message("Ephemeral.", model=MODEL))
    response = client.responses.create(model=MODEL, input="hi", store=False)
    fake_upstream.stream(stream_events(message("Also ephemeral.", model=MODEL)))
    with client.responses.stream(model=MODEL, input="hi", store=False) as events:
        events.get_final_response()
    assert _stored(app) == 0
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, previous_response_id=response.id, input="more")


def test_the_stored_conversation_is_held_and_billed(openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    client = openai_sdk(key)
    long_question = "word " * 20_000  # 100 KB that the second turn does not send again
    fake_upstream.reply(message("Short answer.", model=MODEL, input_tokens=20_000, output_tokens=3))
    first = client.responses.create(model=MODEL, input=long_question, max_output_tokens=100)
    fake_upstream.reply(message("Still short.", model=MODEL, input_tokens=20_010, output_tokens=4,
                                cache_read=5))
    client.responses.create(model=MODEL, previous_response_id=first.id, input="Summarise.",
                            max_output_tokens=100)

    sent = fake_upstream.requests[-1].raw
    assert long_question.encode() in sent
    _, charge = wallets.charges(user_id)
    # The hold covers the expanded body (one token per byte + 4,096 at the dearest input rate,
    # plus max_output_tokens) and is not the whole 1M-token window the id alone would need.
    floor = (len(sent) + 4096) * 6000 + 100 * 15000
    assert floor <= charge.hold_nanos < (2 * len(sent) + 4096) * 6000 + 100 * 15000
    assert (charge.input_tokens, charge.cache_read_input_tokens, charge.output_tokens) == (20_010, 5, 4)
    assert charge.amount_nanos == -(20_010 * 3000 + 5 * 300 + 4 * 15000)
    assert not charge.over_hold
    wallets.assert_consistent(user_id)


def test_prune_responses_removes_old_rows(app, runner, openai_sdk, funded, fake_upstream, monkeypatch):
    _, key = funded
    client = openai_sdk(key)
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now - timedelta(days=31))
    fake_upstream.reply(message("old", model=MODEL))
    old = client.responses.create(model=MODEL, input="old question")
    monkeypatch.setattr(clock, "now", lambda: real_now)
    fake_upstream.reply(message("new", model=MODEL))
    new = client.responses.create(model=MODEL, input="new question")

    result = runner.invoke(args=["prune-responses"])
    assert result.exit_code == 0 and "Pruned 1 stored responses older than 30 days." in result.output
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(old.id)
    assert client.responses.retrieve(new.id).output_text == "new"


def test_gpt_responses_are_retrieved_from_openai_for_their_owner(app, openai_sdk, wallets, fake_upstream):
    owner, stranger = wallets.user("5"), wallets.user("5")
    client = openai_sdk(wallets.key(owner))
    fake_upstream.reply(openai_response("Stored at OpenAI.", model="gpt-5.4"))
    created = client.responses.create(model="gpt-5.4", input="hi")
    assert fake_upstream.requests[-1].body == {"model": "gpt-5.4", "input": "hi"}  # passed through as sent
    with app.app_context():
        row = db.session.get(StoredResponse, created.id)
        assert (row.provider, row.user_id, row.response) == ("openai", owner, None)  # only who owns it

    fake_upstream.reply(openai_response("Stored at OpenAI.", model="gpt-5.4"))
    assert client.responses.retrieve(created.id).output_text == "Stored at OpenAI."
    asked = fake_upstream.requests[-1]
    assert (asked.method, asked.path) == ("GET", f"/v1/responses/{created.id}")
    assert asked.headers["Authorization"] == "Bearer sk-openai-fake-upstream-key"
    calls = len(fake_upstream.requests)
    with pytest.raises(openai.NotFoundError):
        openai_sdk(wallets.key(stranger)).responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError):
        openai_sdk(wallets.key(stranger)).responses.create(model="gpt-5.4", previous_response_id=created.id,
                                                           input="hi")
    with pytest.raises(openai.BadRequestError):  # a GPT response cannot continue on Claude
        client.responses.create(model=MODEL, previous_response_id=created.id, input="hi")
    assert len(fake_upstream.requests) == calls


def test_a_function_call_round_trip_continues_from_the_store(openai_sdk, funded, fake_upstream):
    _, key = funded
    client = openai_sdk(key)
    tool = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
    use = {"type": "tool_use", "id": "toolu_7", "name": "weather", "input": {}}
    fake_upstream.stream(stream_events(message(content=[use], stop_reason="tool_use", model=MODEL)))
    with client.responses.stream(model=MODEL, input="Weather?", tools=[tool]) as events:
        first = events.get_final_response()
    assert first.output[0].type == "function_call"
    fake_upstream.reply(message("Sunny.", model=MODEL))
    client.responses.create(model=MODEL, tools=[tool], previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": "toolu_7", "output": "sunny, 21 C"}])
    sent = fake_upstream.requests[-1].body["messages"]
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [{"type": "tool_use", "id": "toolu_7", "name": "weather", "input": {}}]
    assert sent[2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_7", "content": "sunny, 21 C"}]


def test_a_stream_that_breaks_is_not_stored(app, openai_sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(stream_events(message("never finished", model=MODEL)), fail_after=4)
    with openai_sdk(key).responses.stream(model=MODEL, input="hi") as events:
        kinds = [event.type for event in events]
    assert "response.completed" not in kinds
    assert _stored(app) == 0
    [charge] = wallets.charges(user_id)
    assert charge.status == "upstream_error"
    wallets.assert_consistent(user_id)


def test_claude_thinking_goes_back_signed_from_the_store(openai_sdk, funded, fake_upstream):
    _, key = funded
    client = openai_sdk(key)
    thought = {"type": "thinking", "thinking": "Two plus two.", "signature": "sig-abc"}
    fake_upstream.reply(message(content=[thought, {"type": "text", "text": "4"}], model=MODEL))
    first = client.responses.create(model=MODEL, input="2+2?", reasoning={"effort": "low"})
    fake_upstream.reply(message("8", model=MODEL))
    client.responses.create(model=MODEL, input="Double it.", reasoning={"effort": "low"},
                            previous_response_id=first.id)
    sent = fake_upstream.requests[-1].body["messages"]
    assert sent[1]["content"][0] == thought
    assert sent[1]["content"][1] == {"type": "text", "text": "4"}
