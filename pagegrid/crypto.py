"""Secrets at rest: Fernet encryption under PAGEGRID_ENCRYPTION_KEY, and a column type using it.

``PAGEGRID_ENCRYPTION_KEY`` is a comma-separated list of Fernet keys: the first encrypts, every
one decrypts (``MultiFernet``), so a key is rotated by putting a new one first and running
``flask --app app rotate-encryption-key``, which re-encrypts every stored secret under it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet
from cryptography.fernet import MultiFernet
from flask import Flask
from flask import current_app
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text)."""
    return Fernet.generate_key().decode()


def _fernet(app: Flask) -> MultiFernet:
    cached = app.extensions.get("pagegrid.fernet")
    if cached is None:
        keys = [k.strip() for k in app.config["PAGEGRID_ENCRYPTION_KEY"].split(",") if k.strip()]
        cached = app.extensions["pagegrid.fernet"] = MultiFernet([Fernet(k) for k in keys])
    return cached


def encrypt(plaintext: str) -> str:
    """``plaintext`` encrypted under the first configured key."""
    return _fernet(current_app).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext of a token made by any configured key (``InvalidToken`` otherwise)."""
    return _fernet(current_app).decrypt(token.encode()).decode()


def reencrypt(token: str) -> str:
    """The same plaintext, encrypted under the first configured key."""
    return _fernet(current_app).rotate(token.encode()).decode()


class EncryptedText(TypeDecorator):
    """A text column stored Fernet-encrypted; Python code sees the plaintext."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Encrypt on the way in."""
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        """Decrypt on the way out."""
        return None if value is None else decrypt(value)
