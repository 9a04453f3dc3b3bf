"""Password rules, the same for the dashboard, the admin console and the CLI."""

from __future__ import annotations

from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 200
ZXCVBN_MAX_LENGTH = 72  # zxcvbn refuses longer input; the prefix already decides the score
MIN_SCORE = 3  # zxcvbn's "safely unguessable": about 10^8 guesses or more


def problems(password: str, email: str) -> list[str]:
    """Why ``password`` is not acceptable for the account ``email``; empty when it is."""
    if len(password) < MIN_LENGTH:
        return [f"A password has at least {MIN_LENGTH} characters."]
    if len(password) > MAX_LENGTH:
        return [f"A password has at most {MAX_LENGTH} characters."]
    email = email.strip().lower()
    local = email.partition("@")[0]
    lowered = password.lower()
    if email and email in lowered or len(local) >= 3 and local in lowered:
        return ["A password cannot contain the account's email address."]
    result = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=[email, local, "pagegrid"])
    if result["score"] < MIN_SCORE:
        warning = result["feedback"].get("warning")
        return [f"This password is too easy to guess{f' ({warning})' if warning else ''}. "
                "Try a few unrelated words or a password manager."]
    return []
