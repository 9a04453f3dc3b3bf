"""Forgotten passwords: a single-use, expiring link by email; only the token's sha256 is stored.

``request`` answers nothing about whether the email has an account (the caller shows one page
either way) and sends through the outbox, so the answer never waits on the mail server. ``reset``
spends the token with a conditional UPDATE (so it works once, even from two tabs at once), sets
the password, spends every other open link of the account, ends all its sessions (sessions.py)
and writes the audit log, in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy import update
from werkzeug.security import generate_password_hash

from pagegrid import audit
from pagegrid import outbox
from pagegrid import sessions
from pagegrid.extensions import db
from pagegrid.models import PasswordReset
from pagegrid.models import User
from pagegrid.models import utcnow


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request(email: str, link: Callable[[str], str]) -> None:
    """Email a reset link (``link(token)`` builds its URL) if ``email`` is an active account."""
    user = db.session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active:
        return
    token = secrets.token_urlsafe(32)
    minutes = current_app.config["PAGEGRID_PASSWORD_RESET_MINUTES"]
    db.session.add(PasswordReset(user_id=user.id, token_hash=_hash(token),
                                 expires_at=utcnow() + timedelta(minutes=minutes)))
    outbox.enqueue_email(user.id, user.email, "Reset your PageGrid password",
                         f"Someone asked to reset the password of your PageGrid account {user.email}.\n\n"
                         f"Set a new password here within {minutes} minutes (the link works once):\n\n"
                         f"{link(token)}\n\nIf it was not you, ignore this email: your password stays "
                         "as it is.\n")
    db.session.commit()


def account_for(token: str) -> User | None:
    """The active account an unused, unexpired token belongs to, else None."""
    if not token or len(token) > 100:
        return None
    return db.session.scalar(
        select(User).join(PasswordReset, PasswordReset.user_id == User.id)
        .where(PasswordReset.token_hash == _hash(token), PasswordReset.used_at.is_(None),
               PasswordReset.expires_at > utcnow(), User.active.is_(True)))


def reset(token: str, password: str) -> User | None:
    """Set ``password`` with the token, once; None if it is unknown, used or expired."""
    now = utcnow()
    user_id = db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.token_hash == _hash(token), PasswordReset.used_at.is_(None),
               PasswordReset.expires_at > now)
        .values(used_at=now).returning(PasswordReset.user_id)
        .execution_options(synchronize_session=False)).scalar_one_or_none()
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is None or not user.active:
        db.session.rollback()
        return None
    db.session.execute(update(PasswordReset).where(PasswordReset.user_id == user.id,
                                                   PasswordReset.used_at.is_(None))
                       .values(used_at=now).execution_options(synchronize_session=False))
    user.password_hash = generate_password_hash(password)
    sessions.end_all(user)
    audit.record("user.password_reset_link", user, after={"password_hash": "[changed]"}, commit=False)
    db.session.commit()
    return user
