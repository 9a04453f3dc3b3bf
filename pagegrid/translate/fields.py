"""Top-level request fields: the checks every request translator makes of them (pure).

Each request translator has a table (``CHAT_FIELDS``, ``ANTHROPIC_FIELDS``, ``RESPONSES_FIELDS``)
saying what happens to every field; these are the checks of the values those tables let through.
"""

from __future__ import annotations

from typing import TypeGuard

from pagegrid.errors import InvalidRequest


def present_fields(body: object) -> dict:
    """The body's fields without ``null`` ones (``null`` counts as absent); a non-object is a 400."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return {name: value for name, value in body.items() if value is not None}


def refusal(table: dict[str, str], name: str) -> InvalidRequest:
    """The 400 for a field whose value the table says is refused, with the table's reason."""
    reason = table[name].split(": ", 1)[1]
    return InvalidRequest(f"Unsupported value for '{name}': {reason}.", param=name)


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: object, name: str) -> int:
    """``value`` if it is a positive integer (a token limit), else a 400 naming ``name``."""
    if not is_int(value) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return value


def check_bool(value: object, name: str) -> None:
    """A 400 naming ``name`` unless ``value`` is a boolean."""
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean.", param=name)
