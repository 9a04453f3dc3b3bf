"""The real serving stack: gunicorn with gevent workers, as ``make run`` starts it."""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import UPSTREAM_KEY
from tests.fake_upstream import message
from tests.fake_upstream import sse_response
from tests.fake_upstream import stream_events
from tests.serving import Gunicorn
from tests.serving import clean_env

pytestmark = pytest.mark.live

BODY = {"model": "claude-haiku-4-5", "max_tokens": 500, "stream": True,
        "messages": [{"role": "user", "content": "stream please"}]}


# The gunicorn master serving each URL that start_gunicorn yielded (to signal it).
MASTERS: dict[str, subprocess.Popen] = {}


@contextmanager
def start_gunicorn(database_url: str, fake_server, folder: Path, extra_env: dict | None = None):
    """Serve the gateway as `make run` does; yield its URL; stop it afterwards."""
    env = clean_env({"PAGEGRID_DATABASE_URL": database_url, "PAGEGRID_ANTHROPIC_URL": fake_server.url,
                     "PAGEGRID_ANTHROPIC_KEY": UPSTREAM_KEY, "PAGEGRID_SECRET_KEY": "live-tests",
                     "PAGEGRID_WORKERS": "1", **(extra_env or {})})
    server = Gunicorn(env, folder / f"gunicorn-{secrets.token_hex(4)}.log")
    with server:
        MASTERS[server.url] = server.proc
        try:
            yield server.url
        finally:
            MASTERS.pop(server.url, None)


@pytest.fixture(scope="module")
def gunicorn(database_url, fake_server, tmp_path_factory):
    with start_gunicorn(database_url, fake_server, tmp_path_factory.mktemp("gunicorn")) as url:
        yield url


def _event_times(url: str, key: str, body: dict = BODY) -> tuple[list[float], bytes]:
    start = time.monotonic()
    times, data = [], b""
    with requests.post(f"{url}/v1/v1/messages?beta=true", json=body, stream=True, timeout=20,
                       headers={"x-api-key": key}) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            data += line + b"\n"
            if line.startswith(b"event:"):
                times.append(time.monotonic() - start)
    return times, data


def test_events_are_relayed_as_they_arrive(gunicorn, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(stream_events(message("a b c d e f g h", input_tokens=12, output_tokens=8)),
                         delay=0.15)
    times, data = _event_times(gunicorn, key)
    assert b"event: message_stop" in data
    wallets.wait_settled(user_id)
    # Upstream takes ~2 s in all; the first event must not wait for the last.
    assert times[0] < 0.5, times
    assert times[-1] - times[0] > 1.2, times
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) < 0.6, gaps
    [charge] = wallets.charges(user_id)
    assert (charge.status, charge.output_tokens) == ("complete", 8)
    wallets.assert_consistent(user_id)


def test_disconnect_under_gevent_settles_once(gunicorn, funded, wallets, fake_upstream):
    user_id, key = funded
    fake_upstream.stream(stream_events(message(" ".join(["x"] * 200), input_tokens=7)), delay=0.02)
    response = requests.post(f"{gunicorn}/v1/messages", json=BODY, stream=True, timeout=10,
                             headers={"Authorization": f"Bearer {key}"})
    assert next(response.iter_lines()) == b"event: message_start"
    response.close()
    wallets.wait_settled(user_id)
    [charge] = wallets.charges(user_id)
    assert charge.status == "client_aborted" and charge.input_tokens == 7
    wallets.assert_consistent(user_id)


def test_a_graceful_stop_ends_a_long_stream_with_an_error_event_and_charges_it(
        database_url, fake_server, fake_upstream, funded, wallets, tmp_path):
    user_id, key = funded
    events = stream_events(message(" ".join(["word"] * 400), input_tokens=11))
    fake_upstream.default = lambda req: sse_response(events, 0.05)  # about 20 s in all
    env = {"PAGEGRID_GRACEFUL_TIMEOUT": "13", "PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal")}
    with start_gunicorn(database_url, fake_server, tmp_path, env) as url:
        with requests.post(f"{url}/v1/messages", json=BODY, stream=True, timeout=30,
                           headers={"x-api-key": key}) as response:
            lines = response.iter_lines()
            assert next(lines) == b"event: message_start"
            MASTERS[url].terminate()
            started = time.monotonic()
            rest = b"\n".join(lines)
        assert b"event: error" in rest and b"restarting" in rest
        assert 2 <= time.monotonic() - started < 8
    wallets.wait_settled(user_id)
    [charge] = wallets.charges(user_id)
    assert charge.status == "upstream_error" and charge.input_tokens == 11 and charge.output_tokens > 0
    wallets.assert_consistent(user_id)


def test_many_streams_share_one_worker(gunicorn, funded, wallets, fake_upstream):
    user_id, key = funded
    events = stream_events(message("one two three", input_tokens=3))
    fake_upstream.default = lambda req: sse_response(events, 0.1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(_event_times(gunicorn, key)))
               for _ in range(30)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert len(results) == 30
    # Each stream takes ~1 s upstream; served concurrently by one gevent worker, not one by one.
    assert elapsed < 6, elapsed
    wallets.wait_settled(user_id)
    assert len(wallets.charges(user_id)) == 30
    wallets.assert_consistent(user_id)


def test_a_blocked_query_does_not_stall_other_streams(request, gunicorn, database_url, wallets,
                                                      fake_upstream):
    """PostgreSQL only: one request waits on a row lock while another keeps streaming."""
    if request.config.getoption("--db") != "postgresql":
        pytest.skip("SQLite has no row locks to wait on; the PostgreSQL run proves this")
    blocked_user, streaming_user = wallets.user("5"), wallets.user("5")
    blocked_key, streaming_key = wallets.key(blocked_user), wallets.key(streaming_user)
    events = stream_events(message("p q r s t u v w", input_tokens=3))
    fake_upstream.default = lambda req: sse_response(events, 0.1)
    plain_url = database_url.replace("+psycopg", "")
    with psycopg.connect(plain_url) as locker:
        locker.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (blocked_user,))
        blocked = threading.Thread(target=_event_times, args=(gunicorn, blocked_key))
        blocked.start()
        time.sleep(0.3)  # the blocked request is now waiting inside its UPDATE
        times, data = _event_times(gunicorn, streaming_key)
        assert b"message_stop" in data
        assert times[-1] < 3, times
        assert blocked.is_alive()
        locker.rollback()
    blocked.join(10)
    assert not blocked.is_alive()
    wallets.wait_settled(blocked_user)
    wallets.wait_settled(streaming_user)
    wallets.assert_consistent(blocked_user)
    wallets.assert_consistent(streaming_user)


def test_websocket_upgrade_gets_426_from_gunicorn(gunicorn):
    response = requests.get(f"{gunicorn}/v1/responses", timeout=10, headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Authorization": "Bearer pg-" + "0" * 64})
    assert response.status_code == 426


def test_an_api_request_logs_one_line_and_a_page_gets_the_access_line(database_url, fake_server, funded,
                                                                       wallets, tmp_path):
    user, key = funded
    with start_gunicorn(database_url, fake_server, tmp_path) as url:
        body = {**BODY, "stream": False}
        answer = requests.post(f"{url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=20)
        assert answer.status_code == 200, answer.text
        assert requests.get(f"{url}/login", timeout=10).status_code == 200
        request_id = answer.headers["request-id"]
        deadline = time.monotonic() + 10
        log_path = next(tmp_path.glob("gunicorn-*.log"))
        while "GET /login" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    text = log_path.read_text()
    # PageGrid's line, with the request id; gunicorn's access line only for the page.
    line = next(line for line in text.splitlines() if f"request_id={request_id}" in line)
    assert " method=POST path=/v1/messages route=messages status=200 " in line
    assert " client_ip=127.0.0.1" in line
    assert '"GET /login" 200' in text
    assert '"POST /v1/messages"' not in text
    wallets.wait_settled(user)
    wallets.assert_consistent(user)
