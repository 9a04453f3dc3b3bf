"""Real outages under load, through the fault proxy: PostgreSQL and Redis cut while gunicorn serves.

Every answered request is charged exactly once after recovery, no hold stays open, nothing
answers 500, and a refusal during the outage is a 503 with retry-after in the endpoint's dialect.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from pagegrid.extensions import db
from pagegrid.models import Hold
from pagegrid.models import LedgerEntry
from tests.fake_upstream import json_response
from tests.fake_upstream import message
from tests.fake_upstream import sse_response
from tests.fake_upstream import stream_events
from tests.faultproxy import FaultProxy
from tests.test_live import start_gunicorn

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def _answer(req):
    time.sleep(0.2)
    if b'"stream": true' in req.get_data() or b'"stream":true' in req.get_data():
        return sse_response(stream_events(message("a b c", model="claude-haiku-4-5-20251001",
                                                  input_tokens=9, output_tokens=3)), 0.05)
    return json_response(message(model="claude-haiku-4-5-20251001", input_tokens=9, output_tokens=3))


def _load(url: str, keys: list[str], seconds: float) -> list[tuple[int, str | None, dict]]:
    """Clients sending streaming and plain requests for ``seconds``: (status, request id, headers)."""
    results: list[tuple[int, str | None, dict]] = []
    stop = time.monotonic() + seconds

    def client(key: str, stream: bool) -> None:
        while time.monotonic() < stop:
            try:
                reply = requests.post(f"{url}/v1/messages", json={**BODY, "stream": stream}, timeout=30,
                                      headers={"x-api-key": key})
                reply.content  # noqa: B018 - read the whole stream
                results.append((reply.status_code, reply.headers.get("request-id"), dict(reply.headers)
                                | {"body": reply.text[:300]}))
            except requests.RequestException as exc:
                results.append((0, None, {"body": repr(exc)}))
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(key, i % 2 == 0)) for i, key in enumerate(keys * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _assert_clean(results, allowed_refusals: set[int]) -> list[str]:
    statuses = [status for status, _, _ in results]
    bad = [(s, h["body"]) for s, _, h in results if s not in {200} | allowed_refusals]
    assert not bad, bad[:5]
    for status, _, headers in results:
        if status == 503:
            assert headers.get("retry-after") and "temporarily unavailable" in headers["body"]
    assert statuses.count(200) > 10
    return [request_id for status, request_id, _ in results if status == 200]


def _wait_charged(app, request_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with app.app_context():
            rows = db.session.scalars(select(LedgerEntry.request_id).where(
                LedgerEntry.request_id.in_(request_ids))).all()
            db.session.rollback()
        if len(rows) == len(request_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    missing = len(request_ids) - len(rows)
    assert sorted(rows) == sorted(request_ids), f"{missing} answered requests not charged"


def _flask(env: dict, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "app", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _env_for(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEGRID_")}
    env["PAGEGRID_DATABASE_URL"] = database_url
    return env


@pytest.fixture
def pg_proxy(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the database outage test needs PostgreSQL (--db=postgresql)")
    parts = urlsplit(database_url)
    proxy = FaultProxy(parts.hostname, parts.port or 5432)
    yield proxy, parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    proxy.close()


def test_postgresql_cut_for_five_seconds_under_load(app, pg_proxy, fake_server, fake_upstream, wallets,
                                                    tmp_path):
    proxy, proxied_url = pg_proxy
    fake_upstream.default = _answer
    users = [wallets.user("50") for _ in range(3)]
    keys = [wallets.key(user) for user in users]
    env = {"PAGEGRID_DATABASE_URL": proxied_url, "PAGEGRID_HOLD_LEASE_SECONDS": "4",
           "PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal")}
    with start_gunicorn(proxied_url, fake_server, tmp_path, env) as url:
        def outage() -> None:
            time.sleep(3)
            proxy.refuse()
            proxy.cut()
            time.sleep(5)
            proxy.heal()

        fault = threading.Thread(target=outage)
        fault.start()
        results = _load(url, keys, 14)
        fault.join()
        answered = _assert_clean(results, {503})
        assert any(status == 503 for status, _, _ in results), "the outage never showed"
        _wait_charged(app, answered)
        time.sleep(5)  # in-flight holds whose release failed lapse with their lease
        direct = _env_for(app.config["SQLALCHEMY_DATABASE_URI"])
        _flask(direct | {"PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal")}, "release-holds")
    with app.app_context():
        assert db.session.scalar(select(Hold.request_id)) is None
        counts = db.session.execute(select(LedgerEntry.request_id)).scalars().all()
        assert len(counts) == len(set(counts))
    for user in users:
        wallets.assert_consistent(user)


@pytest.mark.parametrize("phase", ["before", "during", "after"])
def test_redis_cut_around_the_upstream_call(app, database_url, fake_server, fake_upstream, wallets,
                                            tmp_path, phase):
    proxy = FaultProxy("127.0.0.1", 6379)
    delay = {"before": 0.0, "during": 0.6, "after": 1.6}[phase]
    answered = threading.Event()

    def slow(req):
        time.sleep(1.2)
        answered.set()
        return json_response(message(model="claude-haiku-4-5-20251001", input_tokens=9, output_tokens=3))

    fake_upstream.default = slow
    user = wallets.user("10")
    key = wallets.key(user)
    env = {"PAGEGRID_WORKERS": "2", "PAGEGRID_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
           "PAGEGRID_RATELIMIT_PREFIX": f"outage-{tmp_path.name}",
           "PAGEGRID_JOURNAL_DIR": str(tmp_path / "j")}
    try:
        with start_gunicorn(database_url, fake_server, tmp_path, env) as url:
            results: list[tuple[int, str | None]] = []

            def call() -> None:
                reply = requests.post(f"{url}/v1/messages", json=BODY, timeout=30, headers={"x-api-key": key})
                results.append((reply.status_code, reply.headers.get("request-id")))

            calls = [threading.Thread(target=call) for _ in range(4)]
            started = time.monotonic()
            if phase == "before":
                proxy.refuse()
                proxy.cut()
            for thread in calls:
                thread.start()
            if phase != "before":
                time.sleep(max(0.0, delay - (time.monotonic() - started)))
                proxy.refuse()
                proxy.cut()
            for thread in calls:
                thread.join()
            # After the outage the store is used again.
            proxy.heal()
            time.sleep(6)
            call()
    finally:
        proxy.close()
    assert [status for status, _ in results] == [200] * 5, results
    _wait_charged(app, [request_id for _, request_id in results])
    wallets.assert_consistent(user)
