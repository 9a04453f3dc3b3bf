"""The request path of every model call, top to bottom.

``handle(endpoint)`` runs the same seven steps, in this order, for every endpoint; what differs
per endpoint is its body validator (body.py) and its row of the dialect table (dialects.py):

1. ``authenticate``   the body read whole (408/413) before any database work; the key (401),
                      its connection returned at once; its rate (429); the body parsed and
                      validated once (400)
2. ``resolve_model``  catalog entry by id, alias or provider-prefixed id (404; 403 off the key's list)
3. ``route``          the upstream accounts to try, in order (pool.py); the demo without accounts
4. ``build_request``  the provider's body from the dialect table: passthrough or translated
5. ``admit``          a hold bounding what the provider can bill for *that* body, times the user's
                      price group multiplier (402), the key's concurrency, budget and quotas (429),
                      in one transaction — after building, because
                      the bound is the built request's
6. ``relay``          the accounts tried until one answers before the first byte; the answer
                      streamed or converted
7. ``settle``         the charge, exactly once: at the stream's end or after the reply is sent;
                      a hold whose request failed before an answer is released instead

Everything up to the first byte raises a GatewayError, rendered in the endpoint's dialect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from functools import partial
from itertools import chain

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request

from pagegrid import billing
from pagegrid import bounds
from pagegrid import limits
from pagegrid import metrics
from pagegrid import pool
from pagegrid import responses_store
from pagegrid.api import body as bodies
from pagegrid.api.dialects import DIALECTS
from pagegrid.api.dialects import Adaptor
from pagegrid.api.dialects import Call
from pagegrid.api.dialects import Meter
from pagegrid.api.dialects import StreamPlan
from pagegrid.api.dialects import dumps
from pagegrid.api.dialects import new_call
from pagegrid.api.dialects import passthrough
from pagegrid.catalog import TOOL_FEES
from pagegrid.catalog import ModelEntry
from pagegrid.catalog import catalog
from pagegrid.errors import GatewayError
from pagegrid.errors import InvalidRequest
from pagegrid.errors import ModelNotFound
from pagegrid.errors import NoUpstream
from pagegrid.errors import PermissionDenied
from pagegrid.errors import UpstreamError
from pagegrid.errors import UpstreamOverloaded
from pagegrid.errors import UpstreamTimeout
from pagegrid.extensions import db
from pagegrid.keys import KeyContext
from pagegrid.keys import authenticate as authenticate_key
from pagegrid.models import utcnow
from pagegrid.money import format_usd
from pagegrid.pool import Account
from pagegrid.pricegroups import LIST_PRICES
from pagegrid.pricegroups import Multiplier
from pagegrid.settlement import settlements
from pagegrid.sse import SSEDecoder
from pagegrid.sse import SSEEvent
from pagegrid.translate.usage import Usage
from pagegrid.upstream import get_adapter
from pagegrid.upstream.base import UpstreamReply
from pagegrid.upstream.errors import error_type
from pagegrid.upstream.errors import status_error
from pagegrid.upstream.errors import stream_start_error

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# On every charged non-streaming answer: the charge in USD with all 9 decimals (``0.000812500``).
COST_HEADER = "pagegrid-cost-usd"


@dataclass(frozen=True)
class Endpoint:
    """A model-calling route: its client dialect, body validator and rate budget."""

    dialect: str  # messages | chat | responses
    validate: bodies.Validator
    scope: str = "model-calls"


MESSAGES = Endpoint("messages", bodies.messages_body)
CHAT = Endpoint("chat", bodies.chat_body)
RESPONSES = Endpoint("responses", bodies.responses_body)
COUNT_TOKENS = Endpoint("messages", bodies.count_tokens_body, scope="count-tokens")


@dataclass(frozen=True)
class Inbound:
    """A request that passed step 1: its key and its validated body."""

    key: KeyContext
    body: dict
    raw: bytes
    stream: bool


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
    # The upstream account that answered, and how many accounts were tried for it.
    account: Account | None = None
    attempts: int = 0
    # The user's price group at admission: the hold used it, the charge uses it.
    multiplier: Multiplier = LIST_PRICES


@dataclass(frozen=True)
class Outbound:
    """Step 4's result: what goes to the provider, and how its answer comes back."""

    adaptor: Adaptor
    call: Call
    body: dict
    payload: bytes
    bound: bounds.Bound


def handle(endpoint: Endpoint) -> Response:
    """One model call, the seven steps in order."""
    inbound = authenticate(endpoint)
    model = resolve_model(inbound.body["model"], inbound.key)
    accounts = route(model, inbound.key, inbound.body)
    outbound = build_request(endpoint, inbound, model, accounts)
    admitted = admit(inbound.key, outbound)
    return relay(admitted, outbound, accounts)


# 1 -----------------------------------------------------------------------------------------------
def authenticate(endpoint: Endpoint) -> Inbound:
    """Read the whole body (size-checked, within a deadline, before any database work), find
    the key, count the request against its rate, and parse and validate the body once."""
    raw = bodies.read_body()
    key = authenticate_key(request.headers)
    # The lookup's connection goes back to the pool now, not at admission: the steps between
    # wait on the rate limit store and on the CPU, which thousands of streams share.
    db.session.rollback()
    g.api_key = key  # for the request log (requestlog.py)
    limits.check_rate(key, endpoint.scope)
    body = bodies.parse_json(raw)
    endpoint.validate(body)
    return Inbound(key, body, raw, bodies.stream_flag(body))


# 2 -----------------------------------------------------------------------------------------------
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



# 3 -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """The accounts to try for one request, in order, and the conversation it belongs to."""

    accounts: tuple[Account, ...]
    conversation: str | None
    sticky: str | None  # the account the conversation was stuck to, if any

    @property
    def dialect(self) -> str:
        """The dialect the accounts answer in: the demo imitates Anthropic for every model."""
        return "openai" if self.accounts[0].provider == "openai" else "anthropic"


def route(model: ModelEntry, key: KeyContext, body: dict) -> Route:
    """Where the request may go (see pool.py), or 503 if no account can take it."""
    accounts, conversation, sticky = pool.pool().plan(
        model.provider, (model.id, model.upstream_id, *model.aliases),
        lambda: pool.conversation_id(key.key_id, body, request.headers))
    if not accounts:
        raise NoUpstream(f"No upstream account can serve {model.id} right now; retry shortly.",
                         headers={"retry-after": "30"})
    return Route(tuple(accounts), conversation, sticky)



# 4 -----------------------------------------------------------------------------------------------
def build_request(endpoint: Endpoint, inbound: Inbound, model: ModelEntry, accounts: Route) -> Outbound:
    """The provider's body for this (client dialect, provider dialect) pair, and the bound of
    what the provider can bill for it (which may cap server tool uses in the body).

    A Responses request on a Claude model first has its stored conversation resolved
    (``previous_response_id``, ``item_reference``: responses_store.py), so the provider's body
    and the bound cover the whole conversation."""
    adaptor = DIALECTS[(endpoint.dialect, accounts.dialect)]
    keep = None
    if endpoint.dialect == "responses":
        key = inbound.key
        turn = responses_store.resolve(inbound.body, inbound.raw, key.user_id, accounts.dialect)
        inbound = replace(inbound, body=turn.body, raw=turn.raw)
        keep = responses_store.keeper(current_app._get_current_object(),  # type: ignore[attr-defined]
                                      key.user_id, key.key_id, model.id, accounts.dialect, turn)
    call = new_call(endpoint.dialect, inbound.body, inbound.raw, model, inbound.stream, g.request_id, keep)
    body, same = adaptor.request(call)
    payload = same if same is not None else dumps(body)
    bound = bounds.BY_PATH[adaptor.path](body, max(len(inbound.raw), len(payload)), model)
    if bound.patched:  # a server tool limit was set: send the body as changed
        payload = dumps(body)
    return Outbound(adaptor, call, body, payload, bound)


# 5 -----------------------------------------------------------------------------------------------
def admit(key: KeyContext, outbound: Outbound) -> Admitted:
    """Hold the worst case of what the provider can bill for the built request, times the
    user's price group multiplier (402), take a concurrency slot and count it against the key's
    budget and quotas (429), in one transaction; the hold's lease is renewed until it settles."""
    call, bound = outbound.call, outbound.bound
    # The charge is the list cost times the multiplier rounded up, and the list cost never
    # exceeds the bound's: so this stays an upper bound of the charge.
    hold = key.multiplier.apply(bound.nanos(call.model))
    started = utcnow()
    config = current_app.config
    try:
        billing.reserve(key.user_id, call.request_id, hold, api_key_id=key.key_id,
                        concurrency=key.concurrency, lease_seconds=config["PAGEGRID_HOLD_LEASE_SECONDS"],
                        overdraft=config["PAGEGRID_OVERDRAFT"])
        limits.admit_budget(key, started, hold, config["PAGEGRID_OVERDRAFT"])
        limits.admit_request(key, started)
    except GatewayError:
        db.session.rollback()
        raise
    db.session.commit()
    settlements(current_app).admitted(call.request_id)
    # Chat Completions bills web search per request rather than reporting its uses.
    fixed = bound.tool_uses if outbound.adaptor.path == "/v1/chat/completions" else {}
    return Admitted(call.request_id, key.user_id, key.key_id, call.model, started, hold, fixed,
                    multiplier=key.multiplier)


# 6 -----------------------------------------------------------------------------------------------
def relay(admitted: Admitted, outbound: Outbound, accounts: Route) -> Response:
    """Call the accounts until one answers, then answer the client (streaming or not) with
    settlement attached; a failure before that releases the hold and raises."""
    call, adaptor = outbound.call, outbound.adaptor
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy, typed as Flask
    handed_off = False
    try:
        account, reply, head, tried = call_upstream(accounts, adaptor.path, outbound.payload, call.stream,
                                                    admitted.request_id)
        admitted = replace(admitted, account=account, attempts=tried)
        if call.keep is not None:
            call.keep.upstream = account.name
        if call.stream:
            events = relay_stream(app, admitted, reply, head, adaptor.meter(call), adaptor.stream(call))
            response = Response(events, mimetype="text/event-stream", headers=SSE_HEADERS)
            # A client gone before the first byte closes a generator that never started, so its
            # ``finally`` never runs: give the hold back here (a no-op once the stream settled).
            response.call_on_close(partial(_release_unstarted, app, admitted, reply))
            handed_off = True
            return response
        try:
            payload, usage = adaptor.response(call, reply.read())
        except (ValueError, TypeError, AttributeError, KeyError):
            raise UpstreamError("The upstream provider answered with a malformed body.") from None
        charge = charge_for(admitted, usage, "complete")
        # The exact charge: the ledger row's amount is -charge.cost() whenever it is written
        # (now, or replayed from the journal), so the header is known before the write. It is
        # written once the answer is on its way: the client does not wait for the ledger.
        response = Response(payload, mimetype="application/json",
                            headers={COST_HEADER: format_usd(charge.cost(), exact=True, symbol=False,
                                                             grouping=False)})
        response.call_on_close(partial(settle, app, admitted, charge))
        handed_off = True
        return response
    finally:
        if not handed_off:
            release(app, admitted)


def call_upstream(route: Route, path: str, payload: bytes, stream: bool,
                  request_id: str | None = None) -> tuple[Account, UpstreamReply, list[bytes], int]:
    """Send to the route's accounts in turn until one answers; return it, its reply, the raw
    chunks already read (a stream's first event) and the number of accounts tried.

    A connect error, timeout, 5xx, 529, 429, 401/403 or a stream that begins with an error
    event moves on to the next account and cools or disables this one; the client's own
    mistakes (400, 404, 413, ...) are answered at once. ``request_id`` takes a concurrency slot
    on capped accounts (given back by ``release``/``settle``); without it none is taken.
    """
    service = pool.pool()
    config = current_app.config
    last: GatewayError | None = None
    tried = 0
    for account in route.accounts:
        if request_id is not None and not service.acquire(account, request_id):
            metrics.upstream_attempt(account.name, "at_cap")
            continue  # at its concurrency cap: not an attempt
        tried += 1
        g.upstream_account, g.upstream_attempts = account.name, tried  # for the request log
        failure: pool.Failure | None = None
        outcome = "ok"
        try:
            reply = get_adapter(account.target, config).send(path, payload, request.headers, stream)
            if reply.status != 200:
                outcome = str(reply.status)
                error = status_error(reply)
                failure = pool.failure_for_status(reply.status, reply.headers)
                if failure is None:  # the client's own mistake: no other account would differ
                    raise error
                raise _Retry(error)
            head: list[bytes] = []
            if stream:
                head, first = first_event(reply)
                if first is not None and (kind := error_type(first)) is not False:
                    outcome = "stream_error"
                    failure = pool.failure_for_stream_error(kind)
                    if failure is not None:
                        reply.close()
                        raise _Retry(stream_start_error(first))
        except _Retry as retry:
            last = retry.error
        except UpstreamError as err:  # could not connect, timed out, broke before the first event
            outcome = "timeout" if isinstance(err, UpstreamTimeout) else "unreachable"
            last = err
            failure = pool.Failure(err.message)
        except BaseException:
            metrics.upstream_attempt(account.name, outcome if outcome != "ok" else "error")
            if request_id is not None:
                service.release(account, request_id)
            raise
        else:
            metrics.upstream_attempt(account.name, outcome)
            service.succeeded(account)
            service.remember(route.conversation, account, route.sticky)
            return account, reply, head, tried
        metrics.upstream_attempt(account.name, outcome)
        if request_id is not None:
            service.release(account, request_id)
        assert failure is not None  # set on every path here: a _Retry carries one, an UpstreamError too
        service.failed(account, failure)
        log.warning("upstream account %s failed (attempt %d of %d): %s", account.name, tried,
                    len(route.accounts), failure.reason)
    if last is None:
        raise NoUpstream("Every upstream account for this model is at its concurrency limit; "
                         "retry shortly.", headers={"retry-after": "1"})
    raise last


class _Retry(Exception):
    def __init__(self, error: GatewayError) -> None:
        self.error = error


def first_event(reply: UpstreamReply) -> tuple[list[bytes], dict | None]:
    """Read a stream up to its first data event; return the raw chunks read and the event's
    data (None if the stream ended first). The chunks are relayed again from the start."""
    decoder = SSEDecoder()
    head: list[bytes] = []
    for chunk in reply.chunks():
        head.append(chunk)
        for event in decoder.feed(chunk):
            data = event.json()
            if data is not None:
                return head, data
    return head, None



# 7 -----------------------------------------------------------------------------------------------
def charge_for(admitted: Admitted, usage: Usage, status: str) -> billing.Charge:
    """What the request is charged for ``usage`` (plain values: it may wait in the journal)."""
    for tool, uses in admitted.fixed_tools.items():
        usage.server_tools[tool] = max(usage.server_tools.get(tool, 0), uses)
    model = admitted.model
    account = admitted.account
    return billing.Charge(
        request_id=admitted.request_id, user_id=admitted.user_id, api_key_id=admitted.key_id,
        model=model.id, usage=usage, price=model.price, status=status, started_at=admitted.started_at,
        hold_nanos=admitted.hold_nanos, tool_prices=dict(TOOL_FEES.get(model.provider, {})),
        upstream=account.name if account is not None else None, attempts=admitted.attempts,
        multiplier=admitted.multiplier)


def settle(app: Flask, admitted: Admitted, charge: billing.Charge) -> None:
    """Charge exactly once, now or (database trouble) from the journal; never raises."""
    _free_slot(app, admitted)
    settlements(app).settle(charge)


def release(app: Flask, admitted: Admitted) -> None:
    """Give a hold back without charging: the request failed before the upstream answered.

    Never raises: if the database is unreachable the hold's lease runs out and it is swept.
    """
    _free_slot(app, admitted)
    try:
        with app.app_context():
            billing.release(admitted.request_id, admitted.user_id)
    except Exception:
        log.exception("could not release the hold of %s; it lapses with its lease", admitted.request_id)
    settlements(app).finished(admitted.request_id)


def _free_slot(app: Flask, admitted: Admitted) -> None:
    if admitted.account is not None:
        pool.pool(app).release(admitted.account, admitted.request_id)


def _release_unstarted(app: Flask, admitted: Admitted, reply: UpstreamReply) -> None:
    reply.close()
    if settlements(app).in_flight(admitted.request_id):  # else the stream settled: no round trip
        release(app, admitted)


def relay_stream(app: Flask, admitted: Admitted, reply: UpstreamReply, head: list[bytes],
                 meter: Meter, plan: StreamPlan) -> Iterator[bytes]:
    """Relay the provider's stream as it arrives (``head``: the chunks already read to see its
    first event), metering usage, and settle at the end."""
    decoder = SSEDecoder()
    broken = False
    service = settlements(app)
    try:
        for chunk in chain(head, reply.chunks()):
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
        settle(app, admitted, charge_for(admitted, meter.billable(), status))


def _step(event: SSEEvent, meter: Meter, plan: StreamPlan) -> bytes:
    data = event.json()
    if data is not None:
        meter.feed(data)
    return plan.event(event, data)


def count_tokens() -> Response:
    """``POST /v1/messages/count_tokens``: the first three steps, then the provider's count;
    free, and outside the key's request budget."""
    inbound = authenticate(COUNT_TOKENS)
    model = resolve_model(inbound.body["model"], inbound.key)
    accounts = route(model, inbound.key, inbound.body)
    if accounts.dialect != "anthropic":
        raise InvalidRequest(f"Token counting is only available for Claude models, not {model.id}.",
                             param="model")
    call = new_call("messages", inbound.body, inbound.raw, model, False, g.request_id)
    body, same = passthrough(call)
    reply = call_upstream(accounts, "/v1/messages/count_tokens", same if same is not None else dumps(body),
                          False)[1]
    return Response(reply.read(), mimetype="application/json")
