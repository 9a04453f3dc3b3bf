"""Configuration: the only module that reads ``os.environ``.

Every setting carries the ``PAGEGRID_`` prefix so that an operator whose own shell points
``ANTHROPIC_BASE_URL`` at PageGrid never makes the gateway call itself.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

DEFAULT_ANTHROPIC_URL = "https://api.anthropic.com"
DEFAULT_OPENAI_URL = "https://api.openai.com"


def _secret_key(instance_path: Path) -> str:
    """Return PAGEGRID_SECRET_KEY, or a key generated once and kept in ``instance/``."""
    configured = os.environ.get("PAGEGRID_SECRET_KEY")
    if configured:
        return configured
    path = instance_path / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _encryption_key(instance_path: Path) -> str:
    """Return PAGEGRID_ENCRYPTION_KEY, or a Fernet key generated once and kept in ``instance/``."""
    configured = os.environ.get("PAGEGRID_ENCRYPTION_KEY")
    if configured:
        return configured
    path = instance_path / "encryption_key"
    if path.exists():
        return path.read_text().strip()
    # Fernet's format: 32 random bytes, url-safe base64 (cryptography stays out of config).
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key)
    return key


def from_environ(instance_path: Path) -> dict:
    """Build the Flask config mapping from ``PAGEGRID_*`` environment variables."""
    env = os.environ.get
    database_url = normalise_database_url(
        env("PAGEGRID_DATABASE_URL") or f"sqlite:///{instance_path / 'pagegrid.db'}"
    )
    return {
        "SECRET_KEY": _secret_key(instance_path),
        "PAGEGRID_ENCRYPTION_KEY": _encryption_key(instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "PAGEGRID_REDIS_URL": env("PAGEGRID_REDIS_URL") or None,
        # Flask-Limiter: the RPM windows live in Redis when it is configured.
        "RATELIMIT_STORAGE_URI": env("PAGEGRID_REDIS_URL") or "memory://",
        "RATELIMIT_STRATEGY": "moving-window",
        "RATELIMIT_KEY_PREFIX": env("PAGEGRID_RATELIMIT_PREFIX") or "pagegrid",
        "RATELIMIT_HEADERS_ENABLED": False,
        # Redis down: the dashboard's login limits count in process memory until it is back
        # (the API's RPM does the same, in limits.RequestRate); short timeouts so nobody waits.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_STORAGE_OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1}
        if env("PAGEGRID_REDIS_URL") else {},
        "PAGEGRID_RPM_WINDOW_SECONDS": int(env("PAGEGRID_RPM_WINDOW_SECONDS") or 60),
        "PAGEGRID_ANTHROPIC_URL": (env("PAGEGRID_ANTHROPIC_URL") or DEFAULT_ANTHROPIC_URL).rstrip("/"),
        "PAGEGRID_ANTHROPIC_KEY": env("PAGEGRID_ANTHROPIC_KEY") or None,
        "PAGEGRID_OPENAI_URL": (env("PAGEGRID_OPENAI_URL") or DEFAULT_OPENAI_URL).rstrip("/"),
        "PAGEGRID_OPENAI_KEY": env("PAGEGRID_OPENAI_KEY") or None,
        "PAGEGRID_PUBLIC_URL": (env("PAGEGRID_PUBLIC_URL") or "").rstrip("/") or None,
        # Dashboard sessions: HttpOnly always, Secure whenever customers reach us over https.
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": (env("PAGEGRID_PUBLIC_URL") or "").startswith("https://"),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": (env("PAGEGRID_PUBLIC_URL") or "").startswith("https://"),
        "PERMANENT_SESSION_LIFETIME": 12 * 3600,  # absolute: log in again after 12 h
        "PAGEGRID_TRUSTED_PROXIES": env("PAGEGRID_TRUSTED_PROXIES") or "",
        # Failed-login tiers (limits' notation), per (account, IP) and per IP; see throttle.py.
        "PAGEGRID_LOGIN_ACCOUNT_IP_LIMITS": "5/minute;10/15 minutes;20/hour;50/day",
        "PAGEGRID_LOGIN_IP_LIMITS": "30/minute;100/hour;300/day",
        # Two-factor codes, per (account, IP) and per account across IPs; see throttle.py.
        "PAGEGRID_2FA_ACCOUNT_IP_LIMITS": "5/minute;20/hour",
        "PAGEGRID_2FA_ACCOUNT_LIMITS": "10/15 minutes;30/day",
        # Admins must turn two-factor login on before the admin console opens for them.
        "PAGEGRID_REQUIRE_ADMIN_2FA": flag(env("PAGEGRID_REQUIRE_ADMIN_2FA")),
        "PAGEGRID_SESSION_IDLE_MINUTES": int(env("PAGEGRID_SESSION_IDLE_MINUTES") or 30),
        "WTF_CSRF_TIME_LIMIT": None,  # tokens live as long as the session
        "MAX_CONTENT_LENGTH": int(env("PAGEGRID_MAX_BODY_BYTES") or 32 * 1024 * 1024),
        "PAGEGRID_UPSTREAM_CONNECT_TIMEOUT": float(env("PAGEGRID_UPSTREAM_CONNECT_TIMEOUT") or 10),
        "PAGEGRID_UPSTREAM_READ_TIMEOUT": float(env("PAGEGRID_UPSTREAM_READ_TIMEOUT") or 600),
        # Accounts tried for one request when earlier ones fail before the first byte (pool.py).
        "PAGEGRID_UPSTREAM_ATTEMPTS": int(env("PAGEGRID_UPSTREAM_ATTEMPTS") or 3),
        # Prefix of the pool's Redis keys (account status, conversation affinity, slots).
        "PAGEGRID_REDIS_PREFIX": env("PAGEGRID_REDIS_PREFIX") or "pagegrid:",
        "PAGEGRID_DEMO_DELAY": float(env("PAGEGRID_DEMO_DELAY") or 0.03),
        # Money under adversity (README "Money"): how far a wallet may go below zero, how long
        # a hold lives without its worker renewing it, where failed settlements wait.
        "PAGEGRID_OVERDRAFT": overdraft_policy(env("PAGEGRID_OVERDRAFT") or "one-hold"),
        "PAGEGRID_HOLD_LEASE_SECONDS": float(env("PAGEGRID_HOLD_LEASE_SECONDS") or 120),
        "PAGEGRID_JOURNAL_DIR": env("PAGEGRID_JOURNAL_DIR") or str(instance_path / "journal"),
        "PAGEGRID_KEY_CONCURRENCY": int(env("PAGEGRID_KEY_CONCURRENCY") or 16),
        # A client gets this long to send its whole body (408 after), before any database work.
        "PAGEGRID_BODY_TIMEOUT": float(env("PAGEGRID_BODY_TIMEOUT") or 30),
        # Stripe top-ups: off unless both the secret key and the webhook secret are set.
        "PAGEGRID_STRIPE_SECRET_KEY": env("PAGEGRID_STRIPE_SECRET_KEY") or None,
        "PAGEGRID_STRIPE_WEBHOOK_SECRET": env("PAGEGRID_STRIPE_WEBHOOK_SECRET") or None,
        "PAGEGRID_STRIPE_API_BASE": (env("PAGEGRID_STRIPE_API_BASE") or "").rstrip("/") or None,
        "PAGEGRID_TOPUP_MIN_USD": env("PAGEGRID_TOPUP_MIN_USD") or "5",
        "PAGEGRID_TOPUP_MAX_USD": env("PAGEGRID_TOPUP_MAX_USD") or "1000",
        # The operator's cockpit: who may scrape /metrics from beyond loopback, the log
        # format, and how many days the request log keeps (the ledger is kept forever).
        "PAGEGRID_METRICS_TOKEN": env("PAGEGRID_METRICS_TOKEN") or None,
        "PAGEGRID_LOG_FORMAT": log_format(env("PAGEGRID_LOG_FORMAT") or "text"),
        "PAGEGRID_REQUEST_LOG_DAYS": retention_days(
            "PAGEGRID_REQUEST_LOG_DAYS", env("PAGEGRID_REQUEST_LOG_DAYS") or "30"),
        # How long stored Responses API responses are kept (prune-responses, init-db).
        "PAGEGRID_RESPONSES_RETENTION_DAYS": retention_days(
            "PAGEGRID_RESPONSES_RETENTION_DAYS", env("PAGEGRID_RESPONSES_RETENTION_DAYS") or "30"),
        # Email (low-balance alerts, password resets): off without an SMTP URL (mail.py).
        "PAGEGRID_SMTP_URL": env("PAGEGRID_SMTP_URL") or None,
        "PAGEGRID_MAIL_FROM": env("PAGEGRID_MAIL_FROM") or "pagegrid@localhost",
        # Alert webhooks may go to loopback and private addresses over http (tests, closed networks).
        "PAGEGRID_ALERT_WEBHOOK_ALLOW_PRIVATE": flag(env("PAGEGRID_ALERT_WEBHOOK_ALLOW_PRIVATE")),
        # The outbox's first retry delay in seconds, doubling per failure (outbox.py).
        "PAGEGRID_OUTBOX_RETRY_SECONDS": float(env("PAGEGRID_OUTBOX_RETRY_SECONDS") or 30),
        "PAGEGRID_PASSWORD_RESET_MINUTES": int(env("PAGEGRID_PASSWORD_RESET_MINUTES") or 30),
        # Forgot-password requests, per email and per client IP (throttle.py), counted whether or
        # not the email has an account.
        "PAGEGRID_RESET_EMAIL_LIMITS": "3/hour;10/day",
        "PAGEGRID_RESET_IP_LIMITS": "10/hour;50/day",
        # Set by gunicorn.conf.py for its workers: prometheus_client's multiprocess mode.
        "PROMETHEUS_MULTIPROC_DIR": env("PROMETHEUS_MULTIPROC_DIR") or None,
    }


def flag(value: str | None) -> bool:
    """An on/off setting: 1, true, yes or on (any case) is on; unset or anything else is off."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
def log_format(value: str) -> str:
    """``json`` or ``text``; anything else stops the start with a clear message."""
    if value not in ("json", "text"):
        raise SystemExit(f"PAGEGRID_LOG_FORMAT must be json or text, not {value!r}")
    return value


def retention_days(name: str, value: str) -> int:
    """Whole days, at least 1; anything else stops the start with a clear message naming ``name``."""
    if not value.strip().isdigit() or int(value) < 1:
        raise SystemExit(f"{name} must be a whole number of days >= 1, not {value!r}")
    return int(value)


def overdraft_policy(value: str) -> str:
    """``one-hold`` or ``none``; anything else stops the start with a clear message."""
    if value not in ("one-hold", "none"):
        raise SystemExit(f"PAGEGRID_OVERDRAFT must be one-hold or none, not {value!r}")
    return value


def normalise_database_url(url: str) -> str:
    """Point plain ``postgresql://`` URLs at psycopg 3, the driver that cooperates with gevent."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def engine_options(database_url: str) -> dict:
    """SQLAlchemy engine options suited to the database in use."""
    if database_url.startswith("sqlite"):
        # Several greenlets/threads share the file: wait for the write lock instead of failing.
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    # A request that cannot get a connection within pool_timeout answers 503 instead of
    # queueing behind the others; connect_timeout bounds a connection attempt to a dead server.
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20, "pool_timeout": 5,
            "connect_args": {"connect_timeout": 5}}
