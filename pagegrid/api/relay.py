"""The request pipeline: body, model, admission, upstream call, relay and settlement.

Everything that can fail runs before the first byte goes out, so failures are plain JSON
errors. Once a stream has started, settlement lives in the generator's ``finally``, which
runs on a clean end, on an upstream failure and when the client disconnects.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Protocol

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request
from gevent import Timeout
from gevent import monkey
from sqlalchemy import select

from pagegrid import billing
from pagegrid import bounds
from pagegrid import limits
from pagegrid.catalog import TOOL_FEES
from pagegrid.catalog import ModelEntry
from pagegrid.catalog import catalog
from pagegrid.errors import GatewayError
from pagegrid.errors import InvalidRequest
from pagegrid.errors import ModelNotFound
from pagegrid.errors import PermissionDenied
from pagegrid.errors import UpstreamError
from pagegrid.errors import UpstreamOverloaded
from pagegrid.errors import UpstreamTimeout
from pagegrid.extensions import db
from pagegrid.keys import KeyContext
from pagegrid.keys import authenticate
from pagegrid.models import Upstream
from pagegrid.models import utcnow
from pagegrid.settlement import settlements
from pagegrid.sse import SSEDecoder
from pagegrid.sse import SSEEvent
from pagegrid.translate.usage import Usage
from pagegrid.upstream import get_adapter
from pagegrid.upstream.base import UpstreamReply
from pagegrid.upstream.base import UpstreamTarget

log = logging.getLogger(__name__)

ROUTES_SECONDS = 2.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Admitted:
    """A request that holds money and must be settled or released exactly once (plain values)."""

    request_id: str
    user_id: int
    key_id: int
    model: ModelEntry
    started_at: datetime
    hold_nanos: int
    # Server tools billed per request rather than reported (web search on Chat Completions).
    fixed_tools: dict[str, int]


def begin(scope: str = "model-calls") -> tuple[KeyContext, dict, bytes]:
    """The first steps of every model call, in this order: read the whole body (size-checked,
    within a deadline, before any database work), authenticate the key, count the request
    against its rate (``scope``), and parse the body as a JSON object."""
    raw = read_body()
    key = authenticate(request.headers)
    g.api_key = key  # for the request log (requestlog.py)
    limits.check_rate(key, scope)
    return key, parse_json(raw), raw


def read_body() -> bytes:
    """The request body, or 408 if the client takes longer than PAGEGRID_BODY_TIMEOUT to send it.

    A slow upload holds nothing but its own greenlet: no database connection is taken before
    the body is here (and Werkzeug refuses bodies above MAX_CONTENT_LENGTH with 413).
    """
    seconds = current_app.config["PAGEGRID_BODY_TIMEOUT"]
    if not monkey.is_module_patched("socket"):  # no gevent (tests, the dev server): no deadline
        return request.get_data(cache=False)
    try:
        with Timeout(seconds):
            return request.get_data(cache=False)
    except Timeout:
        # The rest of the body is still on its way: close the connection rather than drain it.
        raise GatewayError(f"The request body did not arrive within {seconds:g} seconds.", status=408,
                           error_type="invalid_request_error", headers={"connection": "close"}) from None


# A JSON escape of a UTF-16 surrogate: only a body with one can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes) -> dict:
    """The body as a JSON object; 400 for anything else (bad syntax, invalid UTF-8, lone
    surrogates, nesting too deep to parse)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.") from None
    except ValueError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise InvalidRequest("The request body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff).")
    return body


def _has_lone_surrogate(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def require(body: dict, field: str, kind: type, *, positive: bool = False) -> None:
    """Raise InvalidRequest unless ``body[field]`` is present and of ``kind``."""
    value = body.get(field)
    if value is None:
        raise InvalidRequest(f"{field}: Field required", param=field)
    if not isinstance(value, kind) or isinstance(value, bool) or (positive and value < 1):
        article = "a positive integer" if positive else f"a {kind.__name__}"
        raise InvalidRequest(f"{field}: must be {article}", param=field)


def resolve_model(name: str, key: KeyContext) -> ModelEntry:
    """The catalog entry a request names, or 404 (unknown/inactive) / 403 (not for this key)."""
    entry = catalog().resolve(name)
    provider, _, bare = name.partition("/")
    if entry is None and bare:  # LiteLLM-style "anthropic/claude-sonnet-4-6"
        entry = catalog().resolve(bare)
        if entry is not None and entry.provider != provider:
            entry = None
    if entry is None:
        raise ModelNotFound(f"model: {name} is not available. GET /v1/models lists the active models.",
                       param="model")
    g.model = entry.id  # for the request log and the metrics (requestlog.py)
    if key.allowed_models and not ({entry.id, *entry.aliases} & set(key.allowed_models)):
        raise PermissionDenied(f"This API key may not use the model {name}.", param="model")
    return entry


def upstream_target(provider: str) -> UpstreamTarget:
    """Where ``provider`` requests go: an enabled upstream account, the env key, or the demo."""
    cache = current_app.extensions["pagegrid.routes"]
    cached = cache.get(provider)
    if cached and time.monotonic() - cached[0] < ROUTES_SECONDS:
        return cached[1]
    row = db.session.scalars(
        select(Upstream).where(Upstream.provider == provider, Upstream.enabled.is_(True))
        .order_by(Upstream.id).limit(1)).first()
    config = current_app.config
    if row is not None:
        target = UpstreamTarget(provider, row.base_url.rstrip("/"), row.api_key, row.name)
    elif config.get(f"PAGEGRID_{provider.upper()}_KEY"):
        target = UpstreamTarget(provider, config[f"PAGEGRID_{provider.upper()}_URL"],
                                config[f"PAGEGRID_{provider.upper()}_KEY"], "environment")
    else:
        target = UpstreamTarget("demo", "", None, "demo")
    cache[provider] = (time.monotonic(), target)
    return target


def admit(key: KeyContext, model: ModelEntry, request_id: str, bound: bounds.Bound,
          fixed_tools: dict[str, int]) -> Admitted:
    """Hold the request's worst-case cost (402), take a concurrency slot and count it against
    the key's quotas (429), in one transaction; the hold's lease is renewed until it settles."""
    hold = bound.nanos(model)
    started = utcnow()
    config = current_app.config
    try:
        billing.reserve(key.user_id, request_id, hold, api_key_id=key.key_id,
                        concurrency=key.concurrency, lease_seconds=config["PAGEGRID_HOLD_LEASE_SECONDS"],
                        overdraft=config["PAGEGRID_OVERDRAFT"])
        limits.admit_request(key, started)
    except GatewayError:
        db.session.rollback()
        raise
    db.session.commit()
    settlements(current_app).admitted(request_id)
    return Admitted(request_id, key.user_id, key.key_id, model, started, hold, fixed_tools)


def release(app: Flask, admitted: Admitted) -> None:
    """Give a hold back without charging: the request failed before the upstream answered.

    Never raises: if the database is unreachable the hold's lease runs out and it is swept.
    """
    try:
        with app.app_context():
            billing.release(admitted.request_id, admitted.user_id)
    except Exception:
        log.exception("could not release the hold of %s; it lapses with its lease", admitted.request_id)
    settlements(app).finished(admitted.request_id)


def stream_flag(body: dict) -> bool:
    """The body's ``stream`` flag (400 unless it is a boolean)."""
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    return stream


def dumps(value: dict) -> bytes:
    """Compact JSON bytes, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def estimated_tokens(raw: bytes) -> int:
    """A rough input size for a stream cut before the provider reported its usage."""
    return len(raw) // 4


def upstream_body(body: dict, raw: bytes, model: ModelEntry) -> bytes:
    """The body for the provider: the client's bytes, with the model id rewritten if needed."""
    body, same = passthrough(body, raw, model)
    return same if same is not None else dumps(body)


def send(target: UpstreamTarget, path: str, payload: bytes) -> UpstreamReply:
    """Call a provider without streaming, and fail with the mapped error unless it answers 200."""
    reply = get_adapter(target, current_app.config).send(path, payload, request.headers, False)
    if reply.status != 200:
        raise upstream_status_error(reply)
    return reply


def upstream_status_error(reply: UpstreamReply) -> GatewayError:
    """Map a provider's non-200 answer to the error our client sees."""
    status = reply.status
    detail = (reply.json() or {}).get("error") or {}
    message = detail.get("message") if isinstance(detail, dict) else None
    kind = detail.get("type") if isinstance(detail, dict) else None
    if status in (401, 403):
        log.error("the upstream provider refused PageGrid's credentials (HTTP %s)", status)
        return UpstreamError("The upstream provider refused the gateway's credentials. "
                             "This is not your key's fault; please tell the operator.")
    if status == 429:
        retry = reply.headers.get("retry-after")
        return GatewayError(message or "The upstream provider is rate limiting; retry shortly.",
                            status=429, error_type="rate_limit_error",
                            headers={"retry-after": retry} if retry else None)
    if status in (503, 529):
        return UpstreamOverloaded(message or "The upstream provider is overloaded.", status=status)
    if status == 504:
        return UpstreamTimeout(message or "The upstream provider timed out.")
    if 400 <= status < 500:
        return GatewayError(message or f"The upstream provider refused the request (HTTP {status}).",
                            status=status, error_type=kind or "invalid_request_error")
    return UpstreamError(f"The upstream provider failed (HTTP {status}).")


def settle(app: Flask, admitted: Admitted, usage: Usage, status: str) -> None:
    """Charge exactly once, now or (database trouble) from the journal; never raises."""
    for tool, uses in admitted.fixed_tools.items():
        usage.server_tools[tool] = max(usage.server_tools.get(tool, 0), uses)
    model = admitted.model
    settlements(app).settle(billing.Charge(
        request_id=admitted.request_id, user_id=admitted.user_id, api_key_id=admitted.key_id,
        model=model.id, usage=usage, price=model.price, status=status, started_at=admitted.started_at,
        hold_nanos=admitted.hold_nanos, tool_prices=dict(TOOL_FEES.get(model.provider, {}))))


class Meter(Protocol):
    """Follows a provider's stream and knows what to charge (see translate/usage.py)."""

    finished: bool
    errored: bool

    def feed(self, data: dict) -> None: ...

    def billable(self) -> Usage: ...


class StreamPlan(Protocol):
    """Turns the provider's events into the client's (see api/streams.py)."""

    def event(self, event: SSEEvent, data: dict | None) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, err: GatewayError) -> bytes: ...


@dataclass
class Exchange:
    """How one request travels: what goes to the provider and how its answer comes back.

    ``body`` is the provider-dialect body; ``raw`` its bytes when they are the client's own
    (passthrough with nothing changed), so they are forwarded untouched.
    """

    target: UpstreamTarget
    path: str
    body: dict
    raw: bytes | None
    stream: bool
    meter: Callable[[], Meter]
    plan: Callable[[], StreamPlan]
    convert: Callable[[bytes], tuple[bytes, Usage]]


def passthrough(body: dict, raw: bytes, model: ModelEntry) -> tuple[dict, bytes | None]:
    """The client's body for the provider: its own bytes unless the model id must be rewritten."""
    if body["model"] == model.upstream_id:
        return body, raw
    return {**body, "model": model.upstream_id}, None


def run(key: KeyContext, model: ModelEntry, request_id: str, body_bytes: int,
        exchange: Exchange) -> Response:
    """Admit, call the provider, answer (streaming or not), and make sure it is settled once."""
    payload = exchange.raw if exchange.raw is not None else dumps(exchange.body)
    bound = bounds.BY_PATH[exchange.path](exchange.body, max(body_bytes, len(payload)), model)
    if bound.patched:  # a server tool limit was set: send the body as changed
        payload = dumps(exchange.body)
    fixed = bound.tool_uses if exchange.path == "/v1/chat/completions" else {}
    admitted = admit(key, model, request_id, bound, fixed)
    app = current_app._get_current_object()
    handed_off = False
    try:
        adapter = get_adapter(exchange.target, current_app.config)
        reply = adapter.send(exchange.path, payload, request.headers, exchange.stream)
        if reply.status != 200:
            raise upstream_status_error(reply)
        if exchange.stream:
            events = relay_stream(app, admitted, reply, exchange.meter(), exchange.plan())
            response = Response(events, mimetype="text/event-stream", headers=SSE_HEADERS)
            # A client gone before the first byte closes a generator that never started, so its
            # ``finally`` never runs: give the hold back here (a no-op once the stream settled).
            response.call_on_close(partial(_release_unstarted, app, admitted, reply))
            handed_off = True
            return response
        try:
            payload, usage = exchange.convert(reply.read())
        except (ValueError, TypeError, AttributeError, KeyError):
            raise UpstreamError("The upstream provider answered with a malformed body.") from None
        response = Response(payload, mimetype="application/json")
        # Charged once the answer is on its way: the client does not wait for the ledger write.
        response.call_on_close(partial(settle, app, admitted, usage, "complete"))
        handed_off = True
        return response
    finally:
        if not handed_off:
            release(app, admitted)


def _release_unstarted(app: Flask, admitted: Admitted, reply: UpstreamReply) -> None:
    reply.close()
    release(app, admitted)


def relay_stream(app: Flask, admitted: Admitted, reply: UpstreamReply, meter: Meter,
                 plan: StreamPlan) -> Iterator[bytes]:
    """Relay the provider's stream as it arrives, metering usage, and settle at the end."""
    decoder = SSEDecoder()
    broken = False
    service = settlements(app)
    try:
        for chunk in reply.chunks():
            out = b"".join(_step(event, meter, plan) for event in decoder.feed(chunk))
            if out:
                yield out
            if service.draining and not meter.finished:
                raise UpstreamOverloaded("The gateway is restarting and ended this stream; "
                                         "retry the request.")
        out = b"".join(_step(event, meter, plan) for event in decoder.flush())
        if not (meter.finished or meter.errored):
            raise UpstreamError("The upstream provider ended the stream before it was complete.")
        yield out + plan.end()
    except UpstreamError as err:
        broken = True
        log.warning("upstream stream failed for %s: %s", admitted.request_id, err.message)
        yield plan.error(err)
    finally:
        reply.close()
        if meter.finished:
            status = "complete"
        elif meter.errored or broken:
            status = "upstream_error"
        else:
            status = "client_aborted"
        settle(app, admitted, meter.billable(), status)


def _step(event: SSEEvent, meter: Meter, plan: StreamPlan) -> bytes:
    data = event.json()
    if data is not None:
        meter.feed(data)
    return plan.event(event, data)
