"""Creating accounts (the CLI, the admin console and the tests share it)."""

from __future__ import annotations

from werkzeug.security import generate_password_hash

from pagegrid.extensions import db
from pagegrid.models import User


def create_user(email: str, password: str, admin: bool = False, *, password_hash: str | None = None) -> User:
    """Create an account (emails are stored lower-case); ``password_hash`` skips hashing
    ``password`` again when its hash is known (the tests' many users share one)."""
    user = User(email=email.strip().lower(), password_hash=password_hash or generate_password_hash(password),
                is_admin=admin, active=True, balance_nanos=0, held_nanos=0)
    db.session.add(user)
    db.session.commit()
    return user
