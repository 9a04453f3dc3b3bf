"""Upstream accounts as a pool: which accounts serve a model, in what order, and their health.

- **Accounts** are the enabled rows of ``upstreams`` plus, per provider, the implicit account of
  ``PAGEGRID_<PROVIDER>_URL/KEY`` (named ``env-<provider>``, priority -1: tried after the rows).
  A provider with no account at all is served by the demo.
- **Order**: the healthy accounts that serve the model, highest priority first, by weight within
  a priority (a weighted shuffle); a sticky conversation's account goes first while it is
  healthy. Cooling accounts come last (soonest back first), so a request is still tried when
  every account is cooling; disabled accounts and accounts at their concurrency cap never.
- **Health**: a failure before the first byte cools the account (429: the provider's
  ``retry-after`` or 30 s; 5xx, 529, timeouts and connect errors: 5 s doubling on repeats, up
  to 5 minutes) or disables it (401/403: the credentials were rejected, until the operator
  enables it). The status lives in Redis when configured, else in ``upstream_status``; every
  process re-reads it at least once a second, so one worker's discovery protects the others.
- **Stickiness**: a conversation (what the client sends to identify it, else a hash of the key,
  the system prompt and the first message) maps to the account that last served it, for an
  hour after its last request (Redis, else this process: without Redis there is one worker).

Everything here is advisory: if Redis or the status table cannot be read, routing goes on
without stickiness or shared status rather than failing the request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from email.utils import parsedate_to_datetime

import redis
from flask import Flask
from flask import current_app
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from werkzeug.datastructures import Headers

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.models import Upstream
from pagegrid.models import UpstreamStatus
from pagegrid.upstream.base import UpstreamTarget

log = logging.getLogger(__name__)

PROVIDERS = ("anthropic", "openai")
ACCOUNTS_SECONDS = 2.0  # admin edits reach every worker within this
STATUS_SECONDS = 1.0  # another worker's discovery reaches this one within this
ENV_PRIORITY = -1
RATE_LIMIT_COOLDOWN = 30.0
COOLDOWN_FIRST = 5.0
COOLDOWN_MAX = 300.0
STRIKES_FORGOTTEN_AFTER = 600.0  # a failure this long after the last one starts over
AFFINITY_SECONDS = 3600
AFFINITY_LOCAL_MAX = 100_000
# A slot held longer than this (a worker died mid-request) is given back by itself.
SLOT_SECONDS = 900


@dataclass(frozen=True)
class Account:
    """One upstream account as the request path sees it (plain values)."""

    name: str
    provider: str
    base_url: str
    api_key: str | None
    priority: int = 0
    weight: int = 1
    models: frozenset[str] = frozenset()
    max_concurrency: int | None = None
    row_id: int | None = None  # None: the implicit environment account (or the demo)

    @property
    def target(self) -> UpstreamTarget:
        return UpstreamTarget(self.provider, self.base_url, self.api_key, self.name)

    def serves(self, model_ids: Iterable[str]) -> bool:
        """Whether this account may serve a model known by any of ``model_ids``."""
        return not self.models or not self.models.isdisjoint(model_ids)


DEMO = Account("demo", "demo", "", None)


@dataclass
class Status:
    """An account's health: ``cooling`` until ``until`` (epoch seconds) or ``disabled``."""

    state: str
    until: float
    reason: str
    since: float
    strikes: int = 0

    def usable(self, now: float) -> bool:
        return self.state != "disabled" and self.until <= now

    def to_json(self) -> str:
        return json.dumps({"state": self.state, "until": self.until, "reason": self.reason,
                           "since": self.since, "strikes": self.strikes})

    @classmethod
    def from_json(cls, text: str | bytes) -> Status:
        return cls(**json.loads(text))


@dataclass
class Failure:
    """What one failed attempt says about its account."""

    reason: str
    cooldown: float | None = None  # seconds; None: grow with repeats
    disable: bool = False


# -- accounts ---------------------------------------------------------------------------------

def env_account(config: Mapping, provider: str) -> Account | None:
    """The implicit account of PAGEGRID_<PROVIDER>_URL/KEY, if its key is set."""
    key = config.get(f"PAGEGRID_{provider.upper()}_KEY")
    if not key:
        return None
    return Account(f"env-{provider}", provider, config[f"PAGEGRID_{provider.upper()}_URL"].rstrip("/"),
                   key, priority=ENV_PRIORITY)


def load_accounts() -> list[Account]:
    """Every enabled account of every provider, from the database and the environment."""
    rows = db.session.scalars(select(Upstream).where(Upstream.enabled.is_(True))
                              .order_by(Upstream.priority.desc(), Upstream.id)).all()
    accounts = [Account(row.name, row.provider, row.base_url.rstrip("/"), row.api_key, row.priority,
                        max(row.weight, 0), frozenset(row.models or ()), row.max_concurrency, row.id)
                for row in rows]
    accounts += [account for provider in PROVIDERS
                 if (account := env_account(current_app.config, provider)) is not None]
    return accounts


class Pool:
    """The per-process view of the accounts, their status, affinities and slots."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.attempts = max(1, int(app.config["PAGEGRID_UPSTREAM_ATTEMPTS"]))
        url = app.config.get("PAGEGRID_REDIS_URL")
        self.redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0) \
            if url else None
        self._accounts: tuple[float, list[Account]] | None = None
        self._status: dict[str, Status] = {}
        self._status_read = 0.0
        self._affinity: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._slots: dict[str, set[str]] = {}  # account -> request ids holding a slot
        self._lock = threading.Lock()
        self._acquire_script = self.redis.register_script(_ACQUIRE_LUA) if self.redis else None
        self.prefix = app.config["PAGEGRID_REDIS_PREFIX"]
        self._status_key = self.prefix + "upstream-status"

    # accounts ---------------------------------------------------------------------------
    def accounts(self) -> list[Account]:
        """All enabled accounts (re-read from the database at most every ACCOUNTS_SECONDS)."""
        cached = self._accounts
        if cached is None or time.monotonic() - cached[0] >= ACCOUNTS_SECONDS:
            cached = (time.monotonic(), load_accounts())
            self._accounts = cached
        return cached[1]

    def forget(self) -> None:
        """Drop the cached accounts and status (after an admin or CLI change)."""
        self._accounts = None
        self._status_read = 0.0

    def has_accounts(self, provider: str) -> bool:
        """Whether ``provider`` has a real account (else the demo answers)."""
        return any(account.provider == provider for account in self.accounts())

    # status -----------------------------------------------------------------------------
    def statuses(self) -> dict[str, Status]:
        """Every account's recorded status (shared store, re-read at most once a second)."""
        if time.monotonic() - self._status_read >= STATUS_SECONDS:
            try:
                self._status = self._read_statuses()
            except Exception:  # advisory: keep what we knew
                log.warning("could not read the upstream status; using this process's view",
                            exc_info=True)
                if self.redis is None:
                    with contextlib.suppress(Exception):  # the request's session stays usable
                        db.session.rollback()
            self._status_read = time.monotonic()
        return self._status

    def _read_statuses(self) -> dict[str, Status]:
        if self.redis is not None:
            return {_text(name): Status.from_json(value)
                    for name, value in self.redis.hgetall(self._status_key).items()}
        # On the request's own session: a second connection per request would let a burst hold
        # every pooled connection while each waits for one more.
        rows = db.session.execute(select(UpstreamStatus)).all()
        return {row.name: Status(row.state, _epoch(row.until), row.reason, _epoch(row.since), row.strikes)
                for row in rows}

    def _write_status(self, name: str, status: Status | None) -> None:
        if status is None:
            self._status.pop(name, None)
        else:
            self._status[name] = status
        try:
            if self.redis is not None:
                if status is None:
                    self.redis.hdel(self._status_key, name)
                else:
                    self.redis.hset(self._status_key, name, status.to_json())
                return
            db.session.execute(delete(UpstreamStatus).where(UpstreamStatus.name == name))
            if status is not None:
                db.session.execute(insert(UpstreamStatus).values(
                    name=name, state=status.state, until=_datetime(status.until),
                    reason=status.reason, since=_datetime(status.since), strikes=status.strikes))
            db.session.commit()  # the request's admission is committed already
        except Exception:
            db.session.rollback()
            log.warning("could not share the status of upstream %s", name, exc_info=True)

    def failed(self, account: Account, failure: Failure) -> None:
        """Cool or disable ``account`` after a failure before the first byte."""
        if account is DEMO:
            return
        now = clock.now().timestamp()
        if failure.disable:
            log.error("upstream account %s disabled: %s", account.name, failure.reason)
            self.disable(account.name, failure.reason)
            return
        previous = self.statuses().get(account.name)
        strikes = 1
        if previous is not None and now - previous.since < STRIKES_FORGOTTEN_AFTER:
            strikes = previous.strikes + 1
        seconds = failure.cooldown
        if seconds is None:
            seconds = min(COOLDOWN_FIRST * 2 ** (strikes - 1), COOLDOWN_MAX)
        log.warning("upstream account %s cooling for %.0fs: %s", account.name, seconds, failure.reason)
        self._write_status(account.name, Status("cooling", now + seconds, failure.reason, now, strikes))

    def succeeded(self, account: Account) -> None:
        """An answer came: forget the account's strikes (a write only if it had any)."""
        status = self._status.get(account.name)
        if status is not None and status.state == "cooling":
            self._write_status(account.name, None)

    def disable(self, name: str, reason: str) -> None:
        """Stop using the account until the operator enables it (persisted for database rows)."""
        now = clock.now()
        self._write_status(name, Status("disabled", 0.0, reason, now.timestamp()))
        try:
            db.session.execute(update(Upstream).where(Upstream.name == name)
                               .values(enabled=False, disabled_reason=reason, disabled_at=now))
            db.session.commit()
        except Exception:  # the shared status still holds it back; the row follows on enable
            db.session.rollback()
            log.exception("could not record the disablement of upstream %s", name)
        self._accounts = None

    def enable(self, name: str) -> None:
        """Use the account again and forget its status (the database row is the caller's)."""
        self._write_status(name, None)
        self.forget()

    def describe(self, name: str, enabled: bool = True, disabled_reason: str | None = None) -> str:
        """``healthy``, ``cooling until T: reason`` or ``disabled: reason`` for an account."""
        if not enabled:
            return f"disabled: {disabled_reason}" if disabled_reason else "disabled"
        status = self.statuses().get(name)
        now = clock.now().timestamp()
        if status is None or (status.state == "cooling" and status.until <= now):
            return "healthy"
        if status.state == "disabled":
            return f"disabled: {status.reason}"
        until = datetime.fromtimestamp(status.until, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"cooling until {until}: {status.reason}"

    # routing ----------------------------------------------------------------------------
    def plan(self, provider: str, model_ids: Iterable[str],
             conversation: Callable[[], str | None]) -> tuple[list[Account], str | None, str | None]:
        """The accounts to try for one request, in order (at most PAGEGRID_UPSTREAM_ATTEMPTS),
        the request's conversation and the account it was stuck to. ``conversation`` is only
        called when there is a choice to make (more than one healthy account)."""
        ids = set(model_ids)
        candidates = [a for a in self.accounts() if a.provider == provider and a.serves(ids)]
        if not candidates:
            return ([] if self.has_accounts(provider) else [DEMO]), None, None
        statuses = self.statuses()
        now = clock.now().timestamp()
        healthy: list[Account] = []
        cooling: list[tuple[float, Account]] = []
        for account in candidates:
            status = statuses.get(account.name)
            if status is None or status.usable(now):
                healthy.append(account)
            elif status.state == "cooling":
                cooling.append((status.until, account))
        ordered = _weighted_order(healthy)
        conversation_id = conversation() if len(ordered) > 1 else None
        sticky = self.affinity(conversation_id) if conversation_id else None
        if sticky is not None:
            # Stickiness chooses within the top priority only: it never overrides the operator.
            for index, account in enumerate(ordered):
                if account.priority < ordered[0].priority:
                    break
                if account.name == sticky:
                    ordered.insert(0, ordered.pop(index))
                    break
        ordered += [account for _, account in sorted(cooling, key=lambda item: item[0])]
        return ordered[:self.attempts], conversation_id, sticky

    # stickiness -------------------------------------------------------------------------
    def affinity(self, conversation: str) -> str | None:
        """The account that last served ``conversation`` within the hour, if any."""
        try:
            if self.redis is not None:
                value = self.redis.getex(self.prefix + "affinity:" + conversation, ex=AFFINITY_SECONDS)
                return _text(value) if value else None
        except redis.RedisError:
            log.warning("could not read a conversation's upstream affinity", exc_info=True)
            return None
        with self._lock:
            entry = self._affinity.get(conversation)
            if entry is None or entry[1] < time.monotonic():
                return None
            return entry[0]

    def remember(self, conversation: str | None, account: Account, previous: str | None) -> None:
        """``account`` served ``conversation``: stick to it for an hour."""
        if not conversation or account is DEMO:
            return
        if self.redis is not None:
            if previous == account.name:
                return  # the read already renewed it
            try:
                self.redis.set(self.prefix + "affinity:" + conversation, account.name, ex=AFFINITY_SECONDS)
            except redis.RedisError:
                log.warning("could not store a conversation's upstream affinity", exc_info=True)
            return
        with self._lock:
            self._affinity[conversation] = (account.name, time.monotonic() + AFFINITY_SECONDS)
            self._affinity.move_to_end(conversation)
            while len(self._affinity) > AFFINITY_LOCAL_MAX:
                self._affinity.popitem(last=False)

    # concurrency ------------------------------------------------------------------------
    def acquire(self, account: Account, request_id: str) -> bool:
        """Take one of the account's concurrency slots (always True without a cap)."""
        cap = account.max_concurrency
        if not cap:
            return True
        if self._acquire_script is not None:
            try:
                now = clock.now().timestamp()
                return bool(self._acquire_script(keys=[self.prefix + "upstream-slots:" + account.name],
                                                 args=[now, now + SLOT_SECONDS, cap, request_id]))
            except redis.RedisError:
                log.warning("could not count the slots of upstream %s", account.name, exc_info=True)
        with self._lock:
            held = self._slots.setdefault(account.name, set())
            if len(held) >= cap:
                return False
            held.add(request_id)
            return True

    def release(self, account: Account, request_id: str) -> None:
        """Give back a slot taken with ``acquire`` (safe to call for uncapped accounts)."""
        if not account.max_concurrency:
            return
        if self._acquire_script is not None and self.redis is not None:
            try:
                self.redis.zrem(self.prefix + "upstream-slots:" + account.name, request_id)
                return
            except redis.RedisError:
                log.warning("could not free a slot of upstream %s", account.name, exc_info=True)
        with self._lock:
            self._slots.get(account.name, set()).discard(request_id)


# Drop expired slots, then take one if fewer than the cap are held.
_ACQUIRE_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


def pool(app: Flask | None = None) -> Pool:
    """This app's pool."""
    return (app or current_app).extensions["pagegrid.pool"]


def upstream_label(provider: str) -> str:
    """Who answers ``provider``'s models: the provider, or ``demo`` when it has no account."""
    return provider if pool().has_accounts(provider) else "demo"


def _weighted_order(accounts: list[Account]) -> list[Account]:
    """Highest priority first; within a priority, a shuffle where weight w is w times as likely
    to come first (Efraimidis–Spirakis keys). Weight 0 comes last in its priority."""
    def key(account: Account) -> tuple[int, float]:
        draw = random.random() ** (1.0 / account.weight) if account.weight > 0 else -1.0  # noqa: S311
        return account.priority, draw
    return sorted(accounts, key=key, reverse=True)


def _epoch(value: datetime | None) -> float:
    if value is None:
        return 0.0
    if value.tzinfo is None:  # SQLite returns naive UTC
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _datetime(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


# -- classifying failures ------------------------------------------------------------------

def failure_for_status(status: int, headers: Mapping[str, str], at: datetime | None = None) -> Failure | None:
    """What a provider's non-200 answer says about the account; None: the client's own mistake
    (400, 404, 413, 422 and other 4xx), which is never retried."""
    at = at or clock.now()
    if status in (401, 403):
        return Failure(f"credentials rejected, HTTP {status}, at {at:%Y-%m-%d %H:%M:%S} UTC",
                       disable=True)
    if status == 429:
        return Failure("rate limited, HTTP 429", cooldown=retry_after_seconds(headers, at))
    if status == 408 or status >= 500:
        return Failure(f"HTTP {status}")
    return None


def _text(value: bytes | str) -> str:
    """A Redis reply as text (redis-py types replies as either; this client gets bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def failure_for_stream_error(error_type: str | None) -> Failure | None:
    """What a stream whose first event is an error says; None: not the account's fault."""
    if error_type in ("overloaded_error", "api_error", "server_error", "timeout_error", None):
        return Failure(f"stream began with {error_type or 'an error'}")
    if error_type in ("rate_limit_error", "rate_limit_exceeded"):
        return Failure("stream began with rate_limit_error", cooldown=RATE_LIMIT_COOLDOWN)
    if error_type in ("authentication_error", "permission_error"):
        return Failure(f"credentials rejected ({error_type}) at {clock.now():%Y-%m-%d %H:%M:%S} UTC",
                       disable=True)
    return None


def retry_after_seconds(headers: Mapping[str, str], at: datetime) -> float:
    """The provider's ``retry-after`` (seconds or an HTTP date), else 30 s; at most an hour."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return RATE_LIMIT_COOLDOWN
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - at).total_seconds()
        except (TypeError, ValueError):
            return RATE_LIMIT_COOLDOWN
    return min(max(seconds, 1.0), 3600.0)


# -- conversations -------------------------------------------------------------------------

SESSION_HEADERS = ("x-claude-code-session-id", "session-id", "session_id", "conversation_id",
                   "conversation-id")


def conversation_id(key_id: int, body: dict, headers: Mapping[str, str] | Headers) -> str:
    """A stable id for the conversation a request belongs to, scoped to the API key.

    From what clients send: ``prompt_cache_key`` (Codex, OpenAI SDKs), the session part of
    Claude Code's ``metadata.user_id``, session headers (Claude Code, Codex), OpenAI's
    ``user``; else a hash of the system prompt and the first message.
    """
    marker = _client_marker(body, headers)
    if marker is None:
        first = _first_turn(body)
        marker = "h:" + hashlib.sha256(json.dumps(first, sort_keys=True, default=str).encode()).hexdigest()
    return hashlib.sha256(f"{key_id}\0{marker}".encode()).hexdigest()[:32]


def _client_marker(body: dict, headers: Mapping[str, str] | Headers) -> str | None:
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        return "pck:" + key
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user_id, str) and user_id:
        session = _claude_code_session(user_id)
        if session:
            return "cc:" + session
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return "hdr:" + value
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        return "user:" + user
    return None


def _claude_code_session(user_id: str) -> str | None:
    """The session of Claude Code's ``metadata.user_id``: a JSON string with ``session_id``
    (2.1+), or ``user_<hash>_account_<uuid>_session_<uuid>`` (older versions)."""
    if user_id.startswith("{"):
        try:
            value = json.loads(user_id)
        except ValueError:
            return None
        session = value.get("session_id") if isinstance(value, dict) else None
        return session if isinstance(session, str) and session else None
    _, found, session = user_id.rpartition("_session_")
    return session if found and session else None


def _first_turn(body: dict) -> list:
    """The system prompt and the first message of any dialect's body."""
    system = body.get("system") or body.get("instructions")
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = body.get("input")
        if isinstance(messages, str):
            messages = [messages]
    first = messages[:1] if isinstance(messages, list) else []
    if first and isinstance(first[0], dict) and first[0].get("role") in ("system", "developer") \
            and isinstance(messages, list):
        first = messages[:2]
    return [system, first]
