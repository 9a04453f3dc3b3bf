"""Prometheus metrics: what every worker counts, and the text ``GET /metrics`` serves.

Under gunicorn, ``gunicorn.conf.py`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers start, so each worker's counters live in small mmap'd files there and a
scrape of any worker adds up all of them (``prometheus_client`` multiprocess mode). Without it
(the dev server, the tests) the counters are this process's own.

An increment is a few hundred nanoseconds; nothing here touches the database on the request
path. The open holds are read from the database at scrape time, since they are the truth
across every worker and instance.
"""

from __future__ import annotations

import resource
import time
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func
from sqlalchemy import select

from pagegrid.extensions import db
from pagegrid.models import Hold

if TYPE_CHECKING:  # the settlement's plain values; billing imports this module
    from pagegrid.billing import Charge

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: from a few ms (refusals) to the longest streams (PAGEGRID_UPSTREAM_READ_TIMEOUT).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)
MEMORY_EVERY_SECONDS = 5.0

REQUESTS = Counter("pagegrid_requests", "API requests by route, catalog model and HTTP status.",
                   ["route", "model", "status"])
LATENCY = Histogram("pagegrid_request_duration_seconds",
                    "API request duration, to the end of the stream for streams.", ["route"],
                    buckets=LATENCY_BUCKETS)
TTFT = Histogram("pagegrid_time_to_first_token_seconds",
                 "Streams: time from the request to the first byte of the answer.", ["route"],
                 buckets=TTFT_BUCKETS)
TOKENS = Counter("pagegrid_tokens", "Tokens charged, by model and kind.", ["model", "kind"])
CHARGED = Counter("pagegrid_charged_nanos", "Nano-USD charged for requests, by model.", ["model"])
UPSTREAM_ATTEMPTS = Counter("pagegrid_upstream_attempts",
                            "Calls to an upstream account, by account and outcome.",
                            ["account", "outcome"])
REFUSALS = Counter("pagegrid_limit_refusals",
                   "Requests refused by a limit: rpm, count_tokens, concurrency, daily_requests, "
                   "monthly_tokens, budget, balance.", ["kind"])
JOURNALED = Counter("pagegrid_settlements_journaled",
                    "Settlements that could not be written at once and went to the journal.")
RETRIED = Counter("pagegrid_settlements_retried", "Journaled settlements retried, by outcome.",
                  ["outcome"])
OVER_HOLD = Counter("pagegrid_charges_over_hold", "Charges above their hold (each is logged too).")
MEMORY = Gauge("pagegrid_process_resident_memory_bytes", "Resident memory of each worker.",
               multiprocess_mode="liveall")

_memory_sampled_at = float("-inf")


def request_done(route: str, model: str | None, status: int, seconds: float | None,
                 first_byte_seconds: float | None) -> None:
    """Count one finished API request."""
    REQUESTS.labels(route, model or "", str(status)).inc()
    if seconds is not None:
        LATENCY.labels(route).observe(seconds)
    if first_byte_seconds is not None:
        TTFT.labels(route).observe(first_byte_seconds)
    sample_memory()


def charged(charge: Charge, cost_nanos: int, over_hold: bool) -> None:
    """Count a settled charge's tokens and money."""
    usage = charge.usage
    for kind, tokens in (("input", usage.input_tokens), ("output", usage.output_tokens),
                         ("cache_write", usage.cache_creation_input_tokens),
                         ("cache_read", usage.cache_read_input_tokens)):
        if tokens:
            TOKENS.labels(charge.model, kind).inc(tokens)
    CHARGED.labels(charge.model).inc(cost_nanos)
    if over_hold:
        OVER_HOLD.inc()


def upstream_attempt(account: str, outcome: str) -> None:
    """Count one call to an upstream account (``outcome``: ok, 429, 5xx, timeout, ...)."""
    UPSTREAM_ATTEMPTS.labels(account, outcome).inc()


def refused(kind: str) -> None:
    """Count a request refused by a limit."""
    REFUSALS.labels(kind).inc()


def journaled() -> None:
    """Count a settlement that went to the journal."""
    JOURNALED.inc()


def retried(ok: bool) -> None:
    """Count a retried settlement."""
    RETRIED.labels("ok" if ok else "failed").inc()


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc``; elsewhere its peak)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sample_memory(force: bool = False) -> None:
    """Refresh the memory gauge, at most every few seconds (one small read of ``/proc``)."""
    global _memory_sampled_at
    now = time.monotonic()
    if force or now - _memory_sampled_at >= MEMORY_EVERY_SECONDS:
        _memory_sampled_at = now
        MEMORY.set(resident_bytes())


class _HoldsCollector:
    """The open holds, read from the database at scrape time (exact across every instance)."""

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        count, nanos = db.session.execute(
            select(func.count(), func.coalesce(func.sum(Hold.amount_nanos), 0))).one()
        db.session.rollback()
        yield GaugeMetricFamily("pagegrid_open_holds", "Requests holding money right now.", value=count)
        yield GaugeMetricFamily("pagegrid_open_holds_nanos", "Nano-USD held by open requests.",
                                value=int(nanos))


def render(multiprocess_dir: str | None) -> bytes:
    """The whole exposition: every worker's metrics (or this process's) and the open holds."""
    sample_memory(force=True)
    if multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    else:
        registry = REGISTRY
    holds = CollectorRegistry()
    holds.register(_HoldsCollector())
    return generate_latest(registry) + generate_latest(holds)
