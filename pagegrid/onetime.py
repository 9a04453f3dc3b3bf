"""Show a new secret once: kept server-side between a POST and the page it redirects to.

The session cookie is signed, not encrypted, so a secret put there can be read by anyone who
sees the cookie (a proxy log, a shared computer, the browser's storage) for as long as it lives.
Here the cookie holds a random pointer; the secret is a row, encrypted, deleted when shown.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import session
from sqlalchemy import delete
from sqlalchemy import select

from pagegrid.extensions import db
from pagegrid.extensions import rowcount
from pagegrid.models import OneTimeSecret
from pagegrid.models import utcnow

SESSION_KEY = "one_time_secret"
# A secret not picked up by then (the redirect never followed) is dropped unseen.
TTL = timedelta(minutes=10)


def stash(user_id: int, value: str, label: str = "") -> None:
    """Keep ``value`` for the user's next page view, and point this session at it."""
    db.session.execute(delete(OneTimeSecret).where(OneTimeSecret.created_at < utcnow() - TTL))
    row = OneTimeSecret(id=secrets.token_urlsafe(32), user_id=user_id, value=value, label=label)
    db.session.add(row)
    db.session.commit()
    session[SESSION_KEY] = row.id


def claim(user_id: int, labels: tuple[str, ...] | None = None) -> tuple[str | None, str]:
    """The stashed ``(value, label)`` once; ``(None, "")`` after that or if there is none.

    With ``labels``, a secret stashed under another label stays for the page it was meant for
    (recovery codes never show up on the keys page as if they were a key).
    """
    row_id = session.get(SESSION_KEY)
    if not row_id:
        return None, ""
    row = db.session.scalar(select(OneTimeSecret).where(
        OneTimeSecret.id == row_id, OneTimeSecret.user_id == user_id,
        OneTimeSecret.created_at >= utcnow() - TTL))
    if row is not None and labels is not None and row.label not in labels:
        return None, ""
    session.pop(SESSION_KEY, None)
    if row is None:
        return None, ""
    value, label = row.value, row.label
    # Only the request whose DELETE removes the row shows it (two tabs reloading at once).
    deleted = rowcount(db.session.execute(delete(OneTimeSecret).where(OneTimeSecret.id == row_id)))
    db.session.commit()
    return (value, label) if deleted == 1 else (None, "")
