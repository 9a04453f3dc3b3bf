"""The request log: one row, one metrics update and one log line for every ``/v1`` request.

How a request is followed, with no work of its own on the hot path but one INSERT:

1. ``before_request`` notes the start; the views leave the key (``g.api_key``), the catalog
   model (``g.model``), the error they raised (``g.gateway_error``) and, with the account pool,
   the upstream account (``g.upstream_account``, ``g.upstream_attempts``) on ``g``.
2. ``after_request`` gathers that into a :class:`Facts`, wraps a stream to time its first byte
   and registers ``_closed`` to run once the response is sent (after the relay's own
   ``call_on_close``, which settles non-streaming answers).
3. A request that is charged gets its row from :func:`settled`, in the settlement's own
   transaction (``billing.settle``), with its tokens and cost: no extra commit.
4. ``_closed`` writes the row of every other request (refused, released, free) in one Core
   INSERT, counts the request in the metrics and logs its line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import quote

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request
from sqlalchemy.engine import Engine

from pagegrid import logs
from pagegrid import metrics
from pagegrid.errors import DependencyDown
from pagegrid.errors import GatewayError
from pagegrid.errors import InsufficientBalance
from pagegrid.errors import RateLimited
from pagegrid.extensions import core
from pagegrid.extensions import db
from pagegrid.extensions import prune_before
from pagegrid.models import RequestLogEntry
from pagegrid.models import utcnow

if TYPE_CHECKING:  # plain values from billing, which imports this module
    from pagegrid.billing import Charge

log = logging.getLogger(__name__)

_TABLE = RequestLogEntry.__table__
_INSERT = _TABLE.insert()
PRUNE_BATCH = 10_000


@dataclass(slots=True)
class Facts:
    """What is known about one request, gathered as it goes (plain values only)."""

    request_id: str
    started: float  # perf_counter
    created_at: datetime
    method: str
    route: str
    client_ip: str | None
    path: str = ""  # as the client sent it (slashes folded), percent-encoded: for the log line
    status: int = 0
    stream: bool = False
    user_id: int | None = None
    api_key_id: int | None = None
    model: str | None = None
    error_type: str | None = None
    refusal: str | None = None
    upstream: str | None = None
    attempts: int = 0
    latency: float | None = None
    first_byte: float | None = None
    logged: bool = False  # its row went into a settlement's transaction
    outcome: str | None = None
    tokens: tuple[int, int, int, int] = (0, 0, 0, 0)
    cost_nanos: int = 0


# Requests answered and not yet settled or closed, by request id (emptied by ``_closed``).
OPEN: dict[str, Facts] = {}
# A response no server ever closes (a client library that drops it unread, an exception raised
# after this hook) would stay in OPEN: past this many entries, those older than STALE_SECONDS go.
OPEN_LIMIT = 10_000
# Set in the WSGI environ of a request that logs its own line (``logs.request_line``), which
# carries what gunicorn's access line would (method, path, status, latency, client address).
LOGGED = "pagegrid.request_logged"
STALE_SECONDS = 6 * 3600
# A path in the log line stays one key=value token: everything but these is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def init_app(app: Flask) -> None:
    """Follow every API request (after the ``api`` blueprint has stamped its request id)."""
    app.before_request(_start)
    app.after_request(_answered)


def _start() -> None:
    g.request_started = time.perf_counter()
    g.request_started_at = utcnow()


def _answered(response: Response) -> Response:
    request_id = g.get("request_id")
    if not request_id or "request_started" not in g:
        return response
    facts = _gather(request_id, response)
    request.environ[LOGGED] = True  # this line replaces gunicorn's access line (gunicorn.conf.py)
    if facts.stream:
        response.response = _timed(response.response, facts)
    else:
        facts.latency = time.perf_counter() - facts.started
    engine = None if isinstance(g.get("gateway_error"), DependencyDown) else db.engine
    if len(OPEN) >= OPEN_LIMIT:
        _forget_stale()
    OPEN[request_id] = facts
    response.call_on_close(partial(_closed, facts, engine))
    return response


def _gather(request_id: str, response: Response) -> Facts:
    endpoint = request.endpoint or ""
    facts = Facts(request_id=request_id, started=g.request_started, created_at=g.request_started_at,
                  method=request.method[:8], route=(endpoint.rpartition(".")[2] or "unknown")[:40],
                  path=quote(request.path, safe=_PATH_SAFE)[:200],
                  client_ip=(request.remote_addr or "")[:45] or None, status=response.status_code,
                  stream=response.is_streamed and response.mimetype == "text/event-stream",
                  model=g.get("model"), upstream=g.get("upstream_account"),
                  attempts=int(g.get("upstream_attempts") or 0))
    key = g.get("api_key")
    if key is not None:
        facts.user_id, facts.api_key_id = key.user_id, key.key_id
    err = g.get("gateway_error")
    if isinstance(err, GatewayError) and response.status_code >= 400:
        facts.error_type = err.anthropic_type[:40]
        if isinstance(err, RateLimited):
            facts.refusal = err.limit
        elif isinstance(err, InsufficientBalance):
            facts.refusal = "balance"
    return facts


def _forget_stale() -> None:
    oldest = time.perf_counter() - STALE_SECONDS
    for request_id in [rid for rid, facts in OPEN.items() if facts.started < oldest]:
        OPEN.pop(request_id, None)


def _timed(chunks, facts: Facts):  # noqa: ANN001, ANN202 - the response's iterable, a generator
    """Relay ``chunks``, noting when the first one went out; closing this closes them."""
    try:
        for chunk in chunks:
            if facts.first_byte is None:
                facts.first_byte = time.perf_counter() - facts.started
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def settled(charge: Charge, cost_nanos: int, now: datetime) -> None:
    """Add the row of a charged request to the settlement's transaction (the caller commits).

    A settlement replayed from the journal (another process, or after an outage) has no facts
    left: its row says what the charge knows.
    """
    facts = OPEN.pop(charge.request_id, None)
    usage = charge.usage
    tokens = (usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens,
              usage.cache_read_input_tokens)
    upstream = getattr(charge, "upstream", None)
    attempts = getattr(charge, "attempts", None)
    if facts is None:
        row = {"request_id": charge.request_id, "created_at": charge.started_at, "user_id": charge.user_id,
               "api_key_id": charge.api_key_id, "method": "POST", "route": "replayed",
               "model": charge.model, "stream": False, "status": 200, "upstream": upstream,
               "attempts": attempts or 0}
    else:
        if facts.latency is None:
            facts.latency = time.perf_counter() - facts.started
        facts.logged, facts.outcome, facts.tokens, facts.cost_nanos = True, charge.status, tokens, cost_nanos
        facts.upstream = upstream or facts.upstream
        facts.attempts = attempts or facts.attempts
        row = _row(facts)
        row.update(user_id=charge.user_id, api_key_id=charge.api_key_id, model=charge.model)
    row.update(outcome=charge.status, input_tokens=tokens[0], output_tokens=tokens[1],
               cache_creation_input_tokens=tokens[2], cache_read_input_tokens=tokens[3],
               cost_nanos=cost_nanos)
    core(_INSERT, row)


def _row(facts: Facts) -> dict:
    return {"request_id": facts.request_id, "created_at": facts.created_at, "user_id": facts.user_id,
            "api_key_id": facts.api_key_id, "method": facts.method, "route": facts.route,
            "model": facts.model, "stream": facts.stream, "status": facts.status,
            "error_type": facts.error_type, "outcome": facts.outcome, "latency_ms": _ms(facts.latency),
            "ttft_ms": _ms(facts.first_byte), "upstream": facts.upstream, "attempts": facts.attempts,
            "input_tokens": facts.tokens[0], "output_tokens": facts.tokens[1],
            "cache_creation_input_tokens": facts.tokens[2], "cache_read_input_tokens": facts.tokens[3],
            "cost_nanos": facts.cost_nanos, "client_ip": facts.client_ip}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _closed(facts: Facts, engine: Engine | None) -> None:
    """The response is sent (and settled, if it was charged): row, metrics, log line."""
    OPEN.pop(facts.request_id, None)
    if facts.latency is None:
        facts.latency = time.perf_counter() - facts.started
    if not facts.logged and engine is not None:  # no database work when the database is down
        try:
            with engine.begin() as conn:
                conn.execute(_INSERT, _row(facts))
        except Exception as exc:  # noqa: BLE001 - a log row never fails a request
            log.warning("request log row of %s not written: %s", facts.request_id, exc)
    if facts.refusal:
        metrics.refused(facts.refusal)
    metrics.request_done(facts.route, facts.model, facts.status, facts.latency, facts.first_byte)
    logs.request_line({
        "request_id": facts.request_id, "method": facts.method, "path": facts.path, "route": facts.route,
        "status": facts.status, "user_id": facts.user_id, "key_id": facts.api_key_id,
        "model": facts.model, "account": facts.upstream, "attempts": facts.attempts,
        "stream": facts.stream, "error_type": facts.error_type, "outcome": facts.outcome,
        "latency_ms": _ms(facts.latency), "ttft_ms": _ms(facts.first_byte),
        "input_tokens": facts.tokens[0], "output_tokens": facts.tokens[1],
        "cache_write_tokens": facts.tokens[2], "cache_read_tokens": facts.tokens[3],
        "cost_nanos": facts.cost_nanos, "client_ip": facts.client_ip})


def prune(days: int | None = None, *, now: datetime | None = None) -> int:
    """Delete request log rows older than ``days`` (PAGEGRID_REQUEST_LOG_DAYS); return how many.

    Deletes in batches so a large first prune never holds the write lock for long; the ledger
    is never touched.
    """
    days = days or current_app.config["PAGEGRID_REQUEST_LOG_DAYS"]
    return prune_before(_TABLE, (now or utcnow()) - timedelta(days=days), PRUNE_BATCH)
