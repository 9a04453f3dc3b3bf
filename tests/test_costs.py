"""What a request cost: the pagegrid-cost-usd header, GET /v1/requests/{id} and the request pages."""

from __future__ import annotations

import re

import pytest

from tests.fake_upstream import chat_completion
from tests.fake_upstream import message
from tests.fake_upstream import openai_response
from tests.fake_upstream import stream_events

OPUS_IN, OPUS_OUT, OPUS_CW, OPUS_CW1H, OPUS_CR = 5000, 25000, 6250, 10000, 500  # claude-opus-4-6
GPT_IN, GPT_OUT, GPT_CACHED = 2500, 15000, 250  # gpt-5.4


def usd(nanos: int) -> str:
    return f"{nanos // 10**9}.{nanos % 10**9:09d}"


def test_cost_header_equals_the_ledger_row_through_the_anthropic_sdk(sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.reply(message("Paris.", input_tokens=1400, output_tokens=310, cache_write=200,
                                cache_read=3000, cache_creation={"ephemeral_5m_input_tokens": 120,
                                                                 "ephemeral_1h_input_tokens": 80}))
    reply = sdk(key).messages.with_raw_response.create(
        model="claude-opus-4-6", max_tokens=1024, messages=[{"role": "user", "content": "France's capital?"}])
    assert reply.parse().content[0].text == "Paris."

    [charge] = wallets.charges(user_id)
    expected = 1400 * OPUS_IN + 310 * OPUS_OUT + 120 * OPUS_CW + 80 * OPUS_CW1H + 3000 * OPUS_CR
    assert charge.amount_nanos == -expected
    assert reply.headers["pagegrid-cost-usd"] == usd(expected)
    assert re.fullmatch(r"\d+\.\d{9}", reply.headers["pagegrid-cost-usd"])
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("route", ["chat", "responses"])
def test_cost_header_equals_the_ledger_row_through_the_openai_sdk(openai_sdk, funded, wallets, fake_upstream,
                                                                  route):
    user_id, key = funded
    client = openai_sdk(key)
    if route == "chat":
        fake_upstream.reply(chat_completion("4", prompt_tokens=1000, completion_tokens=77, cached_tokens=400))
        reply = client.chat.completions.with_raw_response.create(
            model="gpt-5.4", max_tokens=100, messages=[{"role": "user", "content": "2+2?"}])
    else:
        fake_upstream.reply(openai_response("4", input_tokens=1000, output_tokens=77, cached_tokens=400))
        reply = client.responses.with_raw_response.create(model="gpt-5.4", input="2+2?",
                                                          max_output_tokens=100)
    reply.parse()

    [charge] = wallets.charges(user_id)
    expected = 600 * GPT_IN + 400 * GPT_CACHED + 77 * GPT_OUT
    assert charge.amount_nanos == -expected
    assert reply.headers["pagegrid-cost-usd"] == usd(expected)
    assert charge.request_id == reply.headers["x-request-id"]
    wallets.assert_consistent(user_id)


def test_no_cost_header_on_streams_refusals_or_free_calls(client, sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(stream_events(message(input_tokens=10, output_tokens=5)))
    raw = sdk(key).messages.with_raw_response.create(model="claude-opus-4-6", max_tokens=50, stream=True,
                                                     messages=[{"role": "user", "content": "hi"}])
    assert "pagegrid-cost-usd" not in raw.headers
    list(raw.parse())
    broke = wallets.key(wallets.user("0"))
    refused = client.post("/v1/messages", headers={"x-api-key": broke},
                          json={"model": "claude-opus-4-6", "max_tokens": 5, "messages": [{"role": "user",
                                                                                           "content": "x"}]})
    assert refused.status_code == 402 and "pagegrid-cost-usd" not in refused.headers
    models = client.get("/v1/models")
    assert "pagegrid-cost-usd" not in models.headers
    assert len(wallets.charges(user_id)) == 1
