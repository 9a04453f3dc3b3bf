"""Every refusal answers in the endpoint's dialect with the documented status, and charges nothing."""

from __future__ import annotations

import json

import anthropic
import pytest
from sqlalchemy import update

from pagegrid.extensions import db
from pagegrid.models import ApiKey
from pagegrid.models import CatalogModel
from pagegrid.models import utcnow
from tests.fake_upstream import message
from tests.fake_upstream import stream_events

BODY = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def anthropic_error(response) -> tuple[int, str]:
    assert response.json["type"] == "error", response.json
    assert set(response.json["error"]) == {"type", "message"}
    assert response.json["error"]["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return response.status_code, response.json["error"]["type"]


def post(client, key: str | None, body=BODY, path: str = "/v1/messages", **headers):
    if key:
        headers["x-api-key"] = key
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, data=data, headers=headers, content_type="application/json")


@pytest.mark.parametrize("headers", [
    {},
    {"x-api-key": "sk-ant-api03-not-ours"},
    {"x-api-key": "pg-" + "g" * 64},
    {"x-api-key": "pg-" + "a" * 63},
    {"Authorization": "Basic cGc6eA=="},
    {"x-api-key": "pg-" + "0" * 64},
    {"api-key": "pg-" + "1" * 64},
    {"Authorization": "Bearer pg-" + "2" * 64},
])
def test_bad_keys_get_401(client, funded, wallets, fake_upstream, headers):
    user_id, _ = funded
    response = client.post("/v1/messages", json=BODY, headers=headers)
    assert anthropic_error(response) == (401, "authentication_error")
    assert response.headers["request-id"].startswith("req_")
    assert fake_upstream.requests == []
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("header", ["x-api-key", "api-key", "Authorization"])
def test_every_documented_key_header_works(client, funded, header):
    _, key = funded
    value = f"Bearer {key}" if header == "Authorization" else key
    assert client.post("/v1/messages", json=BODY, headers={header: value}).status_code == 200


def test_revoked_and_expired_keys_get_401(app, client, funded, wallets, fake_upstream):
    user_id, key = funded
    other = wallets.key(user_id)
    with app.app_context():
        db.session.execute(update(ApiKey).where(ApiKey.prefix == key[:7], ApiKey.last4 == key[-4:])
                           .values(revoked_at=utcnow()))
        db.session.execute(update(ApiKey).where(ApiKey.last4 == other[-4:]).values(expires_at=utcnow()))
        db.session.commit()
    assert "revoked" in post(client, key).json["error"]["message"]
    assert anthropic_error(post(client, other)) == (401, "authentication_error")
    assert fake_upstream.requests == []


def test_empty_wallet_gets_402_and_sdk_does_not_retry(sdk, wallets, fake_upstream):
    user_id = wallets.user("0")
    client = sdk(wallets.key(user_id), max_retries=3)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(**BODY)
    assert info.value.status_code == 402
    assert info.value.body["error"]["type"] == "billing_error"
    assert "$0.00" in info.value.body["error"]["message"]
    assert fake_upstream.requests == []
    wallets.assert_consistent(user_id)


def test_unknown_and_inactive_models_get_404(app, client, funded, fake_upstream):
    _, key = funded
    assert anthropic_error(post(client, key, {**BODY, "model": "claude-9"})) == (404, "not_found_error")
    with app.app_context():
        db.session.execute(update(CatalogModel).where(CatalogModel.id == "claude-opus-4-7")
                           .values(active=False))
        db.session.commit()
    fresh = app.test_client()  # a new app instance would share the cache; this one reloads in 2 s
    app.extensions["pagegrid.catalog"].invalidate()
    response = post(fresh, key, {**BODY, "model": "claude-opus-4-7"})
    assert anthropic_error(response) == (404, "not_found_error")
    assert fake_upstream.requests == []


def test_model_outside_the_keys_allow_list_gets_403(client, wallets, fake_upstream):
    user_id = wallets.user("1")
    key = wallets.key(user_id, allowed_models=["claude-haiku-4-5"])
    assert post(client, key).status_code == 200  # by alias
    assert post(client, key, {**BODY, "model": "claude-haiku-4-5-20251001"}).status_code == 200
    response = post(client, key, {**BODY, "model": "claude-opus-4-8"})
    assert anthropic_error(response) == (403, "permission_error")
    assert len(fake_upstream.requests) == 2
    wallets.assert_consistent(user_id)


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b"", "not valid JSON"),
    ({"max_tokens": 5, "messages": []}, "model"),
    ({"model": "claude-haiku-4-5", "messages": []}, "max_tokens"),
    ({"model": "claude-haiku-4-5", "max_tokens": 0, "messages": []}, "max_tokens"),
    ({"model": "claude-haiku-4-5", "max_tokens": "9", "messages": []}, "max_tokens"),
    ({"model": "claude-haiku-4-5", "max_tokens": True, "messages": []}, "max_tokens"),
    ({"model": "claude-haiku-4-5", "max_tokens": 5}, "messages"),
    ({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": "hi"}, "messages"),
    ({"model": 7, "max_tokens": 5, "messages": []}, "model"),
    ({**BODY, "stream": "yes"}, "stream"),
])
def test_invalid_bodies_get_400(client, funded, wallets, fake_upstream, body, fragment):
    user_id, key = funded
    response = post(client, key, body)
    assert anthropic_error(response) == (400, "invalid_request_error")
    assert fragment in response.json["error"]["message"]
    assert fake_upstream.requests == []
    wallets.assert_consistent(user_id)


def test_oversized_body_gets_413(app, client, funded, wallets, fake_upstream):
    user_id, key = funded
    app.config["MAX_CONTENT_LENGTH"] = 1000
    huge = {**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert anthropic_error(post(client, key, huge)) == (413, "request_too_large")
    assert fake_upstream.requests == []
    wallets.assert_consistent(user_id)


def test_unknown_route_and_wrong_method_answer_json(client, funded):
    _, key = funded
    assert client.get("/v1/nothing-here").json["error"]["type"] == "not_found_error"
    response = client.get("/v1/messages", headers={"x-api-key": key})
    assert anthropic_error(response) == (405, "invalid_request_error")


@pytest.mark.parametrize("status, error_type, expected", [
    (400, "invalid_request_error", (400, "invalid_request_error")),
    (404, "not_found_error", (404, "not_found_error")),
    (401, "authentication_error", (502, "api_error")),
    (403, "permission_error", (502, "api_error")),
    (429, "rate_limit_error", (429, "rate_limit_error")),
    (500, "api_error", (502, "api_error")),
    (502, "api_error", (502, "api_error")),
    (529, "overloaded_error", (529, "overloaded_error")),
])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_are_mapped_and_not_charged(client, funded, wallets, fake_upstream,
                                                    status, error_type, expected, stream):
    user_id, key = funded
    fake_upstream.error(status, error_type, "upstream detail", headers={"retry-after": "7"})
    response = post(client, key, {**BODY, "stream": stream})
    assert anthropic_error(response) == expected
    if status == 429:
        assert response.headers["retry-after"] == "7"
    if status in (401, 403):
        assert "operator" in response.json["error"]["message"]
    assert wallets.charges(user_id) == []
    wallets.assert_consistent(user_id)


def test_upstream_read_timeout_gets_504(app, client, funded, wallets, fake_upstream):
    user_id, key = funded
    app.config["PAGEGRID_UPSTREAM_READ_TIMEOUT"] = 0.3
    fake_upstream.hang(1.0)
    response = post(client, key)
    assert anthropic_error(response) == (504, "timeout_error")
    assert "did not answer" in response.json["error"]["message"]
    wallets.assert_consistent(user_id)


def test_unreachable_upstream_gets_502(app, client, funded, wallets):
    user_id, key = funded
    app.config["PAGEGRID_ANTHROPIC_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    response = post(client, key)
    assert anthropic_error(response) == (502, "api_error")
    assert "reach" in response.json["error"]["message"]
    wallets.assert_consistent(user_id)


def test_malformed_upstream_json_is_502_and_free(client, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.respond_with(lambda req: __import__("werkzeug").Response("not json", 200))
    assert anthropic_error(post(client, key)) == (502, "api_error")
    assert wallets.charges(user_id) == []
    wallets.assert_consistent(user_id)


def test_error_event_mid_stream_is_relayed_and_usage_charged(sdk, funded, wallets, fake_upstream):
    user_id, key = funded
    events = stream_events(message("alpha beta gamma delta", input_tokens=40))[:4]
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    fake_upstream.stream(events)
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk(funded[1]).messages.stream(**BODY) as s:
            s.until_done()
    assert "Overloaded" in str(info.value)
    [charge] = wallets.charges(user_id)
    assert charge.status == "upstream_error"
    assert charge.input_tokens == 40
    assert charge.output_tokens == 3  # "alpha beta " seen: 11 characters, about 3 tokens
    wallets.assert_consistent(user_id)


def test_stream_cut_by_upstream_ends_with_error_event(client, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(stream_events(message("a b c d e f", input_tokens=30)), fail_after=4)
    response = post(client, key, {**BODY, "stream": True})
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert text.rstrip().splitlines()[-2] == "event: error"
    assert '"type":"api_error"' in text
    [charge] = wallets.charges(user_id)
    assert (charge.status, charge.input_tokens) == ("upstream_error", 30)
    wallets.assert_consistent(user_id)


def test_models_endpoint_errors_use_openai_shape(client):
    response = client.get("/v1/models/claude-9")
    assert response.status_code == 404
    assert response.json["error"]["type"] == "not_found_error"
    assert set(response.json["error"]) == {"message", "type", "param", "code"}
    bad_key = client.get("/v1/models", headers={"Authorization": "Bearer pg-nope"})
    assert bad_key.status_code == 401


def test_root_paths_answer_like_v1(openai_sdk, funded, fake_upstream, client):
    _, key = funded
    fake_upstream.reply(message("hi", model="claude-haiku-4-5-20251001"))
    sdk = openai_sdk(key, base_url="http://gateway.test")  # the bare host, no /v1
    completion = sdk.chat.completions.create(model="claude-haiku-4-5",
                                             messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].message.content == "hi"
    assert client.get("/models").json["data"]


@pytest.mark.parametrize("path, hint", [
    ("/v1/messages/v1/messages", "seems to include /messages"),
    ("/v1/chat/completions/chat/completions", "seems to include /chat/completions"),
    ("/api/v2/whatever", "base URL"),
])
def test_unknown_paths_answer_json_with_a_base_url_hint(client, funded, path, hint):
    _, key = funded
    reply = client.post(path, json={"model": "x"}, headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 404 and reply.mimetype == "application/json"
    assert hint in json.dumps(reply.json)


@pytest.mark.parametrize("path", ["/v1//messages", "/v1/messages/", "//v1/messages"])
def test_repeated_and_trailing_slashes_route_without_redirects(client, funded, fake_upstream, path):
    _, key = funded
    fake_upstream.reply(message("hi", model="claude-haiku-4-5-20251001"))
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    reply = client.post(path, headers={"x-api-key": key}, json=body)
    assert reply.status_code == 200
