"""What the upstream pool costs and saves.

1. **Failover latency**: the extra time to the first byte when the first account fails before
   answering and the second one answers. Two fake accounts on loopback: ``first`` (priority 2)
   fails in the way being measured, ``second`` (priority 1) answers at once. Before each sample
   the first account's cooldown is cleared (and the gateway re-reads the status, up to a second),
   so every sample pays one failed attempt. Baseline: the same request when ``first`` answers.
2. **Cache-read share, sticky vs random**: the captured Claude Code request replayed as a
   20-turn conversation over three equal accounts that each imitate the provider's per-account
   prompt cache (tests/test_pool.py ``CachingProvider``): through the gateway (sticky), and sent
   to a random account per turn (what routing without affinity gets), averaged over many runs.

The gateway runs as ``make run`` serves it (gunicorn, gevent, SQLite), set up with the CLI.
Run: ``.venv/bin/python bench/pool.py [--samples N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import httpx2 as httpx
from werkzeug.wrappers import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.overhead import DATABASES  # noqa: E402
from bench.overhead import answer  # noqa: E402
from bench.overhead import flask_cli  # noqa: E402
from bench.overhead import running_gateway  # noqa: E402
from tests import fake_upstream as fu  # noqa: E402
from tests.serving import free_port  # noqa: E402
from tests.test_pool import CachingProvider  # noqa: E402
from tests.test_pool import claude_code_turns  # noqa: E402

MODEL = "claude-haiku-4-5"
BODY = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}


def first_byte(client: httpx.Client, url: str, key: str, body: dict) -> float:
    start = time.perf_counter()
    with client.stream("POST", f"{url}/v1/messages", json=body,
                       headers={"x-api-key": key, "anthropic-version": "2023-06-01"}) as resp:
        elapsed = None
        for _ in resp.iter_raw():
            elapsed = elapsed or time.perf_counter() - start
        if resp.status_code != 200:
            raise RuntimeError(f"gateway answered {resp.status_code}")
    return elapsed or time.perf_counter() - start


def overloaded(req) -> Response:
    return Response(json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "x"}}),
                    status=529, mimetype="application/json")


def stream_error(req) -> Response:
    event = fu.sse({"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    return Response([event], mimetype="text/event-stream")


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEGRID_")}
    env.update({"PAGEGRID_DATABASE_URL": DATABASES[url], "PAGEGRID_SECRET_KEY": "bench"})
    return env


def clear_status(url: str) -> None:
    path = DATABASES[url].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM upstream_status")
    time.sleep(1.05)  # every worker re-reads the status within a second


def failover(samples: int) -> list[tuple[str, float, float]]:
    first, second = fu.FakeUpstream(), fu.FakeUpstream()
    servers = [fu.serve(first), fu.serve(second)]
    second.default = answer
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    rows = []
    try:
        with running_gateway(second.url) as (url, key), httpx.Client(timeout=30) as client:
            env = env_for(url)
            flask_cli(env, "add-upstream", "anthropic", first.url, "--key", "sk-1", "--name", "first",
                      "--priority", "2")
            flask_cli(env, "add-upstream", "anthropic", closed, "--key", "sk-0", "--name", "closed",
                      "--priority", "3")
            flask_cli(env, "set-upstream", "closed", "--disable")
            flask_cli(env, "add-upstream", "anthropic", second.url, "--key", "sk-2", "--name", "second",
                      "--priority", "1")
            time.sleep(2.1)  # the accounts reach the worker
            cases = [("none (baseline)", answer, False), ("HTTP 529", overloaded, False),
                     ("none (baseline), streaming", answer, True),
                     ("stream begins with an error event", stream_error, True),
                     ("connection refused", None, False)]
            for label, behaviour, stream in cases:
                if behaviour is None:  # the closed port goes first; "first" answers after it
                    flask_cli(env, "set-upstream", "closed", "--enable")
                    behaviour = answer
                first.default = behaviour
                times = []
                for i in range(samples + 3):
                    clear_status(url)
                    elapsed = first_byte(client, url, key, {**BODY, "stream": stream})
                    if i >= 3:  # warm-up
                        times.append(elapsed)
                rows.append((label, statistics.median(times) * 1000,
                             statistics.quantiles(times, n=10)[8] * 1000))
                first.requests.clear()
                second.requests.clear()
    finally:
        for server in servers:
            server.shutdown()
    return rows


def cache_share(samples: int) -> tuple[float, float]:
    fakes = [fu.FakeUpstream() for _ in range(3)]
    servers = [fu.serve(f) for f in fakes]
    headers, bodies = claude_code_turns(20)
    bodies = [{**b, "model": "claude-sonnet-4-6", "stream": False} for b in bodies]
    try:
        with running_gateway(fakes[0].url) as (url, key), httpx.Client(timeout=30) as client:
            env = env_for(url)
            for i, fake in enumerate(fakes):
                flask_cli(env, "add-upstream", "anthropic", fake.url, "--key", f"sk-{i}",
                          "--name", f"acct{i}")
            time.sleep(2.1)

            def share(send) -> float:  # noqa: ANN001
                reads = total = 0
                for body in bodies:
                    usage = send(body)["usage"]
                    reads += usage["cache_read_input_tokens"]
                    total += (usage["input_tokens"] + usage["cache_read_input_tokens"]
                              + usage["cache_creation_input_tokens"])
                return reads / total

            sticky, randomly = [], []
            for _ in range(samples):
                for fake in fakes:
                    fake.default = CachingProvider()  # a cold cache on every account
                session = json.dumps({"device_id": "d", "session_id": f"s-{random.random()}"})
                sticky.append(share(lambda b, session=session: client.post(
                    f"{url}/v1/messages", json={**b, "metadata": {"user_id": session}},
                    headers={**headers, "x-api-key": key}).json()))
                for fake in fakes:
                    fake.default = CachingProvider()
                randomly.append(share(lambda b: client.post(
                    f"{random.choice(fakes).url}/v1/messages", json=b).json()))
    finally:
        for server in servers:
            server.shutdown()
    return statistics.mean(sticky), statistics.mean(randomly)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    sticky, randomly = cache_share(max(5, args.samples // 3))
    print(f"cache-read share of a 20-turn Claude Code conversation over 3 accounts: "
          f"sticky {sticky:.1%}, random {randomly:.1%}")
    print("| first account fails with | first byte p50 ms | p90 ms |\n|---|---:|---:|")
    for label, p50, p90 in failover(args.samples):
        print(f"| {label} | {p50:.1f} | {p90:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
