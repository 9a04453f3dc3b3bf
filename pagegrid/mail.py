"""Email over SMTP: ``PAGEGRID_SMTP_URL`` parsed, one message sent (the outbox calls it).

``smtp://host:port`` talks plain SMTP (a relay on the same host or network),
``smtp+starttls://user:pass@host:587`` upgrades with STARTTLS before logging in, and
``smtps://user:pass@host:465`` is TLS from the first byte. User and password are URL-quoted.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote
from urllib.parse import urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class Server:
    """Where and how to send: the parsed ``PAGEGRID_SMTP_URL``."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None


def enabled(config: Mapping) -> bool:
    """Is email configured (alerts by email, the forgot-password link)?"""
    return bool(config.get("PAGEGRID_SMTP_URL"))


def parse_url(url: str) -> Server:
    """``smtp://``, ``smtp+starttls://`` or ``smtps://`` with an optional ``user:pass@``; else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("PAGEGRID_SMTP_URL must look like smtp://host:port, "
                         "smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465")
    return Server(parts.scheme, parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme],
                  unquote(parts.username) if parts.username else None,
                  unquote(parts.password) if parts.password else None)


def send(config: Mapping, to: str, subject: str, text: str) -> None:
    """Send one plain-text message; raises (smtplib.SMTPException, OSError) when it is not accepted."""
    server = parse_url(config["PAGEGRID_SMTP_URL"])
    sender = config["PAGEGRID_MAIL_FROM"]
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(text)
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if server.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=TIMEOUT_SECONDS, context=context)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_SECONDS)
    with smtp:
        if server.scheme == "smtp+starttls":
            smtp.starttls(context=context)
        if server.username:
            smtp.login(server.username, server.password or "")
        smtp.send_message(message)
