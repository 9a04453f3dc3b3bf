"""Server-sent events: encode ours, and split an upstream byte stream into events (pure)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pagegrid.json_types import JSON


@dataclass
class SSEEvent:
    """One complete event: its bytes as received (for lossless relay) and its parsed fields."""

    raw: bytes
    event: str | None
    data: str

    def json(self) -> JSON | None:
        """The data field as a JSON object, or None when it is not one (``[DONE]``, a comment)."""
        try:
            value = json.loads(self.data)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class SSEDecoder:
    """Feed raw chunks in any sizes; get back each event once its blank line has arrived."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes; return the events they complete."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events: list[SSEEvent] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return events
            raw, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
            parsed = _parse(raw)
            if parsed is not None:
                events.append(parsed)

    def flush(self) -> list[SSEEvent]:
        """Return a last event the stream ended without a blank line after."""
        raw, self._buffer = self._buffer, b""
        parsed = _parse(raw + b"\n\n") if raw.strip() else None
        return [parsed] if parsed is not None else []


def _parse(raw: bytes) -> SSEEvent | None:
    event, data = None, []
    for line in raw.decode("utf-8", errors="replace").split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if event is None and not data:
        return None
    return SSEEvent(raw=raw, event=event, data="\n".join(data))


def encode(data: JSON | str, event: str | None = None) -> bytes:
    """Encode one event; dicts are sent as compact JSON."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
