"""Stream plans: how the provider's events become the client's, in each dialect pair."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pagegrid.errors import GatewayError
from pagegrid.json_types import JSON
from pagegrid.sse import SSEEvent
from pagegrid.sse import encode

DONE = b"data: [DONE]\n\n"


# Error renderers take the next sequence number, which only the Responses API uses.
ErrorRenderer = Callable[[GatewayError, int], bytes]


def anthropic_error(err: GatewayError, sequence_number: int = 0) -> bytes:
    """An ``event: error`` in the Messages API's shape."""
    return encode(err.to_anthropic(), "error")


def chat_error(err: GatewayError, sequence_number: int = 0) -> bytes:
    """A Chat Completions error chunk."""
    return encode(err.to_openai())


def responses_error(err: GatewayError, sequence_number: int = 0) -> bytes:
    """A Responses API ``error`` event."""
    return encode({"type": "error", "code": err.openai_type, "message": err.message, "param": None,
                   "sequence_number": sequence_number}, "error")


# Sees every event of the client's dialect as it goes out (the final response is stored).
Watch = Callable[[JSON], None]


class Passthrough:
    """The provider already speaks the client's dialect: relay its events byte for byte."""

    def __init__(self, error: ErrorRenderer, hide: Callable[[dict], bool] | None = None,
                 watch: Watch | None = None) -> None:
        self._error = error
        self._hide = hide
        self._watch = watch
        self._sequence = -1

    def event(self, event: SSEEvent, data: dict | None) -> bytes:
        """Relay one event, unless it is one the client did not ask for."""
        if data is not None:
            self._sequence = data.get("sequence_number", self._sequence)
            if self._watch is not None:
                self._watch(data)
            if self._hide is not None and self._hide(data):
                return b""
        return event.raw

    def end(self) -> bytes:
        """Nothing to add: the provider framed the end itself."""
        return b""

    def error(self, err: GatewayError) -> bytes:
        """The client-dialect error for a stream that broke."""
        return self._error(err, self._sequence + 1)


class Translated:
    """Feed each provider event to a translator and frame what it returns."""

    def __init__(self, translator, frame: Callable[[Any], bytes],  # noqa: ANN001 - any *Stream
                 error: ErrorRenderer, done: bytes = b"", watch: Watch | None = None) -> None:
        self._translator = translator
        self._frame = frame
        self._error = error
        self._done = done
        self._watch = watch

    def event(self, event: SSEEvent, data: dict | None) -> bytes:
        """Translate one provider event (``[DONE]`` and comments translate to nothing)."""
        if data is None:
            return b""
        items = self._translator.feed(data)
        if self._watch is not None:
            for item in items:
                self._watch(item)
        return b"".join(self._frame(item) for item in items)

    def end(self) -> bytes:
        """What the translator still owes, then the dialect's end marker."""
        return b"".join(self._frame(item) for item in self._translator.finish()) + self._done

    def error(self, err: GatewayError) -> bytes:
        """The client-dialect error for a stream that broke."""
        return self._error(err, getattr(self._translator, "sequence_number", 0))


def frame_chat(chunk: JSON) -> bytes:
    """``data: {chunk}``."""
    return encode(chunk)


def frame_named(item: tuple[str, JSON]) -> bytes:
    """An ``(event, data)`` pair of the Messages API."""
    name, data = item
    return encode(data, name)


def frame_typed(event: JSON) -> bytes:
    """A Responses API event, named by its ``type``."""
    return encode(event, event["type"])
