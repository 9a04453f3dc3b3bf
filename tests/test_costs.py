"""What a request cost: the pagegrid-cost-usd header, GET /v1/requests/{id} and the request pages."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Browser
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


def test_a_request_read_back_with_another_key_of_the_same_user(client, sdk, wallets, fake_upstream):
    user_id = wallets.user("10")
    laptop = wallets.key(user_id, name="laptop")
    ci = wallets.key(user_id, name="ci")
    fake_upstream.reply(message("Hi", input_tokens=1400, output_tokens=310, cache_write=200, cache_read=3000,
                                cache_creation={"ephemeral_5m_input_tokens": 120,
                                                "ephemeral_1h_input_tokens": 80}))
    reply = sdk(laptop).messages.with_raw_response.create(
        model="claude-opus-4-6", max_tokens=1024, messages=[{"role": "user", "content": "hi"}])
    request_id = reply.headers["request-id"]

    for path in (f"/v1/requests/{request_id}", f"/requests/{request_id}"):
        got = client.get(path, headers={"Authorization": f"Bearer {ci}"})
        assert got.status_code == 200, got.get_data(as_text=True)
        record = got.get_json()
        assert record["id"] == request_id and record["model"] == "claude-opus-4-6"
        assert (record["status"], record["outcome"], record["endpoint"], record["stream"]) == (
            200, "complete", "messages", False)
        assert record["usage"] | {"server_tool_use": {}, "server_tool_fees_nanos": {}} == {
            "input_tokens": 1400, "output_tokens": 310, "cache_creation_input_tokens": 200,
            "cache_creation_5m_input_tokens": 120, "cache_creation_1h_input_tokens": 80,
            "cache_read_input_tokens": 3000, "server_tool_use": {}, "server_tool_fees_nanos": {}}
        assert record["rates"]["input"] == {"nanos_per_token": OPUS_IN, "usd_per_mtok": "5"}
        assert record["rates"]["cache_write_1h"] == {"nanos_per_token": OPUS_CW1H, "usd_per_mtok": "10"}
        assert record["rates"]["cache_read"]["usd_per_mtok"] == "0.5"
        assert record["cost"]["usd"] == reply.headers["pagegrid-cost-usd"]
        [charge] = wallets.charges(user_id)
        assert record["cost"]["nanos"] == -charge.amount_nanos
        assert record["key"]["name"] == "laptop"
        assert record["key"]["display"] == f"{laptop[:7]}\u2026{laptop[-4:]}"
        assert laptop not in got.get_data(as_text=True) and ci not in got.get_data(as_text=True)
        assert record["timings"]["latency_ms"] is not None and record["timings"]["latency_ms"] >= 0
        assert record["upstream"] == {"attempts": 1}  # the operator's account names stay private
        assert "user" not in record


def test_another_users_request_is_404_in_the_dialect(client, sdk, wallets, fake_upstream):
    owner = wallets.key(wallets.user("10"))
    stranger = wallets.key(wallets.user("10"))
    request_id = _charged(sdk, owner, fake_upstream)

    theirs = client.get(f"/v1/requests/{request_id}", headers={"Authorization": f"Bearer {stranger}"})
    unknown = client.get("/v1/requests/req_000000000000000000000000",
                         headers={"Authorization": f"Bearer {owner}"})
    for reply in (theirs, unknown):
        assert reply.status_code == 404
        assert reply.get_json()["error"]["type"] == "not_found_error"
    assert theirs.get_json()["error"]["message"] == unknown.get_json()["error"]["message"].replace(
        "req_000000000000000000000000", request_id)
    assert client.get(f"/v1/requests/{request_id}").status_code == 401
    assert client.get(f"/v1/requests/{'x' * 5000}", headers={"x-api-key": owner}).status_code == 404


def test_a_refused_request_has_a_record_without_a_charge(client, wallets):
    user_id = wallets.user("0")
    key = wallets.key(user_id)
    refused = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "gpt-5.4", "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 402
    record = client.get(f"/v1/requests/{refused.headers['request-id']}",
                        headers={"x-api-key": key}).get_json()
    assert (record["status"], record["charged"], record["error_type"]) == (402, False, "billing_error")
    assert record["cost"] == {"nanos": 0, "usd": "0.000000000", "held_nanos": None}
    assert record["rates"] is None


def _charged(sdk, key: str, fake_upstream) -> str:
    fake_upstream.reply(message("Hi", input_tokens=21, output_tokens=8))
    reply = sdk(key).messages.with_raw_response.create(
        model="claude-opus-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    return reply.headers["request-id"]


def test_request_page_for_its_owner_only_and_linked_from_every_ledger_list(browser, app, sdk, wallets,
                                                                          fake_upstream):
    user_id = wallets.user("10")
    key = wallets.key(user_id, name="laptop")
    request_id = _charged(sdk, key, fake_upstream)
    browser.login(wallets.email(user_id))
    link = f'href="/activity/{request_id}"'
    for path in ("/dashboard", "/wallet", "/usage", "/activity"):
        page = browser.get(path).get_data(as_text=True)
        assert link in page, path
    overview = browser.get("/dashboard").get_data(as_text=True)
    assert f"laptop ({key[:7]}\u2026{key[-4:]})" in overview  # the key column names the key, not "—"

    page = browser.get(f"/activity/{request_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert request_id in text and "laptop" in text and key not in text
    assert "$0.000305000" in text  # 21 × $5/M + 8 × $25/M
    assert "env-anthropic" not in text  # account names are the operator's

    other = Browser(app)
    other.login(wallets.email(wallets.user("10")))
    assert other.get(f"/activity/{request_id}").status_code == 404
    assert other.get("/activity/req_nope").status_code == 404


def test_admin_sees_any_users_request(browser, sdk, wallets, fake_upstream):
    user_id = wallets.user("10")
    request_id = _charged(sdk, wallets.key(user_id), fake_upstream)
    admin = wallets.user("0", admin=True)
    browser.login(wallets.email(admin))
    assert browser.get(f"/activity/{request_id}").status_code == 404  # the customer page is the owner's
    for path in (f"/admin/users/{user_id}", "/admin/requests"):
        assert f'href="/admin/requests/{request_id}"' in browser.get(path).get_data(as_text=True), path
    page = browser.get(f"/admin/requests/{request_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert wallets.email(user_id) in text and "env-anthropic" in text and "$0.000305000" in text
    assert browser.get("/admin/requests/req_nope").status_code == 404
