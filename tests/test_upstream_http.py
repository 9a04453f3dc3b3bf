"""The model-call transport (upstream/http.py) on requests' adapter, against the fake on loopback:
connections reused when an answer was read to its end, dropped when one was cut short, and
failures mapped to the gateway's errors."""

from __future__ import annotations

import json

import pytest

from pagegrid.errors import UpstreamError
from pagegrid.errors import UpstreamTimeout
from pagegrid.upstream import http
from tests import fake_upstream as fu
from tests.serving import free_port

TIMEOUTS = {"connect_timeout": 2.0, "read_timeout": 2.0}
HEADERS = {"content-type": "application/json"}


def connections_made() -> int:
    """Connections the adapter's pools opened since they were last cleared."""
    pools = http._adapter.poolmanager.pools
    return sum(pools[key].num_connections for key in pools.keys())


def test_an_answer_read_to_its_end_leaves_its_connection_to_the_next_call(fake_upstream):
    url = fake_upstream.url + "/v1/messages"
    http._adapter.poolmanager.clear()  # a fresh pool for this fake: count only this test's connections
    for text in ("first", "second", "third"):
        fake_upstream.reply(fu.message(text))
        reply = http.post(url, b"{}", HEADERS, **TIMEOUTS)
        assert reply.status == 200
        assert json.loads(reply.read())["content"][0]["text"] == text
    assert connections_made() == 1


def test_a_stream_cut_short_drops_its_connection_and_the_next_call_reads_only_its_own_answer(fake_upstream):
    url = fake_upstream.url + "/v1/messages"
    http._adapter.poolmanager.clear()
    fake_upstream.stream(fu.stream_events(fu.message("word " * 50)), delay=0.01)
    reply = http.post(url, b"{}", HEADERS, **TIMEOUTS)
    first = next(iter(reply.chunks()))
    assert first.startswith(b"event: message_start")
    reply.close()
    reply.close()  # twice is safe
    fake_upstream.reply(fu.message("after the cut"))
    after = http.post(url, b"{}", HEADERS, **TIMEOUTS)
    # A connection given back with the rest of the stream unread would hand those bytes to this
    # call as its status line; a closed one reconnects.
    assert after.status == 200
    assert json.loads(after.read())["content"][0]["text"] == "after the cut"


def test_errors_status_and_headers_come_through(fake_upstream):
    fake_upstream.error(429, "rate_limit_error", headers={"Retry-After": "7"})
    reply = http.post(fake_upstream.url + "/v1/messages", b"{}", HEADERS, **TIMEOUTS)
    assert reply.status == 429
    assert reply.headers.get("retry-after") == "7"  # case-insensitive, as requests' were
    assert json.loads(reply.read())["error"]["type"] == "rate_limit_error"


def test_a_refused_connection_and_a_silent_provider_are_upstream_errors(fake_upstream):
    with pytest.raises(UpstreamError) as refused:
        http.post(f"http://127.0.0.1:{free_port()}/v1/messages", b"{}", HEADERS, **TIMEOUTS)
    assert not isinstance(refused.value, UpstreamTimeout)
    fake_upstream.hang(1.0)
    with pytest.raises(UpstreamTimeout, match="did not answer within 0.3s"):
        http.post(fake_upstream.url + "/v1/messages", b"{}", HEADERS, connect_timeout=2.0, read_timeout=0.3)
