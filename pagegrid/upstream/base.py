"""The adapter interface and the reply every adapter returns."""

from __future__ import annotations

import json
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from werkzeug.datastructures import Headers

from pagegrid.json_types import JSON


@dataclass(frozen=True)
class UpstreamTarget:
    """Where to send a provider's requests (plain values, from the env or an Upstream row)."""

    provider: str
    base_url: str
    api_key: str | None
    name: str = ""


class UpstreamReply:
    """An upstream answer: status and headers at once, the body as it arrives."""

    def __init__(self, status: int, headers: Mapping[str, str], chunks: Iterator[bytes],
                 close: Callable[[], None] = lambda: None) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._close = close

    def chunks(self) -> Iterator[bytes]:
        """Body bytes as they arrive; raises UpstreamError if the connection breaks."""
        return self._chunks

    def read(self) -> bytes:
        """The whole body."""
        try:
            return b"".join(self._chunks)
        finally:
            self.close()

    def json(self) -> JSON | None:
        """The whole body as a JSON object, or None if it is not one."""
        try:
            value = json.loads(self.read())
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def close(self) -> None:
        """Stop reading and free the connection (safe to call twice)."""
        self._close()


class Adapter(Protocol):
    """A provider: sends one request, returns its reply or raises UpstreamError."""

    def send(self, path: str, body: bytes, headers: Mapping[str, str] | Headers,
             stream: bool) -> UpstreamReply:
        """POST ``body`` to ``path`` (such as ``/v1/messages``) on the provider."""
        ...
