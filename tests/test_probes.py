"""/healthz, /readyz and /metrics: no key, never rate limited, /metrics for loopback or a token."""

from __future__ import annotations

import os
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import func
from sqlalchemy import select

from pagegrid import create_app
from pagegrid.extensions import db
from pagegrid.models import LedgerEntry
from tests.conftest import POSTGRES_ADMIN_URL
from tests.fake_upstream import json_response
from tests.fake_upstream import message
from tests.fake_upstream import sse_response
from tests.fake_upstream import stream_events
from tests.faultproxy import FaultProxy
from tests.test_live import start_gunicorn

REDIS_URL = os.environ.get("PAGEGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BODY = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
TOKEN = "metrics-" + "t" * 24


def test_healthz_and_readyz_answer_without_a_key_and_are_never_limited(client):
    for _ in range(60):  # far past any limiter window
        assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready" and ready.json["checks"] == {"database": "ok"}


def _probe_app(tmp_path: Path, database_url: str, redis_url: str | None = None):
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url,
              "PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal")}
    if redis_url:
        config.update(PAGEGRID_REDIS_URL=redis_url, RATELIMIT_STORAGE_URI=redis_url)
    return create_app(config)


def test_readyz_is_503_naming_postgresql_when_it_is_unreachable(tmp_path):
    parts = urlsplit(POSTGRES_ADMIN_URL)
    proxy = FaultProxy(parts.hostname, parts.port or 5432)
    url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    app = _probe_app(tmp_path, url)
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        proxy.refuse()
        proxy.cut()
        down = client.get("/readyz")
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert down.json["down"] == ["database"] and down.json["checks"]["database"].startswith("unreachable")
        assert client.get("/healthz").status_code == 200  # the process itself is fine
        proxy.heal()
        assert client.get("/readyz").status_code == 200
    finally:
        with app.app_context():
            db.engine.dispose()
        proxy.close()


def test_readyz_is_503_when_the_sqlite_file_cannot_be_opened(tmp_path):
    app = _probe_app(tmp_path, f"sqlite:///{tmp_path / 'missing-dir' / 'pagegrid.db'}")
    down = app.test_client().get("/readyz")
    assert down.status_code == 503 and down.json["down"] == ["database"]


def test_readyz_is_503_naming_redis_when_it_is_unreachable(tmp_path, database_url):
    proxy = FaultProxy("127.0.0.1", 6379)
    app = _probe_app(tmp_path, database_url, f"redis://127.0.0.1:{proxy.port}/0")
    try:
        client = app.test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["checks"] == {"database": "ok", "redis": "ok"}
        proxy.refuse()
        proxy.cut()
        down = client.get("/readyz")
        assert down.status_code == 503 and down.json["down"] == ["redis"]
        assert "redis" in down.get_data(as_text=True)
    finally:
        with app.app_context():
            db.engine.dispose()
        proxy.close()


def test_metrics_need_a_token_from_beyond_loopback(app, client):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    assert client.get("/metrics", environ_base=remote).status_code == 403  # no token configured
    # a proxy on this host relaying someone else is not loopback
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 403
    app.config["PAGEGRID_METRICS_TOKEN"] = TOKEN
    assert client.get("/metrics", environ_base=remote).status_code == 401
    assert client.get("/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = client.get("/metrics", environ_base=remote, headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200 and scraped.mimetype == "text/plain"
    assert "pagegrid_open_holds 0.0" in scraped.get_data(as_text=True)


def _samples(text: str, name: str) -> list[tuple[str, float]]:
    return [(m.group(1) or "", float(m.group(2)))
            for m in re.finditer(rf"^{name}(?:\{{(.*)\}})? (\S+)$", text, re.MULTILINE)]


@pytest.mark.live
def test_metrics_add_up_every_gunicorn_worker(database_url, fake_server, fake_upstream, wallets, app,
                                              tmp_path):
    users = [wallets.user("20") for _ in range(3)]
    keys = [wallets.key(user) for user in users]
    fake_upstream.default = _answer
    env = {"PAGEGRID_WORKERS": "2", "PAGEGRID_REDIS_URL": REDIS_URL, "PAGEGRID_LOG_FORMAT": "json",
           "PAGEGRID_RATELIMIT_PREFIX": f"pagegrid-test-{secrets.token_hex(4)}",
           "PAGEGRID_JOURNAL_DIR": str(tmp_path / "journal")}
    sent = 60
    with start_gunicorn(database_url, fake_server, tmp_path, env) as url:
        def call(i: int) -> int:
            stream = i % 3 == 0
            return requests.post(f"{url}/v1/messages", json={**BODY, "stream": stream}, timeout=20,
                                 headers={"x-api-key": keys[i % 3]}).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(call, range(sent)))
        refused = requests.post(f"{url}/v1/messages", json=BODY, headers={"x-api-key": "pg-" + "0" * 64},
                                timeout=20).status_code
        for user in users:
            wallets.wait_settled(user)
        # a request is counted once its response is closed, a moment after the client has it
        deadline = time.monotonic() + 10
        while True:
            scraped = requests.get(f"{url}/metrics", timeout=20)
            counted = sum(v for k, v in _samples(scraped.text, "pagegrid_requests_total")
                          if 'route="messages"' in k)
            if counted >= sent + 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        log_text = Path(tmp_path).joinpath(next(p.name for p in tmp_path.glob("gunicorn-*.log"))).read_text()
    assert codes == [200] * sent and refused == 401
    assert scraped.status_code == 200
    text = scraped.text
    served = {labels: value for labels, value in _samples(text, "pagegrid_requests_total")}
    assert sum(v for k, v in served.items() if 'route="messages"' in k and 'status="200"' in k) == sent
    assert sum(v for k, v in served.items() if 'status="401"' in k) == 1
    durations = _samples(text, "pagegrid_request_duration_seconds_count")
    assert sum(v for k, v in durations if 'route="messages"' in k) == sent + 1
    assert sum(v for _, v in _samples(text, "pagegrid_time_to_first_token_seconds_count")) == sent // 3
    with app.app_context():
        charged = -db.session.scalar(select(func.sum(LedgerEntry.amount_nanos))
                                     .where(LedgerEntry.kind == "usage"))
    assert sum(v for _, v in _samples(text, "pagegrid_charged_nanos_total")) == charged
    pids = {labels for labels, _ in _samples(text, "pagegrid_process_resident_memory_bytes")}
    assert len(pids) == 2, pids  # both workers' memory, each under its pid
    assert "pagegrid_open_holds 0.0" in text

    # one JSON line per API request, and never a secret
    lines = [line for line in log_text.splitlines() if line.startswith("{")]
    request_lines = [line for line in map(_json, lines) if line.get("logger") == "pagegrid.requests"]
    assert len([line for line in request_lines if line["route"] == "messages"]) == sent + 1
    first = next(line for line in request_lines if line["route"] == "messages" and line["status"] == 200)
    for field in ("request_id", "user_id", "key_id", "model", "account", "status", "error_type",
                  "latency_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_nanos"):
        assert field in first
    assert first["cost_nanos"] > 0 and first["model"] == "claude-haiku-4-5-20251001"
    streamed = [line for line in request_lines if line["route"] == "messages" and line["stream"]]
    assert len(streamed) == sent // 3
    assert all(line["outcome"] == "complete" and line["ttft_ms"] is not None and line["output_tokens"] == 3
               for line in streamed)
    for secret in [*keys, "sk-ant-fake-upstream-key"]:
        assert secret not in log_text and secret[-20:] not in log_text


def _answer(req):  # noqa: ANN001, ANN202 - the fake provider's handler
    if b'"stream": true' in req.get_data() or b'"stream":true' in req.get_data():
        return sse_response(stream_events(message("a b c", model="claude-haiku-4-5-20251001",
                                                  input_tokens=9, output_tokens=3)), 0.01)
    return json_response(message(model="claude-haiku-4-5-20251001", input_tokens=9, output_tokens=3))


def _json(line: str) -> dict:
    import json

    try:
        return json.loads(line)
    except ValueError:
        return {}
