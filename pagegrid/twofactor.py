"""Two-factor login with TOTP (RFC 6238, ``pyotp``) and single-use recovery codes.

The TOTP secret is Fernet-encrypted at rest (``User.totp_secret`` is an ``EncryptedText``). It is
made when enrolment starts and switched on only after a code from the authenticator app checks
out, with the password. A code is accepted for its 30-second step and the ones either side (clock
drift), and only for a step later than the last one accepted, so an observed code cannot be
replayed: the step is claimed with one conditional UPDATE, atomic across workers. Recovery codes
have 80 random bits, are stored as SHA-256 like API keys, and each is spent by a conditional
UPDATE, so it works once. Both are counted by the code throttle (throttle.py) in the views.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import pyotp
import segno
from markupsafe import Markup
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update

from pagegrid import clock
from pagegrid.extensions import db
from pagegrid.extensions import rowcount
from pagegrid.models import RecoveryCode
from pagegrid.models import User

ISSUER = "PageGrid"
RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read from paper
_RECOVERY_LENGTH = 16  # 16 of 31 symbols: 79 bits
_TOTP = re.compile(r"[0-9]{6}")


def start_enrolment(user: User) -> str:
    """The user's pending secret, made now unless enrolment already started (a reload keeps it)."""
    if user.totp_enabled:
        raise ValueError("two-factor login is already on")
    if not user.totp_secret:
        user.totp_secret = pyotp.random_base32()
        db.session.commit()
    return user.totp_secret


def provisioning_uri(user: User, secret: str) -> str:
    """The ``otpauth://`` URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> Markup:
    """The URI as an inline SVG QR code, made on the server (no script, no third party)."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#17212b", light="#ffffff", svgclass="qr",
                                               title="QR code for your authenticator app")
    return Markup(svg)  # noqa: S704 - segno's own markup, the URI is escaped inside it


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def _normalise(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()


def check(user: User, code: str) -> str | None:
    """``"totp"`` or ``"recovery"`` when ``code`` is good (and now spent), ``"replayed"`` for a
    TOTP code whose step was already used, else None. Commits what it spends."""
    text = _normalise(code)
    if _TOTP.fullmatch(text):
        return _check_totp(user, text)
    if len(text) == _RECOVERY_LENGTH and user.totp_enabled:
        spent = rowcount(db.session.execute(
            update(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _hash(text),
                   RecoveryCode.used_at.is_(None))
            .values(used_at=clock.now()).execution_options(synchronize_session=False)))
        db.session.commit()
        return "recovery" if spent == 1 else None
    return None


def _check_totp(user: User, code: str) -> str | None:
    if not user.totp_secret:
        return None
    totp = pyotp.TOTP(user.totp_secret)
    now = totp.timecode(clock.now())
    step = next((s for s in (now - 1, now, now + 1)
                 if hmac.compare_digest(totp.generate_otp(s), code)), None)
    if step is None:
        return None
    claimed = rowcount(db.session.execute(
        update(User).where(User.id == user.id, or_(User.totp_last_step.is_(None),
                                                   User.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False)))
    db.session.commit()
    return "totp" if claimed == 1 else "replayed"


def enable(user: User) -> list[str]:
    """Switch two-factor on (after a good code) and return fresh recovery codes; the caller commits."""
    user.totp_enabled = True
    return _new_codes(user)


def new_recovery_codes(user: User) -> list[str]:
    """Replace every recovery code of the user with new ones; the caller commits."""
    return _new_codes(user)


def disable(user: User) -> None:
    """Switch two-factor off: the secret and the recovery codes are gone; the caller commits."""
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def codes_left(user_id: int) -> int:
    """Unused recovery codes of the user."""
    return db.session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0


def _new_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = ["".join(secrets.choice(_ALPHABET) for _ in range(_RECOVERY_LENGTH))
             for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash(c)) for c in codes)
    return ["-".join(c[i:i + 4] for i in range(0, _RECOVERY_LENGTH, 4)) for c in codes]


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()
