"""Dashboard sessions the server can end: an epoch in the session's user id, and idle expiry.

The session cookie is signed, not stored, so the server cannot delete it. Instead the id that
Flask-Login keeps in it is ``"<user id>:<session epoch>"`` (Flask-Login's "alternative tokens"),
and the user loader accepts it only while the user's ``session_epoch`` is unchanged. Bumping the
epoch (logout, password change, an admin's reset, disabling) ends every session of that user on
every worker at once. Idle and absolute lifetimes are checked from timestamps in the signed cookie.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask import Request
from flask import current_app
from flask import session
from flask.sessions import SecureCookieSession
from flask.sessions import SecureCookieSessionInterface
from flask_login import login_user
from flask_login import logout_user

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.extensions import login_manager
from pagegrid.models import User

# The "seen" stamp is rewritten at most this often, so most responses carry no new cookie.
SEEN_RESOLUTION_SECONDS = 60


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, not opened on the paths ``cookieless`` names (the API's:
    keys authenticate there, never cookies), so a model call builds no signing serializer."""

    def __init__(self, cookieless: Callable[[str], bool]) -> None:
        self.cookieless = cookieless

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """An empty session on a cookieless path (never saved: it stays unmodified)."""
        if self.cookieless(request.path):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask, cookieless: Callable[[str], bool]) -> None:
    """Install the user loader, the idle check and the sessions (none on ``cookieless`` paths)."""
    login_manager.user_loader(load_user)
    app.session_interface = CookieSessions(cookieless)
    app.before_request(expire_idle_session)


def load_user(token: str) -> User | None:
    """The user named by a session token, while the token's epoch is current and the user active."""
    user_id, _, epoch = token.partition(":")
    if not (user_id.isdigit() and epoch.isdigit()):
        return None  # a cookie from before epochs, or forged: log in again
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_epoch != int(epoch):
        return None
    return user


def start(user: User) -> None:
    """Log ``user`` in on a fresh session (no fixation), stamped for the idle check."""
    session.clear()
    login_user(user)
    now = int(clock.now().timestamp())
    session["started"] = now
    session["seen"] = now


def end_all(user: User) -> None:
    """End every session of ``user`` (the caller commits, with the change that caused it)."""
    user.session_epoch = User.session_epoch + 1  # one atomic UPDATE, safe beside other writers


def end_current() -> None:
    """Log out of this session only (the cookie is cleared; see ``end_all`` for the rest)."""
    logout_user()
    session.clear()


def expire_idle_session() -> None:
    """Forget a login idle longer than PAGEGRID_SESSION_IDLE_MINUTES or older than its lifetime."""
    if "_user_id" not in session:
        return
    now = int(clock.now().timestamp())
    idle = current_app.config["PAGEGRID_SESSION_IDLE_MINUTES"] * 60
    lifetime = current_app.permanent_session_lifetime.total_seconds()
    seen, started = session.get("seen"), session.get("started")
    if seen is None or started is None or now - seen > idle or now - started > lifetime:
        end_current()
    elif now - seen >= SEEN_RESOLUTION_SECONDS:
        session["seen"] = now
