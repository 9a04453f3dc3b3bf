"""Login throttling that cannot be aimed at someone else.

Only failures count. Each (account, client IP) pair gets a few free tries, then tiers of growing
windows (5 a minute, 10 in 15 minutes, 20 an hour, 50 a day): the delay grows with the failures,
and it holds only that IP, so the account's owner logging in from elsewhere is never refused.
Each IP also has a failure budget across all accounts (a spray from one address). A success
clears its pair. The counters live in Flask-Limiter's storage: memory, or Redis for every worker.
"""

from __future__ import annotations

import math
import time

from flask import current_app
from limits import RateLimitItem
from limits import parse_many

from pagegrid.extensions import limiter


def _tiers(name: str) -> list[RateLimitItem]:
    return parse_many(current_app.config[name])


def _keys(email: str, ip: str) -> list[tuple[str, list[RateLimitItem]]]:
    pair = f"login-pair:{email.strip().lower()}:{ip}"
    return [(pair, _tiers("PAGEGRID_LOGIN_ACCOUNT_IP_LIMITS")),
            (f"login-ip:{ip}", _tiers("PAGEGRID_LOGIN_IP_LIMITS"))]


def _retry_after(keys: list[tuple[str, list[RateLimitItem]]]) -> int:
    """Seconds until every tier of ``keys`` allows another try; 0 when they do now."""
    wait = 0.0
    for key, tiers in keys:
        for item in tiers:
            if not limiter.limiter.test(item, key):
                reset = limiter.limiter.get_window_stats(item, key).reset_time
                wait = max(wait, reset - time.time(), 1)
    return math.ceil(wait)


def _hit(keys: list[tuple[str, list[RateLimitItem]]]) -> None:
    for key, tiers in keys:
        for item in tiers:
            limiter.limiter.hit(item, key)


def _clear(keys: list[tuple[str, list[RateLimitItem]]]) -> None:
    """Forget the first (the pair's) tiers; the wider budget keeps its count."""
    key, tiers = keys[0]
    for item in tiers:
        limiter.limiter.clear(item, key)


def retry_after(email: str, ip: str) -> int:
    """Seconds until this IP may try this account again; 0 when it may now."""
    return _retry_after(_keys(email, ip))


def failed(email: str, ip: str) -> None:
    """Count a wrong password (or unknown email) from ``ip``."""
    _hit(_keys(email, ip))


def succeeded(email: str, ip: str) -> None:
    """Forget this pair's failures (the IP's budget keeps them)."""
    _clear(_keys(email, ip))


# Forgot-password requests: every request counts (known email or not, so the limit says nothing
# about which emails have accounts), per email and per client IP.

def _reset_keys(email: str, ip: str) -> list[tuple[str, list[RateLimitItem]]]:
    return [(f"reset-email:{email.strip().lower()}", _tiers("PAGEGRID_RESET_EMAIL_LIMITS")),
            (f"reset-ip:{ip}", _tiers("PAGEGRID_RESET_IP_LIMITS"))]


def reset_retry_after(email: str, ip: str) -> int:
    """Seconds until another reset email may be asked for this email from this IP; 0 when now."""
    return _retry_after(_reset_keys(email, ip))


def reset_requested(email: str, ip: str) -> None:
    """Count a forgot-password request."""
    _hit(_reset_keys(email, ip))


# Two-factor codes: only someone who has the password gets to guess one, so besides the
# (account, IP) tiers each account has a budget across all IPs that keeps a guesser spread over
# many addresses far from the million codes (30 a day: about one chance in 10,000 a day).

def _code_keys(user_id: int, ip: str) -> list[tuple[str, list[RateLimitItem]]]:
    return [(f"2fa-pair:{user_id}:{ip}", _tiers("PAGEGRID_2FA_ACCOUNT_IP_LIMITS")),
            (f"2fa-account:{user_id}", _tiers("PAGEGRID_2FA_ACCOUNT_LIMITS"))]


def code_retry_after(user_id: int, ip: str) -> int:
    """Seconds until this IP may try another two-factor code for this account; 0 when it may now."""
    return _retry_after(_code_keys(user_id, ip))


def code_failed(user_id: int, ip: str) -> None:
    """Count a wrong (or replayed) two-factor code."""
    _hit(_code_keys(user_id, ip))


def code_succeeded(user_id: int, ip: str) -> None:
    """Forget this pair's failures (the account's budget keeps them)."""
    _clear(_code_keys(user_id, ip))
