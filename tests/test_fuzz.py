"""A hypothesis fuzz of every /v1 route: no 500, never HTML, nothing charged or forwarded when refused."""

from __future__ import annotations

import json

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

ROUTES = ["/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/v1/responses",
          "/v1/models", "/v1/v1/messages", "/v1/nope", "/v1/models/claude-haiku-4-5",
          "/v1/responses/resp_0123456789abcdef01234567", "/v1/responses/resp_x/input_items?limit=0"]
MODELS = st.sampled_from(["claude-haiku-4-5", "gpt-5.4", "nope", "", "claude-opus-4-8"])
lone_surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20), lone_surrogates)
values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
FIELDS = ["max_tokens", "messages", "stream", "input", "n", "tools", "max_output_tokens",
          "max_completion_tokens", "stream_options", "previous_response_id", "system", "tool_choice",
          "response_format", "thinking", "reasoning"]
bodies = st.one_of(
    st.fixed_dictionaries({"model": MODELS}, optional={f: values for f in FIELDS}),
    values,
    st.binary(max_size=64),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), method=st.sampled_from(["POST", "POST", "POST", "GET", "DELETE"]),
       body=bodies)
def test_no_route_answers_500_or_html(client, funded, wallets, fake_upstream, route, method, body):
    user_id, key = funded
    fake_upstream.reset()
    raw = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    before = len(wallets.charges(user_id))
    reply = client.open(route, method=method, data=raw,
                        headers={"x-api-key": key, "content-type": "application/json"})
    assert reply.status_code < 500 or reply.status_code in (502, 503, 504, 529), reply.data[:300]
    assert reply.mimetype in ("application/json", "text/event-stream"), reply.data[:200]
    if reply.status_code >= 400:
        assert "error" in reply.json
        assert len(wallets.charges(user_id)) == before
        if reply.status_code != 502:  # a 502 is the fake upstream refusing what was forwarded
            assert fake_upstream.requests == []
