"""Slow and hostile clients under the real serving stack cannot exhaust the worker or the pool."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.fake_upstream import json_response
from tests.fake_upstream import message
from tests.test_live import start_gunicorn

pytestmark = pytest.mark.live

BODY = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 50,
                   "messages": [{"role": "user", "content": "hello " * 100}]}).encode()


def _slow_upload(url: str, key: str, stop: threading.Event, replies: list[bytes]) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nx-api-key: {key}\r\n"
                     f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n".encode())
        sent = 0
        sock.settimeout(0.5)
        while not stop.is_set() and sent < len(BODY) - 1:
            try:
                sock.sendall(BODY[sent:sent + 1])
            except OSError:
                break
            sent += 1
            try:
                data = sock.recv(4096)
                if data:
                    replies.append(data)
                    return
            except TimeoutError:
                pass
        sock.settimeout(10)
        try:
            replies.append(sock.recv(4096))
        except OSError:
            replies.append(b"")


def test_forty_slow_uploads_do_not_slow_another_key(database_url, fake_server, fake_upstream, wallets,
                                                    tmp_path):
    fake_upstream.default = lambda req: json_response(message(model="claude-haiku-4-5-20251001"))
    slow_key = wallets.key(wallets.user("0"))  # even a key with an empty wallet
    fast_key = wallets.key(wallets.user("10"))
    env = {"PAGEGRID_BODY_TIMEOUT": "4", "PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal"),
           "PAGEGRID_ANTHROPIC_KEY": "", "PAGEGRID_DEMO_DELAY": "0"}
    with start_gunicorn(database_url, fake_server, tmp_path, env) as url:
        stop = threading.Event()
        replies: list[bytes] = []
        uploads = [threading.Thread(target=_slow_upload, args=(url, slow_key, stop, replies))
                   for _ in range(40)]
        for thread in uploads:
            thread.start()
        time.sleep(1)
        try:
            for _ in range(10):
                started = time.monotonic()
                reply = requests.post(f"{url}/v1/messages", data=BODY, timeout=10,
                                      headers={"x-api-key": fast_key, "content-type": "application/json"})
                assert reply.status_code == 200
                assert time.monotonic() - started < 1.5
        finally:
            for thread in uploads:
                thread.join(20)
            stop.set()
    assert len(replies) == 40
    assert all(r.startswith(b"HTTP/1.1 408") for r in replies), {r[:40] for r in replies}


def test_concurrency_is_exact_across_two_workers_with_redis(database_url, fake_server, fake_upstream,
                                                          wallets, tmp_path):
    def slow(req):
        time.sleep(1.5)
        return json_response(message(model="claude-haiku-4-5-20251001"))

    fake_upstream.default = slow
    user_id = wallets.user("10")
    key = wallets.key(user_id, concurrency=3)
    env = {"PAGEGRID_WORKERS": "2", "PAGEGRID_REDIS_URL": "redis://127.0.0.1:6379/0",
           "PAGEGRID_RATELIMIT_PREFIX": f"conc-{tmp_path.name}", "PAGEGRID_JOURNAL_DIR": str(tmp_path / "j")}
    body = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]}
    with start_gunicorn(database_url, fake_server, tmp_path, env) as url:
        # Two clients hang up mid-request: their slots come back when their requests end.
        for _ in range(2):
            try:
                requests.post(f"{url}/v1/messages", json=body, timeout=0.3, headers={"x-api-key": key})
            except requests.exceptions.ReadTimeout:
                pass
        time.sleep(2)
        results: list[int] = []

        def call() -> None:
            reply = requests.post(f"{url}/v1/messages", json=body, timeout=20, headers={"x-api-key": key})
            results.append(reply.status_code)

        threads = [threading.Thread(target=call) for _ in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == [200] * 3 + [429] * 7, results
    wallets.wait_settled(user_id)
    assert len(wallets.charges(user_id)) == 5  # the two abandoned requests were answered upstream
