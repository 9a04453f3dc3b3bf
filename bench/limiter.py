"""What does the per-key rate limiter cost per request, in process memory and in Redis?

* micro: one limiter check as Flask-Limiter does it for the shared ``model-calls`` limit
  (``limits`` moving window, ``hit()`` to count plus ``get_window_stats()`` for the rate headers),
  repeated ``--checks`` times on a fresh random key, for ``memory://`` and for Redis; p50/p99 in us;
* end to end: the gateway benchmark of ``bench/overhead.py`` (one gunicorn worker, fake upstream),
  run once with memory storage and once with ``PAGEGRID_REDIS_URL`` and a random
  ``PAGEGRID_RATELIMIT_PREFIX``; the non-streaming p50 overhead of each and their difference.
Needs Redis at ``--redis-url``; the Redis keys created are deleted at the end.

Run: ``.venv/bin/python bench/limiter.py [--requests N] [--checks N] [--redis-url URL] [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import statistics
import sys
import time

import httpx2 as httpx
import overhead as ob  # bench/overhead.py: bench/ is sys.path[0] when run as a script
import redis
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

LIMIT = "10000 per 60 second"  # well above --checks, so every hit is admitted


def micro(storage_uri: str, checks: int, warmup: int = 100) -> dict[str, float]:
    """p50/p99 microseconds of hit() + get_window_stats() on one fresh key (prefix, key, scope)."""
    item, prefix = parse(LIMIT), f"bench-{secrets.token_hex(4)}"
    storage = storage_from_string(storage_uri)
    limiter, ids = MovingWindowRateLimiter(storage), (prefix, "key1", "model-calls")
    samples: list[float] = []
    try:
        for i in range(warmup + checks):
            start = time.perf_counter_ns()
            admitted = limiter.hit(item, *ids)
            limiter.get_window_stats(item, *ids)
            if i >= warmup:
                samples.append((time.perf_counter_ns() - start) / 1000)
            if not admitted:
                raise ob.BenchError(f"{storage_uri}: hit {i + 1} was refused under {LIMIT}")
    finally:
        storage.clear(item.key_for(*ids))
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_us": round(q[49], 1), "p99_us": round(q[98], 1)}


def gateway(fake: ob.fu.FakeUpstream, n: int, warmup: int, extra: dict[str, str]) -> float:
    """overhead.py's gateway with ``extra`` settings and one worker: non-streaming p50 overhead, ms."""
    with ob.running_gateway(fake.url, {"PAGEGRID_WORKERS": "1", **extra}) as (url, key):
        return ob.measure(fake.url, url, key, n, warmup)["non_streaming"]["overhead_p50"]


def drop_keys(url: str, prefix: str) -> int:
    """Delete the Redis keys under a Flask-Limiter key prefix; return how many there were."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"*LIMITER/{prefix}/*"))
        return client.delete(*keys) if keys else 0


def report(r: dict) -> str:
    m, e = r["micro"], r["end_to_end"]
    rows = [("limiter check p50 (hit + window stats)", "us", m["memory"]["p50_us"], m["redis"]["p50_us"]),
            ("limiter check p99 (hit + window stats)", "us", m["memory"]["p99_us"], m["redis"]["p99_us"]),
            ("gateway overhead p50, non-streaming", "ms", e["memory_ms"], e["redis_ms"])]
    out = ["| measurement | unit | memory | redis | redis - memory |", "|---|---|---:|---:|---:|"]
    out += [f"| {name} | {unit} | {a:.1f} | {b:.1f} | {b - a:+.1f} |" for name, unit, a, b in rows]
    extra_us = m["redis"]["p50_us"] - m["memory"]["p50_us"]
    out.append(f"\nRedis adds {extra_us:+.0f} us per limiter check at p50 ({m['checks']} checks each); "
               f"gateway non-streaming p50 overhead {e['memory_ms']:.1f} ms with memory, "
               f"{e['redis_ms']:.1f} ms with Redis ({e['difference_ms']:+.1f} ms; "
               f"{e['requests']} requests each, one worker).")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="end-to-end measured requests per target")
    parser.add_argument("--warmup", type=int, default=50, help="end-to-end warm-up requests per target")
    parser.add_argument("--checks", type=int, default=2000, help="micro: limiter checks per storage")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if args.requests < 2 or args.checks < 2 or args.warmup < 0:
        parser.error("need --requests >= 2, --checks >= 2 and --warmup >= 0")

    fake = ob.fu.FakeUpstream()
    fake.default = ob.answer
    upstream = ob.fu.serve(fake)
    prefix = f"bench-{secrets.token_hex(4)}"
    try:
        print(f"micro: {args.checks} limiter checks per storage", file=sys.stderr)
        results: dict = {"micro": {"checks": args.checks, "limit": LIMIT,
                                   "memory": micro("memory://", args.checks),
                                   "redis": micro(args.redis_url, args.checks)}}
        memory_ms = gateway(fake, args.requests, args.warmup, {})
        redis_ms = gateway(fake, args.requests, args.warmup,
                           {"PAGEGRID_REDIS_URL": args.redis_url, "PAGEGRID_RATELIMIT_PREFIX": prefix})
        if not drop_keys(args.redis_url, prefix):
            raise ob.BenchError(f"the Redis run left no {prefix} keys in Redis: was Redis really used?")
        results["end_to_end"] = {"requests": args.requests, "warmup": args.warmup, "memory_ms": memory_ms,
                                 "redis_ms": redis_ms, "difference_ms": round(redis_ms - memory_ms, 3)}
        print(json.dumps(results, indent=2) if args.json else report(results))
        return 0
    except (ob.BenchError, httpx.HTTPError, redis.RedisError, ValueError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(redis.RedisError):
            drop_keys(args.redis_url, prefix)
        upstream.shutdown()


if __name__ == "__main__":
    sys.exit(main())
