"""A bounded chaos run: does money stay exact when clients, the upstream and the database misbehave?

Serves PageGrid with gunicorn (as `make run` does) in front of a fake upstream on loopback that
fails a third of its calls in every way (HTTP errors, 529, streams cut mid-answer, hangs past
the read timeout, malformed bodies). Client threads send streaming and plain requests from 20
users, and 20 % of them hang up mid-answer. On PostgreSQL the database connection goes through
the fault proxy (tests/faultproxy.py) and is cut for 5 s in the middle of the run. Then it waits
for every settlement and prints the invariant table: answered requests never charged, requests
charged twice, holds left open, the worst overdraft against its bound, 500s and 503s.

Run: ``.venv/bin/python bench/chaos.py [--requests 1200] [--clients 30] [--db sqlite|postgresql]
[--workers N] [--redis]``. PostgreSQL: a throw-away database on 127.0.0.1:5432 (user postgres).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import threading
import time
from pathlib import Path

import psycopg
import requests
import sqlalchemy as sa
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from overhead import DATABASES  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from overhead import flask_cli  # noqa: E402
from overhead import running_gateway  # noqa: E402

from tests import fake_upstream as fu  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402

MODEL = "claude-haiku-4-5"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def upstream(req: Request) -> Response:
    """Answers two calls in three; fails the third in one of five ways."""
    body = json.loads(req.get_data() or b"{}")
    stream = body.get("stream") is True
    msg = fu.message("chaos " * 30, model="claude-haiku-4-5-20251001", input_tokens=random.randint(5, 500),
                     output_tokens=random.randint(5, 60))
    roll = random.random()
    if roll < 0.07:
        return fu.json_response({"type": "error", "error": {"type": "api_error", "message": "boom"}}, 500)
    if roll < 0.14:
        return fu.json_response({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
                                529)
    if roll < 0.21 and stream:
        events = fu.stream_events(msg)

        def cut():
            for event in events[:4]:
                yield fu.sse(event)
                time.sleep(0.01)
            raise ConnectionError("cut")
        return Response(cut(), mimetype="text/event-stream")
    if roll < 0.27:
        time.sleep(3)  # past the gateway's read timeout
    if roll < 0.33 and not stream:
        return Response(b'{"type": "message", "usage": ', mimetype="application/json")
    if stream:
        return fu.sse_response(fu.stream_events(msg), delay=0.01)
    time.sleep(0.05)
    return fu.json_response(msg)


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        self.answered: set[str] = set()  # 200 and read to the end by the client

    def add(self, status: int, request_id: str | None, complete: bool) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200 and complete and request_id:
                self.answered.add(request_id)


def client(url: str, keys: list[str], count: int, tally: Tally) -> None:
    for _ in range(count):
        stream = random.random() < 0.5
        body = {"model": MODEL, "max_tokens": 200, "stream": stream,
                "messages": [{"role": "user", "content": "chaos " * random.randint(1, 50)}]}
        hang_up = random.random() < 0.2
        try:
            timeout = (5, 1 if hang_up else 30)
            with requests.post(f"{url}/v1/messages", json=body, stream=True, timeout=timeout,
                               headers={"x-api-key": random.choice(keys)}) as reply:
                rid = reply.headers.get("request-id")
                if hang_up:
                    next(reply.iter_content(64), None)
                    tally.add(reply.status_code, rid, False)
                    continue
                data = reply.content
                complete = (b"message_stop" in data) if stream else reply.status_code == 200
                tally.add(reply.status_code, rid, complete)
        except requests.RequestException:
            tally.add(0, None, False)


def invariants(database_url: str, tally: Tally) -> dict:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        charged = conn.execute(sa.text("SELECT request_id, count(*) FROM ledger WHERE kind = 'usage' "
                                       "GROUP BY request_id")).all()
        holds = conn.execute(sa.text("SELECT count(*) FROM holds")).scalar()
        over_hold = conn.execute(sa.text("SELECT count(*) FROM ledger WHERE over_hold")).scalar()
        wallets = conn.execute(sa.text(
            "SELECT u.id, u.balance_nanos, COALESCE(SUM(l.amount_nanos), 0), "
            "COALESCE(MAX(l.hold_nanos), 0) FROM users u LEFT JOIN ledger l ON l.user_id = u.id "
            "GROUP BY u.id, u.balance_nanos")).all()
    engine.dispose()
    ids = {request_id for request_id, _ in charged}
    worst = min((balance / max(bound, 1) for _, balance, _, bound in wallets if balance < 0), default=0.0)
    return {
        "answered": len(tally.answered),
        "lost (answered, not charged)": len(tally.answered - ids),
        "duplicated charges": sum(n - 1 for _, n in charged if n > 1),
        "open holds": holds,
        "charges above their hold": over_hold,
        "balance != sum(ledger)": sum(1 for _, balance, total, _ in wallets if balance != total),
        "worst overdraft / its bound (< 1 is within)": round(-worst, 3),
        "500s": tally.statuses.get(500, 0),
        "503s": tally.statuses.get(503, 0),
        "statuses": dict(sorted(tally.statuses.items())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--redis", action="store_true", help="share the limits in Redis (127.0.0.1:6379)")
    args = parser.parse_args()

    fake = fu.FakeUpstream()
    fake.default = upstream
    server = fu.serve(fake)
    extra = {"PAGEGRID_UPSTREAM_READ_TIMEOUT": "2", "PAGEGRID_HOLD_LEASE_SECONDS": "6",
             "PAGEGRID_WORKERS": str(args.workers)}
    if args.redis:
        extra.update(PAGEGRID_REDIS_URL="redis://127.0.0.1:6379/0",
                     PAGEGRID_RATELIMIT_PREFIX=f"chaos-{secrets.token_hex(4)}")
    proxy = database = direct_url = None
    if args.db == "postgresql":
        database = f"pagegrid_chaos_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        direct_url = f"postgresql://postgres@127.0.0.1:5432/{database}"
        proxy = FaultProxy("127.0.0.1", 5432)
        extra["PAGEGRID_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
    tally = Tally()
    try:
        with running_gateway(fake.url, extra) as (url, _):
            env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEGRID_")}
            env["PAGEGRID_DATABASE_URL"] = direct_url or DATABASES[url]
            keys = []
            for i in range(20):
                email = f"chaos{i}@example.com"
                flask_cli(env, "create-user", email, "--password", "tangerine-orbit-91-vault")
                flask_cli(env, "credit", email, "5")
                keys.append(flask_cli(env, "create-key", email, "--rpm", "100000",
                                      "--concurrency", "1000").split()[-1])
            per_client = max(1, args.requests // args.clients)
            threads = [threading.Thread(target=client, args=(url, keys, per_client, tally))
                       for _ in range(args.clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            if proxy is not None:
                time.sleep(8)
                print("cutting the database for 5 s", file=sys.stderr)
                proxy.refuse()
                proxy.cut()
                time.sleep(5)
                proxy.heal()
            for thread in threads:
                thread.join()
            print(f"{per_client * args.clients} requests in {time.monotonic() - started:.0f} s; "
                  "waiting for settlements", file=sys.stderr)
            time.sleep(10)  # retries, leases (6 s) and sweeps
            flask_cli(env, "release-holds")
            result = invariants(env["PAGEGRID_DATABASE_URL"], tally)
    finally:
        server.shutdown()
        if proxy is not None:
            proxy.close()
        if database is not None:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    setup = f"{args.db}, {args.workers} worker(s){', Redis' if args.redis else ''}"
    print(f"| chaos run ({setup}) | |\n|---|---:|")
    for name, value in result.items():
        print(f"| {name} | {value} |")
    broken = [result[name] for name in ("lost (answered, not charged)", "duplicated charges", "open holds",
                                        "500s", "balance != sum(ledger)")]
    return 1 if any(broken) else 0


if __name__ == "__main__":
    raise SystemExit(main())
