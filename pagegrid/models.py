"""ORM tables. Columns and constraints; the logic lives in keys, billing and catalog."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import CheckConstraint
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import false
from sqlalchemy import true
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from pagegrid import clock
from pagegrid.crypto import EncryptedText
from pagegrid.extensions import Model

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for a ledger.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Timezone-aware now in UTC (all timestamps are stored in UTC)."""
    return clock.now()


class User(UserMixin, Model):
    """A customer or operator account; its wallet is ``balance_nanos`` (nano-USD)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Only ever changed by billing.py, together with a ledger row (balance == sum(ledger)).
    balance_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    # Sum of this user's open holds (rows in ``holds``), kept beside the balance so that
    # admission is one conditional UPDATE.
    held_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    # Ceilings the admin sets; the customer's own keys cannot exceed them (None: no ceiling).
    max_rpm: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    # Whether the customer may raise or remove daily/monthly limits on their keys.
    may_lift_quotas: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Part of every session's id; bumping it ends all of the user's sessions (sessions.py).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Two-factor login (twofactor.py): the TOTP secret, Fernet-encrypted at rest, is set while
    # enrolling and kept once ``totp_enabled``; the last accepted time step refuses a replayed code.
    totp_secret: Mapped[str | None] = mapped_column(EncryptedText)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # Its price group (pricegroups.py): every charge and hold is the list cost times the group's multiplier.
    price_group_id: Mapped[int | None] = mapped_column(ForeignKey("price_groups.id"), index=True)
    # Low-balance alert (alerts.py): off while the threshold is None. ``alert_armed`` is cleared by
    # the one settlement that takes the available balance below the threshold (a conditional
    # UPDATE: one alert however many settle at once) and set again by a credit that lifts it back.
    alert_threshold_nanos: Mapped[int | None] = mapped_column(BigInteger)
    alert_armed: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    alert_webhook_url: Mapped[str | None] = mapped_column(Text)
    alert_webhook_secret: Mapped[str | None] = mapped_column(EncryptedText)  # signs the webhook

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users cannot log in
        return self.active

    def get_id(self) -> str:
        """Flask-Login's session token: the id and the current session epoch."""
        return f"{self.id}:{self.session_epoch}"


class PriceGroup(Model):
    """A price group: its users pay the list cost times ``multiplier_num / multiplier_den``.

    The multiplier is stored as an exact fraction (``0.8`` is 4/5, ``1.25`` is 5/4), entered as a
    decimal with at most six places, so its denominator divides 10**6 and it reads back exactly.
    """

    __tablename__ = "price_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    multiplier_num: Mapped[int] = mapped_column(BigInteger)
    multiplier_den: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (CheckConstraint("multiplier_num > 0 AND multiplier_den > 0",
                                      name="multiplier_positive"),)


class ApiKey(Model):
    """An API key. Only the sha256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    last4: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rpm: Mapped[int] = mapped_column(Integer, default=10)
    daily_request_limit: Mapped[int] = mapped_column(Integer, default=0)
    monthly_token_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    allowed_models: Mapped[list] = mapped_column(JSON, default=list)
    # Requests in flight at once (streams included), counted from the open holds' leases.
    concurrency: Mapped[int] = mapped_column(Integer, default=16, server_default="16")
    # CIDR ranges the key may be used from (``["10.0.0.0/8", "2001:db8::/32"]``); empty: anywhere.
    allowed_ips: Mapped[list] = mapped_column(JSON, default=list)
    # A spending cap in nano-USD per ``budget_period`` (day | week | month | total, UTC); None: none.
    budget_nanos: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str | None] = mapped_column(String(8))

    @property
    def display(self) -> str:
        """The key as the dashboard shows it: ``pg-65b0…69d0``."""
        return f"{self.prefix}\u2026{self.last4}"


class CatalogModel(Model):
    """A model customers can call, with its prices in nano-USD per token.

    $X per 1M tokens is X*1000 nano-USD per token, so any list price with up to three
    decimals in $/1M is an exact integer here.
    """

    __tablename__ = "catalog_models"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    upstream_id: Mapped[str] = mapped_column(String(100))
    display_name: Mapped[str] = mapped_column(String(100))
    aliases: Mapped[list] = mapped_column(JSON, default=list)
    context_window: Mapped[int] = mapped_column(Integer)
    max_output: Mapped[int] = mapped_column(Integer)
    vision: Mapped[bool] = mapped_column(Boolean, default=True)
    tools: Mapped[bool] = mapped_column(Boolean, default=True)
    thinking: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    input_nanos: Mapped[int] = mapped_column(BigInteger)
    output_nanos: Mapped[int] = mapped_column(BigInteger)
    cache_write_nanos: Mapped[int] = mapped_column(BigInteger)
    cache_write_1h_nanos: Mapped[int] = mapped_column(BigInteger)
    cache_read_nanos: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    # Priced by PageGrid (the price list or a family rule), not by the operator; where from.
    auto_priced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    price_source: Mapped[str | None] = mapped_column(Text)
    # Listed by a provider but priced by nothing: added inactive until the operator prices it.
    needs_price: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PriceRule(Model):
    """How ``sync-models`` prices a new model the price list lacks: ``claude-opus-*`` like a model.

    ``like_model`` names the catalog model whose current price is copied (its list price when
    it is not in the catalog); empty, the price list's current model of the family. Explicit
    prices (all five, nano-USD per token) win over both.
    """

    __tablename__ = "price_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pattern: Mapped[str] = mapped_column(String(100), unique=True)
    like_model: Mapped[str | None] = mapped_column(String(100))
    input_nanos: Mapped[int | None] = mapped_column(BigInteger)
    output_nanos: Mapped[int | None] = mapped_column(BigInteger)
    cache_write_nanos: Mapped[int | None] = mapped_column(BigInteger)
    cache_write_1h_nanos: Mapped[int | None] = mapped_column(BigInteger)
    cache_read_nanos: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Upstream(Model):
    """A provider account requests are forwarded to. The key is never shown back."""

    __tablename__ = "upstreams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(100))
    base_url: Mapped[str] = mapped_column(String(255))
    api_key: Mapped[str] = mapped_column(EncryptedText)  # Fernet-encrypted at rest (crypto.py)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Routing (pool.py): higher priority first, then by weight among the healthy accounts.
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Catalog model ids this account serves; empty: every model of its provider.
    models: Mapped[list] = mapped_column(JSON, default=list)
    # Requests in flight on this account at once (None: no cap).
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    # Why and when it stopped being used (credentials rejected, or the operator).
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("uq_upstreams_name", "name", unique=True),)


class UpstreamStatus(Model):
    """An account's live health, shared by every worker when Redis is not configured.

    ``cooling`` until ``until`` after a 429, 5xx, 529 or timeout (``strikes`` counts repeats,
    which lengthen the cooldown); ``disabled`` for the implicit environment account, whose
    disablement has no row of its own in ``upstreams``.
    """

    __tablename__ = "upstream_status"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    strikes: Mapped[int] = mapped_column(Integer, default=0)


class Hold(Model):
    """Money reserved for a request in flight; deleted exactly once, at settlement.

    The worker serving the request renews ``lease_until`` while it runs; a hold whose lease
    expired belongs to a worker that died, and only such holds are ever released unsettled.
    Open holds with a live lease are also the key's requests in flight (its concurrency).
    """

    __tablename__ = "holds"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    api_key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    amount_nanos: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)

    __table_args__ = (CheckConstraint("amount_nanos >= 0", name="amount_not_negative"),)


class LedgerEntry(Model):
    """One change of a wallet: a request's charge, a top-up or an adjustment.

    ``amount_nanos`` is signed (charges are negative), so a balance is the sum of its rows.
    """

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))  # usage | credit | topup
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    model: Mapped[str | None] = mapped_column(String(100))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_1h_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    amount_nanos: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))  # complete | client_aborted | upstream_error
    note: Mapped[str | None] = mapped_column(Text)
    # What the request held, and whether its charge exceeded that (logged as an error too).
    hold_nanos: Mapped[int | None] = mapped_column(BigInteger)
    over_hold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Charges beside tokens: server tool uses and their fees (``{"server_tools": {...}}``).
    detail: Mapped[dict | None] = mapped_column(JSON)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The upstream account that served a charge, and how many accounts were tried for it.
    upstream: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The model's prices the charge applied, nano-USD per token by kind (billing.Price's fields).
    rates: Mapped[dict | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_ledger_user_created", "user_id", "created_at"),)


class KeyUsage(Model):
    """Per-key counters for a UTC day (``2026-11-25``), ISO week (``2026-W48``), month
    (``2026-11``) and all time (``total``): requests admitted (the day's row), and the tokens
    and nano-USD charged (every period's row, added in the settlement's transaction).

    Kept in the database beside the ledger, so they are exact across any number of workers
    and instances and survive restarts.
    """

    __tablename__ = "key_usage"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"),
                                            primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_nanos: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class TopUpCode(Model):
    """A single-use code an admin hands out; redeeming it credits the wallet once."""

    __tablename__ = "topup_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    amount_nanos: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    redeemed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("amount_nanos > 0", name="amount_positive"),)


class StripeTopUp(Model):
    """A wallet top-up paid by card through a Stripe Checkout Session.

    ``pending`` until Stripe confirms the payment (``paid``, credited once), ``expired`` when the
    session lapses unpaid, ``failed`` when no session could be created; ``refunded_nanos`` grows
    with each refund, and a fully refunded top-up is ``refunded``.
    """

    __tablename__ = "stripe_topups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_nanos: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Stripe ids are opaque strings of up to 255 characters.
    session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    refunded_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("amount_nanos > 0", name="amount_positive"),
                      CheckConstraint("refunded_nanos >= 0", name="refunded_not_negative"))


class OneTimeSecret(Model):
    """A new API key's secret between the POST that made it and the one page that shows it.

    Kept here (encrypted) rather than in the signed session cookie, which any holder can read;
    the session holds only the random ``id``. Claiming deletes the row, so it is shown once.
    """

    __tablename__ = "one_time_secrets"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(EncryptedText)
    label: Mapped[str] = mapped_column(String(20), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RecoveryCode(Model):
    """A single-use two-factor recovery code; only its sha256 is stored (the code has 79 random bits)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxMessage(Model):
    """An email or webhook POST to send after the commit that caused it (outbox.py).

    Written in the transaction of its cause, sent off the request path, retried with backoff;
    ``body`` is encrypted (a password reset link is a secret) and cleared once sent.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # email | webhook
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(Text)  # an email address or a URL
    subject: Mapped[str] = mapped_column(String(255))  # the email's subject, the webhook's event type
    body: Mapped[str | None] = mapped_column(EncryptedText)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A sender took it until then (another worker skips it; a dead sender's claim lapses).
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # gave up
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_outbox_due", "sent_at", "failed_at", "next_attempt_at"),)


class PasswordReset(Model):
    """A forgotten-password link: single use, expiring; only the token's sha256 is stored."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Model):
    """One admin action (audit.py): who, what, on what, when, and the values before and after.

    ``actor`` is the admin's email, or ``cli`` for an operator command; secrets never get here.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255), index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str] = mapped_column(String(255), index=True)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
class RequestLogEntry(Model):
    """One ``/v1`` request, refused ones included: what it asked, how it ended, how long it took.

    Kept ``PAGEGRID_REQUEST_LOG_DAYS`` and pruned (``flask --app app prune``); money lives in the
    ledger, which is kept forever. No foreign keys: a log row never blocks or fails a request.
    """

    __tablename__ = "request_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer)
    api_key_id: Mapped[int | None] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(40))  # endpoint: messages, chat, responses, ...
    model: Mapped[str | None] = mapped_column(String(100))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status the client got
    error_type: Mapped[str | None] = mapped_column(String(40))
    outcome: Mapped[str | None] = mapped_column(String(20))  # the charge's: complete | client_aborted | ...
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    upstream: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    client_ip: Mapped[str | None] = mapped_column(String(45))

    __table_args__ = (Index("ix_request_log_created", "created_at"),
                      Index("ix_request_log_user_created", "user_id", "created_at"))


class StoredResponse(Model):
    """A Responses API response kept for ``previous_response_id``, ``item_reference`` and
    ``GET /v1/responses/{id}`` (responses_store.py), owned by the user whose key made it.

    A Claude model's response keeps its response object and the input items its turn added;
    a GPT model's keeps only who owns it and which account holds it (OpenAI stores the rest).
    Kept ``PAGEGRID_RESPONSES_RETENTION_DAYS`` and pruned (``flask --app app prune-responses``).
    """

    __tablename__ = "stored_responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # resp_…, the id the client got
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(20))  # anthropic: kept here | openai: kept at OpenAI
    model: Mapped[str] = mapped_column(String(100))
    upstream: Mapped[str | None] = mapped_column(String(100))  # the account that answered
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    response: Mapped[dict | None] = mapped_column(JSON)
    input_items: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (Index("ix_stored_responses_created", "created_at"),
                      Index("ix_stored_responses_user", "user_id"))
