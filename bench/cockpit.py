"""What do the metrics and the request log cost per request, and does a worker's memory grow?

* micro (in-process, CPU time over ``--ops`` repetitions, SQLite in WAL mode as ``make run``):
  the metric updates of one request (``request_done`` + ``charged``) in prometheus_client's
  multiprocess mode (mmap'd files, as under gunicorn); the request log row as a charged request
  writes it (one more INSERT inside the settlement's open transaction); and as a refused request
  writes it (its own INSERT and commit);
* memory: ``--requests`` requests (two thirds plain, one in six streamed, one in six refused) sent
  by 8 client threads to one gunicorn gevent worker (``bench/overhead.py``'s setup); the worker's
  resident memory read from ``/metrics`` every tenth of the way.

Run: ``.venv/bin/python bench/cockpit.py [--ops N] [--requests N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import overhead as ob  # bench/overhead.py: bench/ is sys.path[0] when run as a script

ROOT = Path(__file__).resolve().parent.parent
BODY = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def micro(ops: int) -> dict:
    """CPU microseconds per operation of the cockpit's per-request work."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pagegrid-bench-metrics-")
    sys.path.insert(0, str(ROOT))
    from datetime import UTC
    from datetime import datetime

    from sqlalchemy import text

    from pagegrid import create_app
    from pagegrid import metrics
    from pagegrid import requestlog
    from pagegrid.billing import Charge
    from pagegrid.billing import Price
    from pagegrid.extensions import db
    from pagegrid.translate.usage import Usage

    folder = Path(tempfile.mkdtemp(prefix="pagegrid-bench-"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'bench.db'}",
                      "PAGEGRID_JOURNAL_DIR": str(folder / "journal"), "TESTING": True})
    assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    charge = Charge(request_id="req_bench", user_id=1, api_key_id=1, model="claude-haiku-4-5-20251001",
                    usage=Usage(input_tokens=120, output_tokens=40),
                    price=Price(1000, 5000, 1250, 2000, 100),
                    status="complete", started_at=datetime.now(UTC))
    facts = requestlog.Facts(request_id="req_bench", started=time.perf_counter(),
                             created_at=datetime.now(UTC), method="POST", route="messages",
                             client_ip="127.0.0.1", status=200,
                             user_id=1, api_key_id=1, model=charge.model, latency=0.1)
    row = requestlog._row(facts)
    results = {}

    def per_op(step, n: int = ops) -> float:
        start = time.process_time()
        for _ in range(n):
            step()
        return round((time.process_time() - start) / n * 1e6, 2)

    results["metrics_us"] = per_op(lambda: (metrics.request_done("messages", charge.model, 200, 0.2, 0.05),
                                            metrics.charged(charge, 160_000, False)))
    with app.app_context():
        engine = db.engine

        def in_transaction() -> None:  # the settlement path: a ledger-like write, + the log row
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET balance_nanos = balance_nanos WHERE id = 0"))

        def in_transaction_with_row() -> None:
            with engine.begin() as conn:
                conn.execute(text("UPDATE users SET balance_nanos = balance_nanos WHERE id = 0"))
                conn.execute(requestlog._INSERT, row)

        def own_commit() -> None:  # the refused path
            with engine.begin() as conn:
                conn.execute(requestlog._INSERT, row)

        rounds = max(200, ops // 10)
        base = per_op(in_transaction, rounds)
        results["row_in_settlement_us"] = round(per_op(in_transaction_with_row, rounds) - base, 2)
        results["row_own_commit_us"] = per_op(own_commit, rounds)
        results["rows_written"] = 2 * rounds
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR")  # the gateway of the memory run makes its own
    return results


def memory(requests: int) -> dict:
    """The worker's resident memory over ``requests`` requests."""
    fake = ob.fu.FakeUpstream()
    fake.default = ob.answer
    upstream = ob.fu.serve(fake)
    samples: list[tuple[int, int]] = []
    try:
        with ob.running_gateway(fake.url) as (url, key):
            done = 0
            lock = threading.Lock()

            def rss() -> int:
                text = httpx.get(f"{url}/metrics", timeout=10).text
                line = next(x for x in text.splitlines()
                            if x.startswith("pagegrid_process_resident_memory_bytes{"))
                return int(float(line.rsplit(" ", 1)[1]))

            def worker(start: int) -> None:
                nonlocal done
                with httpx.Client(timeout=30) as client:
                    for i in range(start, requests, 8):
                        kind = i % 6
                        headers = {"x-api-key": key if kind != 5 else "pg-" + "0" * 64}
                        body = {**BODY, "stream": kind == 4}
                        client.post(f"{url}/v1/messages", json=body, headers=headers).read()
                        with lock:
                            done += 1

            samples.append((0, rss()))
            with ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(worker, s) for s in range(8)]
                step = max(1, requests // 10)
                mark = step
                while not all(f.done() for f in futures):
                    time.sleep(0.5)
                    if done >= mark:
                        samples.append((done, rss()))
                        mark += step
                for f in futures:
                    f.result()
            samples.append((done, rss()))
    finally:
        upstream.shutdown()
    return {"requests": requests, "rss_mib": [(n, round(b / 2**20, 1)) for n, b in samples]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=20_000, help="repetitions of each micro step")
    parser.add_argument("--requests", type=int, default=0, help="requests for the memory run (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"micro": micro(args.ops)}
    if args.requests:
        results["memory"] = memory(args.requests)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
