"""JSON as it crosses PageGrid's boundaries: bodies in and out, upstream answers, stream events."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
"""A JSON object as parsed or about to be serialised: a body, a content block, an event's data."""

JSONValue = Any
"""Any JSON value as parsed (object, array, string, number, bool or null); checked with isinstance."""


def as_object(value: object) -> JSON:
    """``value`` if it is a JSON object, else an empty one (a missing or malformed optional object)."""
    return value if isinstance(value, dict) else {}
