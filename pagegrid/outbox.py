"""The outbox: emails and signed webhook POSTs, sent after the commit that caused them.

A message is a row written in its cause's own transaction (a settlement that tripped a
low-balance alert, a forgotten-password request), so it exists exactly when its cause does. The
commit wakes this process's sender, a background thread (a greenlet under gevent) that claims due
rows with a conditional UPDATE (so two workers never both send one), sends them with no database
connection held, and marks them sent — or, on failure, logs it and retries with backoff
(``PAGEGRID_OUTBOX_RETRY_SECONDS``, doubling, at most an hour apart, ``MAX_ATTEMPTS`` in all).
Nothing here runs on a request's path: a slow or dead mail server never delays an answer.
Rows a dead worker left are sent by the next sender that wakes, or by ``flask --app app send-outbox``.

Webhooks are signed like Stripe's: ``PageGrid-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the user's signing secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from flask import Flask
from flask import current_app
from sqlalchemy import event
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from pagegrid import mail
from pagegrid.extensions import db
from pagegrid.extensions import rowcount
from pagegrid.models import OutboxMessage
from pagegrid.models import User
from pagegrid.models import utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "PageGrid-Signature"
MAX_ATTEMPTS = 8
MAX_DELAY_SECONDS = 3600
CLAIM_SECONDS = 120
BATCH = 50
_PENDING = "pagegrid.outbox_pending"  # a session's flag: it wrote a message, wake the sender on commit
_USER_AGENT = "PageGrid-Webhook/1"


def init_app(app: Flask) -> None:
    """Wake the sender after every commit that wrote a message."""
    app.extensions["pagegrid.outbox"] = Sender(app)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop(_PENDING, False):
        try:
            service = current_app.extensions.get("pagegrid.outbox")
        except RuntimeError:  # committed outside an app context: the next wake sends it
            return
        if service is not None:
            service.wake()


def _enqueue(row: OutboxMessage) -> None:
    db.session.add(row)
    db.session.info[_PENDING] = True


def enqueue_email(user_id: int | None, to: str, subject: str, text: str) -> None:
    """Send ``text`` to ``to`` once the caller's transaction commits (the caller commits)."""
    _enqueue(OutboxMessage(kind="email", user_id=user_id, target=to, subject=subject[:255], body=text,
                           next_attempt_at=utcnow()))


def enqueue_webhook(user_id: int, url: str, event_type: str, body: str) -> None:
    """POST ``body`` (JSON), signed with the user's secret at sending time, once the caller commits."""
    _enqueue(OutboxMessage(kind="webhook", user_id=user_id, target=url, subject=event_type, body=body,
                           next_attempt_at=utcnow()))


# -- signing and destinations ---------------------------------------------------------------------

def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The ``PageGrid-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def validate_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL, stripped, if a webhook may go there; else ValueError saying why.

    https only; with ``allow_private`` (tests, closed networks) also http. Loopback, private,
    link-local and other non-public addresses are refused unless ``allow_private``: a customer
    must not be able to make the gateway POST into the operator's own network.
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in (("https", "http") if allow_private else ("https",)) or not parts.hostname:
        raise ValueError("The webhook URL must be an https:// URL.")
    if parts.username or parts.password:
        raise ValueError("The webhook URL cannot carry a user name or password.")
    if len(url) > 2000:
        raise ValueError("The webhook URL is too long.")
    if not allow_private:
        _public_host(parts.hostname, parts.port or 443)
    return url


def _public_host(host: str, port: int) -> None:
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        raise ValueError(f"The webhook host {host} cannot be resolved.") from None
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise ValueError(f"The webhook host {host} is not a public address.")


# -- sending --------------------------------------------------------------------------------------

def deliver_due(app: Flask) -> float | None:
    """Send every due message once; return seconds until the next one is due (None: none left)."""
    with app.app_context():
        now = utcnow()
        unsent = (OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
        free = or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now)
        due = db.session.scalars(
            select(OutboxMessage.id).where(*unsent, free, OutboxMessage.next_attempt_at <= now)
            .order_by(OutboxMessage.id).limit(BATCH)).all()
        db.session.rollback()
        for message_id in due:
            _deliver_one(app, message_id, unsent, free)
        following = db.session.scalar(select(OutboxMessage.next_attempt_at).where(*unsent)
                                      .order_by(OutboxMessage.next_attempt_at).limit(1))
        db.session.rollback()
        if following is None:
            return None
        if following.tzinfo is None:  # SQLite gives naive UTC back
            following = following.replace(tzinfo=now.tzinfo)
        return max(0.0, (following - utcnow()).total_seconds())


def _deliver_one(app: Flask, message_id: int, unsent: tuple, free) -> None:  # noqa: ANN001 - a SQL clause
    now = utcnow()
    claimed = rowcount(db.session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id, *unsent, free)
        .values(claimed_until=now + timedelta(seconds=CLAIM_SECONDS))
        .execution_options(synchronize_session=False)))
    db.session.commit()
    if claimed != 1:
        return  # another sender has it
    message = db.session.get_one(OutboxMessage, message_id)
    kind, target, subject, body, user_id = (message.kind, message.target, message.subject, message.body or "",
                                            message.user_id)
    secret = (db.session.scalar(select(User.alert_webhook_secret).where(User.id == user_id))
              if kind == "webhook" else None)
    db.session.rollback()  # no connection held while talking to the mail server or the webhook
    try:
        if kind == "email":
            mail.send(app.config, target, subject, body)
        else:
            _post(app, target, subject, body, secret)
    except Exception as exc:  # noqa: BLE001 - any failure is retried, never raised into a request
        _failed(app, message_id, exc)
    else:
        db.session.execute(update(OutboxMessage).where(OutboxMessage.id == message_id).values(
            sent_at=utcnow(), body=None, claimed_until=None, attempts=OutboxMessage.attempts + 1,
            last_error=None).execution_options(synchronize_session=False))
        db.session.commit()
        log.info("outbox: sent %s %s (message %s)", kind, subject, message_id)


def _post(app: Flask, url: str, event_type: str, body: str, secret: str | None) -> None:
    if not secret:
        raise RuntimeError("the account has no webhook signing secret")
    if not app.config["PAGEGRID_ALERT_WEBHOOK_ALLOW_PRIVATE"]:
        validate_webhook_url(url, allow_private=False)  # again: the name may resolve elsewhere now
    payload = body.encode()
    with requests.Session() as session:
        session.trust_env = False  # no proxies or netrc from the environment
        reply = session.post(url, data=payload, timeout=(5, 10), allow_redirects=False, headers={
            "Content-Type": "application/json", "User-Agent": _USER_AGENT, "PageGrid-Event": event_type,
            SIGNATURE_HEADER: signature(secret, payload, int(time.time()))})
    if not 200 <= reply.status_code < 300:
        raise RuntimeError(f"the webhook answered HTTP {reply.status_code}")


def _failed(app: Flask, message_id: int, exc: Exception) -> None:
    message = db.session.get_one(OutboxMessage, message_id)
    message.attempts += 1
    message.claimed_until = None
    message.last_error = f"{type(exc).__name__}: {exc}"[:500]
    if message.attempts >= MAX_ATTEMPTS:
        message.failed_at = utcnow()
        message.body = None
        log.error("outbox: gave up on %s %s (message %s) after %s attempts: %s", message.kind,
                  message.subject, message_id, message.attempts, message.last_error)
    else:
        first = app.config["PAGEGRID_OUTBOX_RETRY_SECONDS"]
        delay = min(first * 2 ** (message.attempts - 1), MAX_DELAY_SECONDS)
        message.next_attempt_at = utcnow() + timedelta(seconds=delay)
        log.warning("outbox: %s %s (message %s) failed, retrying in %.0f s: %s", message.kind,
                    message.subject, message_id, delay, message.last_error)
    db.session.commit()


class Sender:
    """Per process: a background loop that runs while messages are waiting, woken by commits."""

    POLL_SECONDS = 30.0  # also picks up what other processes left, while this one is awake

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._loop_pid = 0
        self._stopped = False

    def wake(self) -> None:
        """Something was written: send it now (starting the loop if it is not running)."""
        self._wake.set()
        with self._lock:
            if self._stopped or self._loop_pid == os.getpid():
                return
            self._loop_pid = os.getpid()
        threading.Thread(target=self._run, name="pagegrid-outbox", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                following = deliver_due(self.app)
            except Exception as exc:  # noqa: BLE001 - the database may be down: try again later
                log.warning("outbox: sending failed: %s", exc)
                following = self.POLL_SECONDS
            with self._lock:
                if self._stopped or following is None and not self._wake.is_set():
                    self._loop_pid = 0  # nothing waits: the next commit starts a new loop
                    return
            self._wake.wait(timeout=min(following if following is not None else 0, self.POLL_SECONDS))


    def stop(self) -> None:
        """End the loop after its current round and start no other (tests, shutdown)."""
        with self._lock:
            self._stopped = True
        self._wake.set()


def sender(app: Flask) -> Sender:
    """This app's outbox sender."""
    return app.extensions["pagegrid.outbox"]
